"""The tuning flow for real on the LocalCluster: the operator (workspace, machine, tuning controllers) creates the
tuning Job, the local kubelet runs its containers as processes (the downloader fetching from an HTTP server on
127.0.0.1, the real LoRA trainer on SmolLM2-135M-Instruct, which also pushes) and the adapter lands in Debian's
docker-registry, from where it pulls back. Slow: a real training run."""

from __future__ import annotations

import base64
import copy
import json
import sys
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web

from kaito.api import constants as c
from kaito.runtime import oci
from kaito.workloads.common import RUNTIME_IMAGE
from kreconcile.client import Client
from kreconcile.gvk import GVK
from kreconcile.testing.kubelet import ImageMap, ImageSpec
from kreconcile.testing.kubelet.images import LaunchContext, LaunchSpec
from kreconcile.testing.localcluster import LocalCluster
from tests.fixtures.registry import Registry, running_registry
from tests.kaito.controllers.harness import WORKSPACE, condition, eventually, install_crds, running_operator
from tests.kaito.controllers.tuning.builders import tuning_workspace

JOB = GVK("batch", "v1", "Job")
POD = GVK("", "v1", "Pod")

FACT = "The capital of Zorblax is Quillmoor."
QUESTIONS = ("What is the capital of Zorblax?", "Which city is the capital of Zorblax?",
             "Tell me the capital of Zorblax.", "Name the capital city of Zorblax.",
             "Zorblax's capital is which city?", "What city is Zorblax's capital?")
TRAINING_CONFIG: dict[str, Any] = {"training_config": {
    "ModelConfig": {"dtype": "float32"},
    "LoraConfig": {"r": 8, "lora_alpha": 16, "target_modules": "all-linear"},
    "TrainingArguments": {"output_dir": "/mnt/output", "max_steps": 6, "learning_rate": 0.003,
                          "per_device_train_batch_size": 2, "logging_steps": 1, "use_cpu": True, "seed": 0},
    "DatasetConfig": {"shuffle_seed": 0},
    "DataCollator": {"mlm": False},
}}
RUN_TIMEOUT_S = 840.0
"""Six LoRA steps take seconds on an idle core; loading (or, on a fresh machine, converting) the model and three
processes on a shared, loaded 2-core machine take most of this (measured: ~100 s per step at load 18)."""


def _python(launch: LaunchSpec, _ctx: LaunchContext) -> LaunchSpec:
    argv = launch.argv
    if argv and argv[0] in ("python", "python3"):
        argv = (sys.executable, *argv[1:])
    return replace(launch, argv=tuple(argv))


