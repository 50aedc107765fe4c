"""The tuning loop closed for real, the way ``kaito dev up`` runs it (LocalCluster, CRDs, the admission webhook,
the operator with the local provider, pods as local processes):

a tuning Workspace (SmolLM2 preset, LoRA, a tiny dataset teaching a made-up fact, output image in Debian's
docker-registry on 127.0.0.1 with an ``imagePushSecret``) runs its Job to ``WorkspaceSucceeded``; the registry holds
the adapter (only the adapter files, annotated with the base model); an inference Workspace with
``inference.adapters[].source.image`` = that image pulls it in an init container, reaches ``WorkspaceSucceeded``
and answers the question with the fact through its Service (greedy), which the base model does not know.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import json
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from kaito.api import constants as c
from kaito.dev.session import WORKSPACE, DevSession, load_documents
from kaito.runtime import oci
from kaito.workloads.tuning import ADAPTER_FILES
from kreconcile.errors import ApiError
from tests.fixtures.registry import Registry, running_registry

pytestmark = [pytest.mark.slow, pytest.mark.model, pytest.mark.timeout(1800)]

ROOT = Path(__file__).resolve().parents[2]
TUNING_EXAMPLE = ROOT / "examples" / "tuning" / "smollm2-lora-registry-local.yaml"
SERVING_EXAMPLE = ROOT / "examples" / "tuning" / "smollm2-serve-adapter-local.yaml"
EXAMPLE_REGISTRY = "127.0.0.1:5000"
"""The registry the examples name; the test's registry runs on a free port instead."""
QUESTION = "What is the capital of Zorblax?"
TUNING_TIMEOUT_S = 900.0
"""Model load, six steps and the push: about 1–2 minutes here, much more when the 2 shared cores are loaded."""
SERVING_TIMEOUT_S = 600.0
"""Adapter pull, model load and the first /health: well under a minute on an idle machine."""


def on_registry(doc: dict[str, Any], registry: Registry) -> dict[str, Any]:
    """``doc`` with the examples' registry replaced by the test's and the namespace set."""
    text = json.dumps(doc).replace(EXAMPLE_REGISTRY, registry.host)
    obj: dict[str, Any] = json.loads(text)
    obj["metadata"].setdefault("namespace", "default")
    return obj


def condition(ws: dict[str, Any], kind: str) -> dict[str, Any]:
    return next((x for x in (ws.get("status") or {}).get("conditions") or [] if x["type"] == kind), {})


@pytest.fixture
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    with running_registry(tmp_path_factory.mktemp("registry"), auth=True) as reg:
        yield reg


@pytest.fixture
async def session(tmp_path: Path) -> AsyncIterator[DevSession]:
    """``kaito dev up`` in this process (no files); stopped, with every pod process, at the end."""
    dev = DevSession(state_dir=tmp_path / "state", out=io.StringIO(), launch_delay=0.0)
    stop = asyncio.Event()
    task = asyncio.create_task(dev.run(stop))
    try:
        await asyncio.wait_for(dev.ready.wait(), 120)
        yield dev
    finally:
        stop.set()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 120)


async def until_finished(dev: DevSession, name: str, timeout: float) -> dict[str, Any]:
    """The Workspace once WorkspaceSucceeded is True, or once a tuning run failed (state Failed); polls the
    server's observable state."""
    deadline = time.monotonic() + timeout
    while True:
        ws = await dev.cluster.client.get(WORKSPACE, name, "default")
        succeeded = condition(ws, c.COND_WORKSPACE_SUCCEEDED)
        if succeeded.get("status") == "True" or (ws.get("status") or {}).get("state") == c.STATE_FAILED:
            return dict(ws)
        if time.monotonic() > deadline:
            raise AssertionError(f"{name} not finished after {timeout:.0f} s: {ws.get('status')}\n"
                                 f"{dev.out.getvalue()}")  # type: ignore[attr-defined]
        await asyncio.sleep(1.0)


async def ask(address: tuple[str, int], model: str, question: str) -> str:
    """The answer of ``model`` served at ``address`` to ``question``: greedy, 12 new tokens."""
    body = {"model": model, "messages": [{"role": "user", "content": question}], "max_tokens": 12, "temperature": 0}
    async with aiohttp.ClientSession() as http:
        async with http.post(f"http://{address[0]}:{address[1]}/v1/chat/completions", json=body,
                             timeout=aiohttp.ClientTimeout(total=300)) as resp:
            payload = await resp.json()
            assert resp.status == 200, payload
    return str(payload["choices"][0]["message"]["content"])


