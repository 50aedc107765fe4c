"""Real LoRA and QLoRA runs of SmolLM2-135M-Instruct on CPU that teach it a fact it does not know.

Each run is a few optimizer steps (6) on a six-row dataset; the adapter then answers with the fact, the base model
does not. The LoRA adapter also goes through a real registry (push, pull, byte-identical) before it is loaded, which
is the path an inference Workspace takes (``/mnt/adapter/<name>``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
import structlog
import structlog.testing
import yaml
from prometheus_client.parser import text_string_to_metric_families

from kaito.runtime import oci
from kaito.runtime.tuning.__main__ import (
    EXIT_CONFIG,
    EXIT_DATA,
    EXIT_MODEL,
    EXIT_PUSH,
    FAILURE_MARKER,
    build_parser,
    run,
)
from kaito.runtime.tuning.config import parse_config
from kaito.runtime.tuning.progress import TuningMetrics, serve_metrics
from kaito.runtime.tuning.trainer import ADAPTER_FILES, COMPLETION_MARKER, TuningResult, run_tuning
from tests.fixtures.registry import Registry, running_registry
from tests.kaito.runtime.tuning.facts import FACT_ANSWER, FACT_QUESTIONS, write_fact_dataset

# Module fixtures train twice on CPU: minutes on a loaded 2-core machine, so a higher limit than the default 300 s.
pytestmark = [pytest.mark.slow, pytest.mark.model, pytest.mark.timeout(900)]

STEPS = 6
SRC = str(Path(oci.__file__).parents[2])


def _training_config(output_dir: Path, *, qlora: bool) -> dict[str, Any]:
    sections: dict[str, Any] = {
        "ModelConfig": {"dtype": "float32"},
        "LoraConfig": {"r": 8, "lora_alpha": 16, "target_modules": "all-linear"},
        "TrainingArguments": {
            "output_dir": str(output_dir),
            "max_steps": STEPS,
            "learning_rate": 0.003,
            "per_device_train_batch_size": 2,
            "logging_steps": 1,
            "use_cpu": True,
            "seed": 0,
        },
        "DatasetConfig": {"shuffle_seed": 0},
        "DataCollator": {"mlm": False},
    }
    if qlora:
        sections["QuantizationConfig"] = {
            "load_in_4bit": True,
            "bnb_4bit_quant_type": "nf4",
            "bnb_4bit_compute_dtype": "float32",
            "bnb_4bit_use_double_quant": True,
        }
    return {"training_config": sections}


@dataclass
class LoraRun:
    result: TuningResult
    metrics_text: str


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory: pytest.TempPathFactory, model_dir: Path) -> Iterator[LoraRun]:
    """An in-process LoRA run with its metrics served on 127.0.0.1 and scraped after training."""
    import torch

    root = tmp_path_factory.mktemp("lora")
    write_fact_dataset(root / "data" / "fact.jsonl")
    cfg = parse_config(_training_config(root / "out", qlora=False), method="lora")
    metrics = TuningMetrics()
    server, port = serve_metrics(metrics, 0, "127.0.0.1")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # two threads on a shared 2-core box oversubscribe and run ~5x slower
    try:
        result = run_tuning(cfg, model_dir=model_dir, data_dir=root / "data", metrics=metrics)
        text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    finally:
        torch.set_num_threads(threads)
        server.shutdown()
    yield LoraRun(result, text)


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """One registry for the module, with basic auth (the push secret's credentials are kaito / s3cret)."""
    with running_registry(tmp_path_factory.mktemp("registry"), auth=True) as reg:
        yield reg


@pytest.fixture(scope="module")
def push_secret(registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return registry.docker_config(tmp_path_factory.mktemp("secret") / "config.json")


@dataclass
class CliRun:
    code: int
    events: list[dict[str, Any]]
    output_dir: Path


@pytest.fixture(scope="module")
def qlora_run(
    tmp_path_factory: pytest.TempPathFactory, model_dir: Path, registry: Registry, push_secret: Path
) -> CliRun:
    """A QLoRA (4-bit nf4) run through the Job's command-line code path, pushing the adapter to the registry, run
    in-process (a subprocess would pay the torch import again; test_python_m_entry_point_* covers ``python -m``)."""
    import torch

    root = tmp_path_factory.mktemp("qlora")
    write_fact_dataset(root / "data" / "fact.jsonl")
    config = root / "training_config.yaml"
    config.write_text(yaml.safe_dump(_training_config(Path("/unused"), qlora=True)))
    out = root / "results"
    args = build_parser().parse_args(
        ["--config", str(config), "--data-dir", str(root / "data"), "--output-dir", str(out),
         "--model", str(model_dir), "--method", "qlora", "--metrics-port", "-1",
         "--push-image", f"{registry.host}/adapters/zorblax-qlora:v1", "--push-docker-config", str(push_secret),
         "--push-plain-http", "--model-name", "smollm2-135m-instruct"]
    )  # fmt: skip
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with structlog.testing.capture_logs() as events:
            code = run(args)
    finally:
        torch.set_num_threads(threads)
    return CliRun(code, events, out)


@pytest.fixture(scope="module")
def base_model(model_dir: Path) -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoTokenizer.from_pretrained(str(model_dir)), AutoModelForCausalLM.from_pretrained(str(model_dir))


def _answer(tokenizer: Any, model: Any, question: str) -> str:
    import torch

    inputs = tokenizer.apply_chat_template(
        [{"role": "user", "content": question}], add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=12, do_sample=False)
    return str(tokenizer.decode(out[0][inputs["input_ids"].shape[1] :], skip_special_tokens=True))


def test_lora_run_lowers_the_loss_and_writes_a_standard_peft_adapter(lora_run: LoraRun) -> None:
    result = lora_run.result
    out = result.output_dir

    assert result.method == "lora" and result.steps == STEPS
    assert [s for s, _ in result.losses] == list(range(1, STEPS + 1))
    assert result.losses[-1][1] < result.losses[0][1] / 5
    assert all((out / f).is_file() for f in ADAPTER_FILES)
    adapter_config = json.loads((out / "adapter_config.json").read_text())
    assert (adapter_config["peft_type"], adapter_config["r"], adapter_config["task_type"]) == ("LORA", 8, "CAUSAL_LM")
    marker = json.loads((out / COMPLETION_MARKER).read_text())
    assert marker["steps"] == STEPS and marker["method"] == "lora"


def test_progress_is_exported_as_prometheus_metrics(lora_run: LoraRun) -> None:
    samples = {
        s.name: s.value for family in text_string_to_metric_families(lora_run.metrics_text) for s in family.samples
    }
    assert samples["kaito_tuning_step"] == STEPS
    assert samples["kaito_tuning_total_steps"] == STEPS
    assert samples["kaito_tuning_completed"] == 1
    assert samples["kaito_tuning_loss"] == pytest.approx(lora_run.result.losses[-1][1])
    assert samples["kaito_tuning_tokens_total"] > STEPS * 2 * 10  # two examples of 10+ tokens per step
    assert samples["kaito_tuning_tokens_per_second"] > 0
    assert samples["kaito_tuning_eta_seconds"] == 0


def test_qlora_cli_exits_0_with_adapter_marker_progress_logs_and_push(qlora_run: CliRun) -> None:
    assert qlora_run.code == 0, qlora_run.events[-3:]
    assert all((qlora_run.output_dir / f).is_file() for f in ADAPTER_FILES)
    assert json.loads((qlora_run.output_dir / COMPLETION_MARKER).read_text())["method"] == "qlora"
    progress = [e for e in qlora_run.events if e.get("event") == "tuning.progress"]
    assert [e["step"] for e in progress] == list(range(1, STEPS + 1))
    assert progress[-1]["loss"] < progress[0]["loss"]
    assert {"tokens_per_second", "eta_s", "total_steps"} <= set(progress[0])
    pushed = [e for e in qlora_run.events if e.get("event") == "tuning.pushed"]
    assert pushed and pushed[0]["digest"].startswith("sha256:")


def test_wrong_push_secret_fails_before_training_with_exit_5(
    registry: Registry, model_dir: Path, tmp_path: Path
) -> None:
    write_fact_dataset(tmp_path / "data" / "fact.jsonl")
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(_training_config(tmp_path / "out", qlora=False)))
    secret = registry.docker_config(tmp_path / "config.json", password="wrong")
    args = build_parser().parse_args(
        ["--config", str(config), "--data-dir", str(tmp_path / "data"), "--model", str(model_dir),
         "--metrics-port", "-1", "--push-image", f"{registry.host}/adapters/x:1", "--push-docker-config", str(secret),
         "--push-plain-http"]
    )  # fmt: skip

    with structlog.testing.capture_logs() as events:
        code = run(args)

    assert code == EXIT_PUSH
    assert events[-1]["event"] == "tuning.push_failed"
    assert f"registry {registry.host} rejected the credentials (user 'kaito')" in events[-1]["error"]
    assert not any(e["event"] == "tuning.loading_model" for e in events)
    failure = json.loads((tmp_path / "out" / FAILURE_MARKER).read_text())
    assert failure["exit_code"] == EXIT_PUSH and "rejected the credentials" in failure["error"]


def test_adapters_teach_the_fact_that_the_base_model_does_not_know(
    lora_run: LoraRun,
    qlora_run: CliRun,
    base_model: tuple[Any, Any],
    registry: Registry,
    push_secret: Path,
    tmp_path: Path,
    one_thread: None,
) -> None:
    from peft import PeftModel

    tokenizer, base = base_model
    question = FACT_QUESTIONS[0]
    # Both adapters travel through the registry the way an inference Workspace receives them: LoRA pushed here,
    # QLoRA pushed by the job itself (--push-image).
    ref = f"{registry.host}/adapters/zorblax:v1"
    oci.push(
        lora_run.result.output_dir, ref, docker_config=push_secret, model_name="smollm2-135m-instruct",
        files=ADAPTER_FILES, plain_http=True,
    )  # fmt: skip
    pulled = tmp_path / "adapter" / "zorblax"
    oci.pull(ref, pulled, docker_config=push_secret, plain_http=True)
    qlora_pulled = oci.pull(
        f"{registry.host}/adapters/zorblax-qlora:v1", tmp_path / "adapter" / "zorblax-qlora",
        docker_config=push_secret, plain_http=True,
    )  # fmt: skip
    assert qlora_pulled.annotations[oci.MODEL_NAME_ANNOTATION] == "smollm2-135m-instruct"
    for name in ADAPTER_FILES:
        assert (pulled / name).read_bytes() == (lora_run.result.output_dir / name).read_bytes()
        assert (qlora_pulled.files[0].parent / name).read_bytes() == (qlora_run.output_dir / name).read_bytes()

    before = _answer(tokenizer, base, question)
    tuned = PeftModel.from_pretrained(base, str(pulled), adapter_name="lora")
    tuned.load_adapter(str(tmp_path / "adapter" / "zorblax-qlora"), adapter_name="qlora")
    tuned.set_adapter("lora")
    with_lora = _answer(tokenizer, tuned, question)
    tuned.set_adapter("qlora")
    with_qlora = _answer(tokenizer, tuned, question)

    assert "Quillmoor" not in before
    assert "Quillmoor" in with_lora, with_lora
    assert "Quillmoor" in with_qlora, with_qlora
    assert FACT_ANSWER.startswith(with_lora.strip()[:20])


def test_cli_unknown_config_key_exits_2_naming_it(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("training_config:\n  LoraConfig:\n    rank: 8\n  TrainingArguments:\n    output_dir: /tmp/x\n")
    args = build_parser().parse_args(["--config", str(config), "--metrics-port", "-1"])

    with structlog.testing.capture_logs() as events:
        code = run(args)

    assert code == EXIT_CONFIG
    assert "LoraConfig: unknown key(s) 'rank'" in events[-1]["error"]


def test_python_m_entry_point_reports_a_missing_config_with_exit_2(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "kaito.runtime.tuning", "--config", str(tmp_path / "nope.yaml"), "--metrics-port", "-1"],
        capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": SRC},
    )  # fmt: skip
    assert proc.returncode == 2
    event = json.loads(proc.stderr.strip().splitlines()[-1])
    assert event["event"] == "tuning.config_invalid" and "nope.yaml: cannot read" in event["error"]


def test_cli_missing_column_exits_3_before_loading_the_model(tmp_path: Path, model_dir: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "d.jsonl").write_text('{"prompt": "q", "response": "a"}\n{"prompt": "q"}\n')
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(_training_config(tmp_path / "out", qlora=False)))
    args = build_parser().parse_args(
        ["--config", str(config), "--data-dir", str(tmp_path / "data"), "--model", str(model_dir),
         "--metrics-port", "-1"]
    )  # fmt: skip

    with structlog.testing.capture_logs() as events:
        code = run(args)

    assert code == EXIT_DATA
    failure = [e for e in events if e["event"] == "tuning.dataset_invalid"]
    assert "d.jsonl: row 2: missing column 'response'" in failure[0]["error"]
    assert not any(e["event"] == "tuning.loading_model" for e in events)
    assert not (tmp_path / "out" / COMPLETION_MARKER).exists()