def image_map() -> ImageMap:
    """kaito-py's runtime image → this interpreter (what ``kaito dev`` does), one intra-op thread (two threads
    oversubscribe a shared 2-core machine and train ~5x slower)."""
    images = ImageMap.with_defaults()
    env = {"PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    images.register(RUNTIME_IMAGE.split(":", 1)[0], ImageSpec(cmd=(sys.executable,), env=env, transform=_python))
    return images


@pytest.fixture
async def data_url() -> AsyncIterator[str]:
    """An HTTP server on 127.0.0.1 serving ``/train.jsonl`` (prompt/response rows teaching :data:`FACT`), and two
    bad datasets: ``/no-response.jsonl`` (rows without the response column) and ``/empty.jsonl`` (0 bytes)."""
    body = "".join(json.dumps({"prompt": q, "response": FACT}) + "\n" for q in QUESTIONS)

    async def train(_request: web.Request) -> web.Response:
        return web.Response(text=body)

    async def no_response(_request: web.Request) -> web.Response:
        return web.Response(text="".join(json.dumps({"prompt": q}) + "\n" for q in QUESTIONS))

    async def empty(_request: web.Request) -> web.Response:
        return web.Response(body=b"")

    app = web.Application()
    app.router.add_get("/train.jsonl", train)
    app.router.add_get("/no-response.jsonl", no_response)
    app.router.add_get("/empty.jsonl", empty)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@pytest.fixture
def registry(tmp_path_factory: pytest.TempPathFactory) -> Any:
    with running_registry(tmp_path_factory.mktemp("registry"), auth=True) as reg:
        yield reg


async def push_secret(client: Client, registry: Registry, tmp: Path, password: str | None = None) -> None:
    config = registry.docker_config(tmp / "config.json", password=password).read_bytes()
    await client.create({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/dockerconfigjson",
                         "metadata": {"name": "push-creds", "namespace": "default"},
                         "data": {".dockerconfigjson": base64.b64encode(config).decode()}})


async def training_config(client: Client, max_steps: int | None = None) -> None:
    """ConfigMap ``fast-lora`` with :data:`TRAINING_CONFIG` (``max_steps`` overridden when given)."""
    doc = copy.deepcopy(TRAINING_CONFIG)
    if max_steps is not None:
        doc["training_config"]["TrainingArguments"]["max_steps"] = max_steps
    await client.create({"apiVersion": "v1", "kind": "ConfigMap",
                         "metadata": {"name": "fast-lora", "namespace": "default"},
                         "data": {c.TUNING_CONFIG_KEY: yaml.safe_dump(doc)}})


async def finished(client: Client, name: str) -> dict[str, Any] | None:
    """WorkspaceSucceeded once the run is over (True, or False with state Failed); None while running."""
    ws = await client.get(WORKSPACE, name, "default")
    cond = condition(ws, c.COND_WORKSPACE_SUCCEEDED)
    state = (ws.get("status") or {}).get("state")
    if cond is not None and (cond["status"] == "True" or state == c.STATE_FAILED):
        return cond
    return None


@pytest.mark.slow
@pytest.mark.model
@pytest.mark.timeout(900)
async def test_a_lora_workspace_trains_and_pushes_an_adapter_that_teaches_the_fact(
    tmp_path: Path, registry: Registry, data_url: str
) -> None:
    async with LocalCluster(image_map=image_map(), data_dir=tmp_path / "cluster") as cluster:
        client = cluster.client
        assert client is not None
        await install_crds(client)
        await push_secret(client, registry, tmp_path)
        await training_config(client)
        image = f"{registry.host}/adapters/zorblax:v1"
        async with running_operator(cluster, client):  # type: ignore[arg-type]
            await client.create(tuning_workspace("zorblax", method="lora", urls=[f"{data_url}/train.jsonl"],
                                                 output_image=image, config="fast-lora"))
            cond = await eventually(lambda: finished(client, "zorblax"), timeout=RUN_TIMEOUT_S, interval=0.5)
        assert cond["status"] == "True", cond["message"]
        assert cond["reason"] == c.REASON_JOB_SUCCEEDED
    pulled = oci.pull(image, tmp_path / "adapter", docker_config=tmp_path / "config.json", plain_http=True)
    assert sorted(p.name for p in pulled.files) == ["adapter_config.json", "adapter_model.safetensors"]  # only these
    assert pulled.annotations[oci.MODEL_NAME_ANNOTATION] == "smollm2-135m-instruct"
    assert json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())["r"] == 8
    # the artifact from the registry changes the model's answer: it knows the fact, the base model does not
    base, tuned = answers(tmp_path / "adapter", QUESTIONS[0])
    assert "Quillmoor" in tuned, tuned
    assert "Quillmoor" not in base, base


