"""float16 weights with float32 arithmetic on CPU (``cpu_weights``): what ``--dtype auto`` serves on an AVX2 CPU.

The real SmolLM2-135M checks the precision claim (logits within float16 rounding of float32, same greedy text);
the tiny model checks the engine's properties on packed weights (batch invariance, adapters per request)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import torch
from torch import nn

from kaito.runtime.inference.cpu_weights import Fp16WeightLinear, fp16_weights_supported, pack_fp16_weights
from kaito.runtime.inference.model import ModelRunner, load_model, use_fp16_weights
from kaito.runtime.inference.sampling import SamplingParams

from .conftest import build_service
from .test_engine import PROMPTS, output_ids, run

pytestmark = pytest.mark.skipif(not fp16_weights_supported(), reason="fbgemm needs an x86 CPU with AVX2")


def test_auto_picks_float16_weights_on_a_cpu_without_native_bf16(monkeypatch: pytest.MonkeyPatch) -> None:
    import kaito.runtime.inference.model as model_mod

    cpu, gpu = torch.device("cpu"), torch.device("cuda")
    monkeypatch.setattr(model_mod, "cpu_has_fast_bf16", lambda: False)
    assert use_fp16_weights("auto", cpu) and use_fp16_weights("float16", cpu)
    assert not use_fp16_weights("float32", cpu) and not use_fp16_weights("bfloat16", cpu)
    assert not use_fp16_weights("auto", gpu)
    monkeypatch.setattr(model_mod, "cpu_has_fast_bf16", lambda: True)  # AMX / AVX-512-BF16: native bf16 wins
    assert not use_fp16_weights("auto", cpu) and use_fp16_weights("float16", cpu)
    monkeypatch.setattr(model_mod, "fp16_weights_supported", lambda: False)
    assert not use_fp16_weights("float16", cpu)


def test_a_packed_linear_matches_float32_within_float16_rounding() -> None:
    torch.manual_seed(0)
    layer = nn.Linear(576, 1536)
    reference = nn.Linear(576, 1536)
    reference.load_state_dict(layer.state_dict())
    assert pack_fp16_weights(nn.Sequential(layer)) == 1
    assert isinstance(layer, Fp16WeightLinear)
    x = torch.randn(3, 5, 576)
    with torch.inference_mode():
        got, want = layer(x), reference(x)
    assert got.shape == (3, 5, 1536) and got.dtype == torch.float32
    # each weight is rounded to float16 once: relative error at most 2**-11 per product
    bound = (x.abs() @ reference.weight.abs().T) * 2.0**-11 + 1e-5
    assert bool((got - want).abs().le(bound).all())
    # with gradients the layer is the float32 nn.Linear again (training never sees the packed copy)
    x.requires_grad_(True)
    assert torch.equal(layer(x), reference(x))


def test_smollm2_logits_and_greedy_text_match_float32(model_dir: Path) -> None:
    full = load_model(model_dir, device="cpu", dtype="float32")
    half = load_model(model_dir, device="cpu", dtype="float16")
    assert (full.weights, half.weights) == ("float32", "float16") and half.dtype == torch.float32
    packed = [m for m in half.model.modules() if isinstance(m, Fp16WeightLinear)]
    assert len(packed) == 30 * 7 + 1  # q, k, v, o, gate, up, down of 30 layers and the LM head
    tokenizer = full.tokenizer
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is Kubernetes?"}], add_generation_prompt=True, tokenize=False
    )
    ids = torch.tensor([tokenizer(text, add_special_tokens=False)["input_ids"]])
    with torch.inference_mode():
        a = full.model(ids).logits[0]
        b = half.model(ids).logits[0]
        greedy = [
            m.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=24, do_sample=False)[0].tolist()
            for m in (full.model, half.model)
        ]
    assert float((a - b).abs().max()) < 0.05 * float(a.abs().max())
    assert bool((a.argmax(-1) == b.argmax(-1)).float().mean() > 0.95)
    assert greedy[0] == greedy[1], tokenizer.decode(greedy[0]) + " != " + tokenizer.decode(greedy[1])


async def test_greedy_output_is_identical_alone_and_in_a_batch_on_packed_weights(tiny_model_dir: Path) -> None:
    svc = build_service(tiny_model_dir, dtype="float16")
    assert isinstance(svc.engine.runner, ModelRunner) and svc.engine.runner.loaded.weights == "float16"
    svc.engine.start()
    try:
        params = SamplingParams(max_tokens=24, temperature=0.0, ignore_eos=True)
        alone = [output_ids(svc, await run(svc.engine, svc.tokenize(p), params)) for p in PROMPTS]
        together = await asyncio.gather(*(run(svc.engine, svc.tokenize(p), params) for p in PROMPTS))
        assert [output_ids(svc, d) for d in together] == alone
        assert len(set(alone)) == len(PROMPTS)
    finally:
        await svc.engine.stop()


async def test_adapters_apply_per_request_over_packed_base_weights(
    tiny_model_dir: Path, tiny_adapter_dir: Path
) -> None:
    svc = build_service(tiny_model_dir, adapter_dir=tiny_adapter_dir, dtype="float16")
    model = svc.engine.runner.loaded.model
    lora = [m for name, m in model.named_modules() if "lora_" in name and isinstance(m, nn.Linear)]
    assert lora and not any(isinstance(m, Fp16WeightLinear) for m in lora)  # LoRA matrices stay float32
    assert any(isinstance(m, Fp16WeightLinear) for m in model.modules())
    svc.engine.start()
    try:
        params = SamplingParams(max_tokens=16, temperature=0, ignore_eos=True)
        ids = svc.tokenize(PROMPTS[1])
        base = output_ids(svc, await run(svc.engine, ids, params, "__base__"))
        alone = output_ids(svc, await run(svc.engine, ids, params, "tiny-lora"))
        mixed = await asyncio.gather(run(svc.engine, ids, params, "tiny-lora"), run(svc.engine, ids, params))
        assert alone != base
        assert [output_ids(svc, m) for m in mixed] == [alone, base]
    finally:
        await svc.engine.stop()
