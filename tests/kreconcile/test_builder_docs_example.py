"""The example controller of docs/kreconcile.md, run exactly as written against the API server emulator."""

from __future__ import annotations

import asyncio
import re
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from kreconcile.client import Client
from kreconcile.config import load_config
from kreconcile.errors import NotFound
from kreconcile.gvk import GVK
from kreconcile.manager import Manager
from kreconcile.testing.apiserver import APIServer

DOC = Path(__file__).resolve().parents[2] / "docs" / "kreconcile.md"
CONFIGMAP = GVK("", "v1", "ConfigMap")
NAMESPACE = GVK("", "v1", "Namespace")


def example_source(index: int = 0) -> str:
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    assert len(blocks) > index, "docs/kreconcile.md lacks the python examples"
    return str(blocks[index])


async def test_docs_unit_test_example_passes() -> None:
    namespace: dict[str, Any] = {"__name__": "docs_unit_test_example"}
    exec(compile(example_source(1), str(DOC), "exec"), namespace)
    namespace["Controller"] = partial(namespace["Controller"], skip_name_validation=True)  # runnable more than once
    await asyncio.wait_for(namespace["test_an_update_is_reconciled_again"](), 10)


def loopback_manager(*args: Any, **kwargs: Any) -> Manager:
    """The example's Manager, with its probe and metrics servers on ephemeral loopback ports for the test."""
    kwargs.update(metrics_bind_address="127.0.0.1:0", health_probe_bind_address="127.0.0.1:0")
    return Manager(*args, **kwargs)


@pytest.mark.slow
async def test_docs_example_mirrors_configmaps_and_cleans_up_on_delete(monkeypatch: pytest.MonkeyPatch) -> None:
    source = example_source()
    assert len(source.strip().splitlines()) <= 60
    async with APIServer() as server:
        monkeypatch.setenv("KUBECONFIG", str(server.kubeconfig_path))
        namespace: dict[str, Any] = {"__name__": "mirror_example"}
        exec(compile(source, str(DOC), "exec"), namespace)
        namespace["Manager"] = loopback_manager
        client = Client(load_config(str(server.kubeconfig_path)))
        stop = asyncio.Event()
        task = asyncio.create_task(namespace["main"](stop))
        try:
            await client.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "mirror"}})
            await client.create({"apiVersion": "v1", "kind": "ConfigMap", "data": {"a": "1"},
                                 "metadata": {"name": "demo", "namespace": "default", "labels": {"mirror": "yes"}}})
            await client.create({"apiVersion": "v1", "kind": "ConfigMap", "data": {"b": "2"},
                                 "metadata": {"name": "unlabelled", "namespace": "default"}})

            async def mirrored() -> dict[str, Any] | None:
                try:
                    return await client.get(CONFIGMAP, "default.demo", "mirror")
                except NotFound:
                    return None

            async def wait_for(check: Any) -> None:
                loop = asyncio.get_running_loop()
                deadline = loop.time() + 20
                while not check(await mirrored()):
                    assert loop.time() < deadline, "the example controller did not converge"
                    assert not task.done(), task
                    await asyncio.sleep(0.05)

            await wait_for(lambda cm: cm is not None and cm["data"] == {"a": "1"})
            src = await client.get(CONFIGMAP, "demo", "default")
            assert src["metadata"]["finalizers"] == ["example.com/mirror"]
            src["data"] = {"a": "2"}
            await client.update(src)
            await wait_for(lambda cm: cm is not None and cm["data"] == {"a": "2"})

            await client.delete({"apiVersion": "v1", "kind": "ConfigMap",
                                 "metadata": {"name": "demo", "namespace": "default"}})
            await wait_for(lambda cm: cm is None)
            with pytest.raises(NotFound):
                for _ in range(200):  # the finalizer is removed, so the source goes too
                    await client.get(CONFIGMAP, "demo", "default")
                    await asyncio.sleep(0.05)
            with pytest.raises(NotFound):
                await client.get(CONFIGMAP, "default.unlabelled", "mirror")
        finally:
            stop.set()
            await asyncio.wait_for(task, 30)
            await client.close()