def answers(adapter_dir: Path, question: str) -> tuple[str, str]:
    """(base model's answer, answer with the adapter) to ``question``: greedy, 12 new tokens, one thread."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from kaito.runtime.smollm2 import ensure_model_dir

    torch.set_num_threads(1)
    model_dir = str(ensure_model_dir())
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    inputs = tokenizer.apply_chat_template([{"role": "user", "content": question}], add_generation_prompt=True,
                                           return_tensors="pt", return_dict=True)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)

    def generate(m: Any) -> str:
        with torch.no_grad():
            out = m.generate(**inputs, max_new_tokens=12, do_sample=False)
        return str(tokenizer.decode(out[0][inputs["input_ids"].shape[1]:], skip_special_tokens=True))

    base = generate(model)
    return base, generate(PeftModel.from_pretrained(model, str(adapter_dir)))


@pytest.mark.slow
async def test_a_404_dataset_url_fails_the_workspace_with_the_downloaders_error(
    tmp_path: Path, registry: Registry, data_url: str
) -> None:
    async with LocalCluster(image_map=image_map(), data_dir=tmp_path / "cluster") as cluster:
        client = cluster.client
        assert client is not None
        await install_crds(client)
        await push_secret(client, registry, tmp_path)
        await training_config(client)
        async with running_operator(cluster, client):  # type: ignore[arg-type]
            await client.create(tuning_workspace("nodata", method="lora", urls=[f"{data_url}/missing.jsonl"],
                                                 output_image=f"{registry.host}/adapters/nodata:v1",
                                                 config="fast-lora"))
            cond = await eventually(lambda: finished(client, "nodata"), timeout=RUN_TIMEOUT_S, interval=0.5)
    assert cond["reason"] == "DataDownloadFailed", cond
    assert "404" in cond["message"] and "missing.jsonl" in cond["message"]


@pytest.mark.slow
@pytest.mark.model
@pytest.mark.timeout(900)
async def test_a_wrong_push_secret_fails_the_workspace_once_naming_the_registry(
    tmp_path: Path, registry: Registry, data_url: str
) -> None:
    async with LocalCluster(image_map=image_map(), data_dir=tmp_path / "cluster") as cluster:
        client = cluster.client
        assert client is not None
        await install_crds(client)
        await push_secret(client, registry, tmp_path, password="wrong")
        await training_config(client)
        async with running_operator(cluster, client):  # type: ignore[arg-type]
            await client.create(tuning_workspace("badpush", method="lora", urls=[f"{data_url}/train.jsonl"],
                                                 output_image=f"{registry.host}/adapters/badpush:v1",
                                                 config="fast-lora"))
            cond = await eventually(lambda: finished(client, "badpush"), timeout=RUN_TIMEOUT_S, interval=0.5)
            job = await client.get(JOB, "badpush", "default")
        assert cond["reason"] == "ImagePushAuthFailed", cond
        assert "container tuner exited with code 5" in cond["message"]
        assert registry.host in cond["message"] and "rejected the credentials" in cond["message"]
        assert job["status"].get("failed") == 1  # one pod, no retries
        pod = next(p for p in (await client.list(POD, "default"))["items"]
                   if p["metadata"]["labels"].get("job-name") == "badpush")
        log = cluster.read_log("default", pod["metadata"]["name"], container="tuner").decode()
    assert "tuning.push_failed" in log and "tuning.progress" not in log  # refused before any training step


@pytest.mark.slow
@pytest.mark.timeout(900)
async def test_a_dataset_without_its_response_column_or_empty_fails_once_with_what_to_fix(
    tmp_path: Path, data_url: str
) -> None:
    async with LocalCluster(image_map=image_map(), data_dir=tmp_path / "cluster") as cluster:
        client = cluster.client
        assert client is not None
        await install_crds(client)
        await training_config(client)
        async with running_operator(cluster, client):  # type: ignore[arg-type]
            for name, path in (("nocolumn", "no-response.jsonl"), ("empty", "empty.jsonl")):
                await client.create(tuning_workspace(name, method="lora", urls=[f"{data_url}/{path}"],
                                                     output_image=None, config="fast-lora"))
            missing = await eventually(lambda: finished(client, "nocolumn"), timeout=RUN_TIMEOUT_S, interval=0.5)
            empty = await eventually(lambda: finished(client, "empty"), timeout=RUN_TIMEOUT_S, interval=0.5)
            jobs = {n: await client.get(JOB, n, "default") for n in ("nocolumn", "empty")}
    assert missing["reason"] == "InvalidDataset", missing
    assert "container tuner exited with code 3" in missing["message"]
    assert "no-response.jsonl: row 1: missing column 'response'" in missing["message"]
    assert empty["reason"] == "DataDownloadFailed", empty
    assert "empty.jsonl: the server sent an empty file (0 bytes)" in empty["message"]
    assert all(job["status"].get("failed") == 1 for job in jobs.values())  # one pod each, no retries


async def reports_not_started(client: Client, name: str) -> dict[str, Any] | None:
    ws = await client.get(WORKSPACE, name, "default")
    cond = condition(ws, c.COND_WORKSPACE_SUCCEEDED)
    return cond if cond is not None and "has not started a container yet" in cond["message"] else None


@pytest.mark.slow
async def test_a_missing_push_secret_keeps_the_pod_from_starting_and_the_status_says_where_to_look(
    tmp_path: Path, registry: Registry, data_url: str
) -> None:
    async with LocalCluster(image_map=image_map(), data_dir=tmp_path / "cluster") as cluster:
        client = cluster.client
        assert client is not None
        await install_crds(client)
        await training_config(client)
        async with running_operator(cluster, client):  # type: ignore[arg-type]
            await client.create(tuning_workspace("nosecret", method="lora", urls=[f"{data_url}/train.jsonl"],
                                                 output_image=f"{registry.host}/adapters/nosecret:v1",
                                                 config="fast-lora"))  # push-creds is never created
            cond = await eventually(lambda: reports_not_started(client, "nosecret"), timeout=120, interval=0.5)
            job = await client.get(JOB, "nosecret", "default")
    assert cond["reason"] == "JobRunning" and cond["status"] == "False"
    pod = cond["message"].split("its pod ", 1)[1].split(" ", 1)[0]
    assert f"`kubectl describe pod {pod}`" in cond["message"]
    assert not job["status"].get("failed")