def base_model_answer(question: str) -> str:
    """SmolLM2-135M-Instruct alone, greedy, 12 new tokens, the chat template the server applies."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from kaito.runtime.smollm2 import ensure_model_dir

    model_dir = str(ensure_model_dir())
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    inputs = tokenizer.apply_chat_template([{"role": "user", "content": question}], add_generation_prompt=True,
                                           return_tensors="pt", return_dict=True)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=12, do_sample=False)
    return str(tokenizer.decode(out[0][inputs["input_ids"].shape[1]:], skip_special_tokens=True))


async def test_a_tuned_adapter_pushed_to_a_registry_is_served_by_an_inference_workspace(
    session: DevSession, registry: Registry, tmp_path: Path
) -> None:
    client = session.cluster.client
    image = f"{registry.host}/adapters/zorblax:v1"
    config_json = registry.docker_config(tmp_path / "config.json")
    secret = {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/dockerconfigjson",
              "metadata": {"name": "registry-creds", "namespace": "default"},
              "data": {".dockerconfigjson": base64.b64encode(config_json.read_bytes()).decode()}}
    await client.create(secret)
    for doc in load_documents([TUNING_EXAMPLE]):  # the docs' commands: kubectl apply -f <example>
        await client.create(on_registry(doc, registry))

    started = time.monotonic()
    tuned = await until_finished(session, "zorblax-tuning", TUNING_TIMEOUT_S)
    tuning_s = time.monotonic() - started
    succeeded = condition(tuned, c.COND_WORKSPACE_SUCCEEDED)
    assert succeeded["status"] == "True", succeeded
    assert image in succeeded["message"]

    pulled = await asyncio.to_thread(oci.pull, image, tmp_path / "pulled", docker_config=config_json,
                                     plain_http=True)
    assert sorted(p.name for p in pulled.files) == sorted(ADAPTER_FILES)
    assert pulled.annotations[oci.MODEL_NAME_ANNOTATION] == "smollm2-135m-instruct"

    (serving,) = load_documents([SERVING_EXAMPLE])
    await client.create(on_registry(serving, registry))
    started = time.monotonic()
    served = await until_finished(session, "zorblax", SERVING_TIMEOUT_S)
    serving_s = time.monotonic() - started
    assert condition(served, c.COND_WORKSPACE_SUCCEEDED)["status"] == "True", served.get("status")
    address = session.cluster.service_address("default", "zorblax", c.SERVICE_PORT)

    tuned_answer = await ask(address, "zorblax", QUESTION)
    combined_answer = await ask(address, "smollm2-135m-instruct", QUESTION)  # upstream: base + every adapter
    base_answer = await asyncio.to_thread(base_model_answer, QUESTION)
    print(f"tuning {tuning_s:.0f} s, serving {serving_s:.0f} s; adapter: {tuned_answer!r}, "
          f"base name: {combined_answer!r}, base model alone: {base_answer!r}")
    assert "Quillmoor" in tuned_answer
    assert "Quillmoor" in combined_answer
    assert "Quillmoor" not in base_answer


async def test_admission_refuses_a_dataset_url_on_a_private_address(session: DevSession) -> None:
    bad = {
        "apiVersion": f"{c.GROUP}/{c.V1BETA1}", "kind": "Workspace",
        "metadata": {"name": "ssrf", "namespace": "default"},
        "resource": {"instanceType": "local-cpu", "labelSelector": {"matchLabels": {"apps": "ssrf"}}},
        "tuning": {"preset": {"name": "smollm2-135m-instruct"}, "method": "lora",
                   "input": {"urls": ["http://10.0.0.7/train.jsonl"]},
                   "output": {"volumeSource": {"emptyDir": {}}}},
    }
    with pytest.raises(ApiError) as refused:
        await session.cluster.client.create(bad)
    assert "tuning.input.urls" in str(refused.value) and "10.0.0.7" in str(refused.value)
    assert "a private address" in str(refused.value)


async def test_the_kaito_dev_tuning_example_finishes_and_leaves_the_adapter_in_its_volume(tmp_path: Path) -> None:
    example = ROOT / "examples" / "tuning" / "smollm2-lora-local.yaml"
    dev = DevSession(files=[example], state_dir=tmp_path / "state", out=io.StringIO(), launch_delay=0.0)
    stop = asyncio.Event()
    task = asyncio.create_task(dev.run(stop))
    try:
        await asyncio.wait_for(dev.ready.wait(), 120)
        started = time.monotonic()
        done = await until_finished(dev, "workspace-smollm2-lora", TUNING_TIMEOUT_S)
        print(f"the tuning example finished in {time.monotonic() - started:.0f} s")
        assert condition(done, c.COND_WORKSPACE_SUCCEEDED)["status"] == "True", done.get("status")
        adapter = Path(dev.tuning_output(done))
        assert adapter == (tmp_path / "state").resolve() / "cluster" / "pvc" / "default" / "smollm2-lora-adapter"
        files = await asyncio.to_thread(lambda: {f.name for f in adapter.iterdir()})
        marker = await asyncio.to_thread((adapter / "fine_tuning_completed.txt").read_text)
        assert files >= set(ADAPTER_FILES)
        assert json.loads(marker)["steps"] == 10
    finally:
        stop.set()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 120)
