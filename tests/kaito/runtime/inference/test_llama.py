"""The lean Llama forward (``llama.py``) against transformers' own forward: same logits, same greedy tokens."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from kaito.runtime.inference.adapters import attach_adapters, discover_adapters
from kaito.runtime.inference.llama import unsupported_reason
from kaito.runtime.inference.model import ModelRunner, load_model


def greedy_run(runner: ModelRunner, prompts: list[list[int]], steps: int) -> tuple[list[torch.Tensor], list[list[int]]]:
    """Prefill ``prompts`` together, then ``steps`` greedy decode steps; (logits of every pass, tokens per row)."""
    logits = runner.prefill(prompts, list(range(len(prompts))), None)
    seen, tokens = [logits], [[int(t)] for t in logits.argmax(-1)]
    positions = [len(p) for p in prompts]
    for _ in range(steps):
        logits = runner.decode([row[-1] for row in tokens], positions, None)
        seen.append(logits)
        for row, token in zip(tokens, logits.argmax(-1).tolist(), strict=True):
            row.append(int(token))
        positions = [p + 1 for p in positions]
    return seen, tokens


@pytest.mark.parametrize("dtype", ["float16", "float32"])
def test_smollm2_gives_the_same_logits_and_greedy_tokens_as_transformers(model_dir: Path, dtype: str) -> None:
    fast = ModelRunner(load_model(model_dir, device="cpu", dtype=dtype), max_slots=4, max_positions=256)
    plain = ModelRunner(
        load_model(model_dir, device="cpu", dtype=dtype), max_slots=4, max_positions=256, fast_path=False
    )
    assert fast.fast is not None and fast.fast_path_reason is None
    assert plain.fast is None and plain.fast_path_reason == "disabled"
    tokenizer = fast.loaded.tokenizer
    prompts = [
        tokenizer(text)["input_ids"]
        for text in ("The capital of France is", "Kubernetes operators reconcile custom resources so that")
    ]
    with torch.inference_mode():
        got, got_tokens = greedy_run(fast, prompts, 16)
        want, want_tokens = greedy_run(plain, prompts, 16)
    assert got_tokens == want_tokens
    for a, b in zip(got, want, strict=True):
        assert float((a - b).abs().max()) < 1e-3 * float(b.abs().max())


def test_models_it_cannot_run_keep_the_transformers_forward(tiny_model_dir: Path, tiny_adapter_dir: Path) -> None:
    loaded = load_model(tiny_model_dir, device="cpu", dtype="float32")
    assert unsupported_reason(loaded.model) is None
    loaded.model.config.mlp_bias = True
    assert unsupported_reason(loaded.model) == "unsupported mlp_bias"
    loaded.model.config.mlp_bias = False
    loaded.model = attach_adapters(loaded.model, discover_adapters(tiny_adapter_dir, {}), "tiny")
    runner = ModelRunner(loaded, max_slots=2, max_positions=64)
    assert runner.fast is None and runner.fast_path_reason == "peft adapters are attached"
    loaded.model.config.model_type = "mistral"
    assert unsupported_reason(loaded.model) == "peft adapters are attached"
    bare = load_model(tiny_model_dir, device="cpu", dtype="float32").model
    bare.config.model_type = "mistral"
    assert unsupported_reason(bare) == "model type 'mistral' is not llama"
