"""Emulator lifecycle: persistence across restarts, the CLI entry point, CRD removal, initial-events watches."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pytest

from kreconcile.testing import APIServer
from kreconcile.testing.kubeconfig import load

from .test_apiserver_core import CM, WIDGET_CRD, WIDGETS


async def test_data_dir_keeps_objects_and_versions_across_restarts(tmp_path: Path) -> None:
    async with APIServer(data_dir=tmp_path) as server, load(server.kubeconfig_path).session() as http:
        await http.post("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", json=WIDGET_CRD)
        r = await http.post(CM, json={"metadata": {"name": "kept"}, "data": {"k": "v"}})
        kept = await r.json()
        await http.post(CM, json={"metadata": {"name": "gone"}})
        await http.delete(f"{CM}/gone")
        await http.post(WIDGETS, json={"apiVersion": "test.kreconcile.dev/v1", "kind": "Widget",
                                       "metadata": {"name": "w"}, "spec": {"size": 2}})
        last_rv = server.store.rv
    async with APIServer(data_dir=tmp_path) as server, load(server.kubeconfig_path).session() as http:
        got = await (await http.get(f"{CM}/kept")).json()
        assert got["data"] == {"k": "v"} and got["metadata"]["uid"] == kept["metadata"]["uid"]
        assert (await http.get(f"{CM}/gone")).status == 404
        widget = await (await http.get(f"{WIDGETS}/w")).json()
        assert widget["spec"]["size"] == 2
        r = await http.post(CM, json={"metadata": {"name": "new"}})
        assert int((await r.json())["metadata"]["resourceVersion"]) > last_rv


async def test_journal_survives_an_unclean_stop(tmp_path: Path) -> None:
    server = APIServer(data_dir=tmp_path)
    await server.start()
    async with load(server.kubeconfig_path).session() as http:
        await http.post(CM, json={"metadata": {"name": "journaled"}})
    server._persistence = None  # simulate a crash: no snapshot on the way out
    await server.stop()
    async with APIServer(data_dir=tmp_path) as again, load(again.kubeconfig_path).session() as http:
        assert (await http.get(f"{CM}/journaled")).status == 200


async def test_deleting_a_crd_deletes_its_objects_and_stops_serving(apiserver: APIServer) -> None:
    async with load(apiserver.kubeconfig_path).session() as http:
        await http.post("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", json=WIDGET_CRD)
        await http.post(WIDGETS, json={"apiVersion": "test.kreconcile.dev/v1", "kind": "Widget",
                                       "metadata": {"name": "w"}})
        r = await http.delete("/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.test.kreconcile.dev")
        assert r.status == 200
        for _ in range(200):
            if (await http.get(WIDGETS)).status == 404:
                break
            await asyncio.sleep(0.02)
        assert (await http.get(WIDGETS)).status == 404
        assert apiserver.store.items(("test.kreconcile.dev", "widgets")) == []


async def test_send_initial_events_ends_with_an_annotated_bookmark(apiserver: APIServer) -> None:
    async with load(apiserver.kubeconfig_path).session() as http:
        await http.post(CM, json={"metadata": {"name": "a"}})
        params = {"watch": "true", "sendInitialEvents": "true", "resourceVersionMatch": "NotOlderThan",
                  "allowWatchBookmarks": "true", "timeoutSeconds": "5"}
        async with http.get(CM, params=params) as w:
            first = json.loads(await w.content.readline())
            second = json.loads(await w.content.readline())
    assert first["type"] == "ADDED"
    assert second["type"] == "BOOKMARK"
    assert second["object"]["metadata"]["annotations"] == {"k8s.io/initial-events-end": "true"}


@pytest.mark.slow
async def test_module_entry_point_serves_and_writes_a_kubeconfig(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kc.yaml"
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "kreconcile.testing.apiserver",
                                                "--kubeconfig-out", str(kubeconfig), "--insecure-http",
                                                stdout=asyncio.subprocess.PIPE)
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 60)
        assert line.startswith(b"ready http://127.0.0.1:")
        async with load(kubeconfig).session() as http:
            r = await http.post(CM, json={"metadata": {"name": "cli"}})
            assert r.status == 201
    finally:
        proc.terminate()
        assert await asyncio.wait_for(proc.wait(), 30) == 0