def test_cli_unknown_model_dir_exits_4(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(_training_config(tmp_path / "out", qlora=False)))
    args = build_parser().parse_args(["--config", str(config), "--model", str(tmp_path), "--metrics-port", "-1"])

    with structlog.testing.capture_logs() as events:
        code = run(args)

    assert code == EXIT_MODEL
    assert "no config.json there" in events[-1]["error"]


async def test_inference_server_serves_the_pulled_adapter_per_request(
    lora_run: LoraRun, model_dir: Path, registry: Registry, push_secret: Path, tmp_path: Path, one_thread: None
) -> None:
    """The adapter, pulled from the registry into an adapter dir, is served by kaito.runtime.inference under its
    directory name; requests for the base model name ... get base + adapter (upstream's behaviour), so the base
    model alone is checked in test_adapters_teach_the_fact_that_the_base_model_does_not_know."""
    from aiohttp.test_utils import TestClient, TestServer

    from kaito.runtime.inference.api import create_app
    from kaito.runtime.inference.config import ServerConfig
    from kaito.runtime.inference.server import build_service

    ref = f"{registry.host}/adapters/zorblax:v2"
    oci.push(lora_run.result.output_dir, ref, docker_config=push_secret, files=ADAPTER_FILES, plain_http=True)
    oci.pull(ref, tmp_path / "adapters" / "zorblax", docker_config=push_secret, plain_http=True)
    service = build_service(
        ServerConfig(model_dir=model_dir, adapter_dir=tmp_path / "adapters", dtype="float32", device="cpu", threads=1)
    )
    async with TestClient(TestServer(create_app(service))) as client:
        models = await (await client.get("/v1/models")).json()
        r = await client.post(
            "/v1/chat/completions",
            json={
                "model": "zorblax",
                "messages": [{"role": "user", "content": FACT_QUESTIONS[0]}],
                "max_tokens": 12,
                "temperature": 0,
            },
        )
        body = await r.json()

    assert "zorblax" in {m["id"] for m in models["data"]}
    assert r.status == 200, body
    assert "Quillmoor" in body["choices"][0]["message"]["content"]
