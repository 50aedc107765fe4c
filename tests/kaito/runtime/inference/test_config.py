"""Flags, environment, startup checks (rank, model directory, adapters) and the sampling rules."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from kaito.runtime.inference.adapters import attach_adapters, discover_adapters
from kaito.runtime.inference.config import ServerConfig, check_single_node, parse_config
from kaito.runtime.inference.errors import StartupError
from kaito.runtime.inference.model import check_model_dir, load_model, resolve_dtype, resolve_threads
from kaito.runtime.inference.sampling import SamplerState, SamplingParams, choose_tokens


def test_flags_win_over_environment_which_wins_over_defaults() -> None:
    env = {"KAITO_PORT": "6000", "KAITO_MAX_BATCH_SIZE": "7", "KAITO_LOG_PROMPTS": "true"}
    cfg = parse_config(["--preset", "smollm2-135m-instruct", "--port", "5001"], env)
    assert (cfg.port, cfg.max_batch_size, cfg.log_prompts) == (5001, 7, True)
    assert cfg.host == ServerConfig.host and cfg.max_waiting == ServerConfig.max_waiting
    assert cfg.base_name() == "smollm2-135m-instruct"


@pytest.mark.parametrize(
    ("argv", "env", "needle"),
    [
        ([], {}, "exactly one of --preset"),
        (["--preset", "phi-9"], {}, "--preset 'phi-9'"),
        (["--preset", "smollm2-135m-instruct", "--max-batch-size", "0"], {}, "--max-batch-size / KAITO_MAX_BATCH_SIZE"),
        (["--model-dir", "/x"], {"KAITO_REQUEST_TIMEOUT": "soon"}, "KAITO_REQUEST_TIMEOUT"),
        (["--model-dir", "/x", "--dtype", "int3"], {}, "--dtype / KAITO_DTYPE"),
    ],
)
def test_invalid_settings_name_the_flag_and_variable(argv: list[str], env: dict[str, str], needle: str) -> None:
    with pytest.raises(StartupError) as info:
        parse_config(argv, env)
    assert needle in str(info.value)


@pytest.mark.parametrize("env", [{"RANK": "1"}, {"POD_INDEX": "2"}, {"LWS_WORKER_INDEX": "3"}])
def test_a_non_zero_rank_refuses_to_start(env: dict[str, str]) -> None:
    with pytest.raises(StartupError, match=r"rank [123] of a multi-node deployment"):
        check_single_node(env)


def test_rank_zero_or_unset_starts() -> None:
    check_single_node({})
    check_single_node({"RANK": "0", "POD_INDEX": "0"})


def test_incomplete_model_directory_names_the_missing_files(tiny_model_dir: Path, tmp_path: Path) -> None:
    broken = tmp_path / "m"
    shutil.copytree(tiny_model_dir, broken)
    (broken / "model.safetensors").unlink()
    with pytest.raises(StartupError, match=r"missing model\.safetensors"):
        check_model_dir(broken)
    (broken / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"a": "part-1.safetensors"}}))
    with pytest.raises(StartupError, match=r"missing part-1\.safetensors"):
        check_model_dir(broken)
    with pytest.raises(StartupError, match="does not exist"):
        check_model_dir(tmp_path / "nothing")


def test_dtype_auto_is_float32_on_a_cpu_without_native_bf16(monkeypatch: pytest.MonkeyPatch) -> None:
    import kaito.runtime.inference.model as model_mod

    monkeypatch.setattr(model_mod, "cpu_has_fast_bf16", lambda: False)
    assert resolve_dtype("auto", torch.device("cpu")) == torch.float32
    monkeypatch.setattr(model_mod, "cpu_has_fast_bf16", lambda: True)
    assert resolve_dtype("auto", torch.device("cpu")) == torch.bfloat16
    assert resolve_dtype("float16", torch.device("cpu")) == torch.float16


def test_cpu_threads_default_to_all_cores_but_one_for_the_event_loop() -> None:
    cpu = torch.device("cpu")
    assert [resolve_threads(None, cpu, cores=n) for n in (1, 2, 16)] == [1, 1, 15]
    assert resolve_threads(2, cpu, cores=2) == 2  # an explicit --threads wins
    assert resolve_threads(None, torch.device("cuda"), cores=16) is None  # GPUs: torch's default


def test_adapters_are_found_with_strengths_and_a_bad_one_fails_startup_by_name(
    tiny_model_dir: Path, tiny_adapter_dir: Path, tmp_path: Path
) -> None:
    root = tmp_path / "adapters"
    shutil.copytree(tiny_adapter_dir / "tiny-lora", root / "good")
    (root / "not-an-adapter").mkdir()
    specs = discover_adapters(root, {"good": "0.25"})
    assert [(s.name, s.strength) for s in specs] == [("good", 0.25)]
    with pytest.raises(StartupError, match="adapter 'good': strength"):
        discover_adapters(root, {"good": "strong"})
    (root / "broken").mkdir()
    (root / "broken" / "adapter_config.json").write_text("{ not json")
    loaded = load_model(tiny_model_dir, device="cpu", dtype="float32")
    with pytest.raises(StartupError, match=r"^adapter 'broken' in .* cannot be loaded"):
        attach_adapters(loaded.model, discover_adapters(root, {}), "tiny")
    assert discover_adapters(tmp_path / "absent", {}) == []


def _state(params: SamplingParams, prompt: list[int] | None = None) -> SamplerState:
    return SamplerState(params, prompt or [])


def test_sampling_rules() -> None:
    logits = torch.tensor([[1.0, 3.0, 2.0, 0.5]])
    greedy = _state(SamplingParams(temperature=0.0))
    assert choose_tokens(logits, [greedy], ()) == [1]
    # top_k=1 and a tiny top_p reduce sampling to the argmax, whatever the seed
    for seed in range(20):
        assert choose_tokens(logits, [_state(SamplingParams(temperature=1.5, top_k=1, seed=seed))], ()) == [1]
        assert choose_tokens(logits, [_state(SamplingParams(temperature=1.5, top_p=0.01, seed=seed))], ()) == [1]
    # repetition penalty 10 on token 1 (seen in the prompt): 3/10 < 2, so greedy picks token 2
    assert choose_tokens(logits, [_state(SamplingParams(temperature=0.0, repetition_penalty=10.0), [1])], ()) == [2]
    # min_tokens masks EOS (token 1 here) until reached
    assert choose_tokens(logits, [_state(SamplingParams(temperature=0.0, min_tokens=1))], (1,)) == [2]
    # the same seed gives the same draws; rows of a batch are independent of each other
    a = [choose_tokens(logits, [_state(SamplingParams(temperature=2.0, seed=5))], ())[0] for _ in range(3)]
    assert len(set(a)) == 1
    batch = choose_tokens(logits.repeat(2, 1), [greedy, _state(SamplingParams(temperature=2.0, seed=5))], ())
    assert batch == [1, a[0]]
    # any JSON integer is a usable seed (torch generators take 64 bits)
    for seed in (-(2**80), -1, 2**64, 2**100):
        assert choose_tokens(logits, [_state(SamplingParams(temperature=1.0, seed=seed))], ())[0] in range(4)
