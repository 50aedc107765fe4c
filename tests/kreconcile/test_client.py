"""Client over HTTP against the API server emulator (kreconcile.testing.APIServer)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Any

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from kreconcile import metrics
from kreconcile.client import Client, Ref
from kreconcile.clock import FakeClock
from kreconcile.config import RestConfig, load_config
from kreconcile.errors import (
    AlreadyExists,
    Conflict,
    Expired,
    Invalid,
    NoKindMatchError,
    NotFound,
    TooManyRequests,
    UnsupportedMediaType,
    ignore_not_found,
)
from kreconcile.gvk import GVK
from kreconcile.testing.apiserver import APIServer

CM = GVK("", "v1", "ConfigMap")
WIDGET = GVK("test.kreconcile.io", "v1", "Widget")
NS = GVK("", "v1", "Namespace")

WIDGET_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "widgets.test.kreconcile.io"},
    "spec": {
        "group": "test.kreconcile.io",
        "scope": "Namespaced",
        "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "listKind": "WidgetList"},
        "versions": [{
            "name": "v1", "served": True, "storage": True, "subresources": {"status": {}},
            "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                "spec": {"type": "object", "properties": {"value": {"type": "integer", "minimum": 0}}},
                "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
            }}},
        }],
    },
}


def configmap(name: str, ns: str = "default", labels: dict[str, str] | None = None, **data: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": ns, "labels": labels or {}}, "data": dict(data)}


def widget(name: str, value: int = 1) -> dict[str, Any]:
    return {"apiVersion": "test.kreconcile.io/v1", "kind": "Widget",
            "metadata": {"name": name, "namespace": "default"}, "spec": {"value": value}}


@pytest.fixture
async def server() -> AsyncIterator[APIServer]:
    async with APIServer() as srv:
        yield srv


@pytest.fixture
async def client(server: APIServer) -> AsyncIterator[Client]:
    async with Client(load_config(str(server.kubeconfig_path)).with_rate(0)) as c:
        yield c


async def test_create_get_list_delete_roundtrip_with_typed_errors(client: Client) -> None:
    created = await client.create(configmap("a", x="1"))
    assert created["metadata"]["uid"] and created["metadata"]["resourceVersion"]
    with pytest.raises(AlreadyExists):
        await client.create(configmap("a"))
    assert (await client.get(CM, "a", "default"))["data"] == {"x": "1"}
    with pytest.raises(NotFound):
        await client.get(CM, "missing", "default")
    assert await ignore_not_found(client.get(CM, "missing", "default")) is None
    await client.delete(created)
    with pytest.raises(NotFound):
        await client.delete(Ref(CM, "a", "default"))


async def test_stale_update_gets_conflict(client: Client) -> None:
    first = await client.create(configmap("a", v="1"))
    fresh = dict(first, data={"v": "2"})
    await client.update(fresh)
    stale = dict(first, data={"v": "3"})
    with pytest.raises(Conflict, match="modified"):
        await client.update(stale)
    assert (await client.get(CM, "a", "default"))["data"] == {"v": "2"}


async def test_every_patch_type_sends_its_content_type(client: Client) -> None:
    obj = await client.create(configmap("a", x="1"))
    assert (await client.patch(obj, {"data": {"y": "2"}}))["data"] == {"x": "1", "y": "2"}
    after_json = await client.patch(obj, [{"op": "remove", "path": "/data/x"}], "json")
    assert after_json["data"] == {"y": "2"}
    assert (await client.patch(obj, {"data": {"z": "3"}}, "strategic"))["data"] == {"y": "2", "z": "3"}
    applied = await client.apply(configmap("a", owned="yes"), field_manager="b-test")
    assert applied["data"]["owned"] == "yes"
    assert any(m.get("manager") == "b-test" and m.get("operation") == "Apply"
               for m in applied["metadata"]["managedFields"])
    with pytest.raises(ValueError, match="list of RFC 6902"):
        await client.patch(obj, {"data": {}}, "json")
    with pytest.raises(ValueError, match="field_manager"):
        await client.patch(obj, configmap("a"), "apply")


async def test_custom_resources_status_subresource_and_strategic_patch_rejected(client: Client) -> None:
    await client.create(WIDGET_CRD)
    w = await client.create(widget("w1", 1))
    assert w["metadata"]["generation"] == 1
    with_status = await client.status().patch(w, {"status": {"observed": 1}})
    assert with_status["status"] == {"observed": 1} and with_status["metadata"]["generation"] == 1
    assert (await client.patch(w, {"spec": {"value": 2}}))["metadata"]["generation"] == 2
    with pytest.raises(UnsupportedMediaType, match="use patch_type='merge'"):
        await client.patch(w, {"spec": {"value": 3}}, "strategic")
    with pytest.raises(Invalid) as err:
        await client.create(widget("bad", -1))
    assert any("spec.value" in c.field for c in err.value.causes)


async def test_kind_installed_after_a_miss_is_found_on_refresh(server: APIServer) -> None:
    clock = FakeClock()
    async with Client(load_config(str(server.kubeconfig_path)).with_rate(0), clock=clock) as c:
        with pytest.raises(NoKindMatchError, match="install its CRD"):
            await c.list(WIDGET, "default")
        await c.create(WIDGET_CRD)
        clock.advance(1.0)
        await c.create(widget("w1"))
        assert [i["metadata"]["name"] for i in (await c.list(WIDGET, "default"))["items"]] == ["w1"]


async def test_list_with_selectors_and_pagination(client: Client) -> None:
    for i in range(5):
        await client.create(configmap(f"cm{i}", labels={"app": "web" if i % 2 else "db", "i": str(i)}))
    web = await client.list(CM, "default", label_selector={"app": "web"})
    assert sorted(o["metadata"]["name"] for o in web["items"]) == ["cm1", "cm3"]
    assert all(o["kind"] == "ConfigMap" and o["apiVersion"] == "v1" for o in web["items"])
    sel = await client.list(CM, "default", label_selector="app=db,i notin (0)")
    assert sorted(o["metadata"]["name"] for o in sel["items"]) == ["cm2", "cm4"]
    by_name = await client.list(CM, "default", field_selector="metadata.name=cm3")
    assert [o["metadata"]["name"] for o in by_name["items"]] == ["cm3"]
    page = await client.list(CM, "default", label_selector="app", limit=2)
    assert len(page["items"]) == 2 and page["metadata"].get("continue")
    everything = await client.list_all(CM, "default", label_selector="app", page_size=2)
    assert sorted(o["metadata"]["name"] for o in everything["items"]) == [f"cm{i}" for i in range(5)]
    assert everything["metadata"]["resourceVersion"]


async def test_delete_preconditions_and_collection_delete(client: Client) -> None:
    obj = await client.create(configmap("a"))
    with pytest.raises(Conflict):
        await client.delete(obj, preconditions={"uid": "not-the-uid"})
    await client.delete(obj, preconditions={"uid": obj["metadata"]["uid"]}, propagation_policy="Background")
    for n in ("b", "c"):
        await client.create(configmap(n, labels={"gone": "yes"}))
    await client.create(configmap("keep"))
    await client.delete_all_of(CM, "default", label_selector={"gone": "yes"})
    left = [o["metadata"]["name"] for o in (await client.list(CM, "default"))["items"]]
    assert "keep" in left and "b" not in left and "c" not in left


async def test_namespaced_kind_without_namespace_is_a_clear_error(client: Client) -> None:
    with pytest.raises(ValueError, match=r"metadata\.namespace"):
        await client.get(CM, "a")
    # cluster-scoped kinds need none
    assert (await client.get(NS, "default"))["metadata"]["name"] == "default"


async def test_429_with_retry_after_is_waited_out_and_retried(server: APIServer) -> None:
    clock = FakeClock()
    async with Client(load_config(str(server.kubeconfig_path)).with_rate(0), clock=clock, max_retries=2) as c:
        await c.create(configmap("a"))
        server.faults.inject(429, verb="get", resource="configmaps", times=2, retry_after=3)
        task = asyncio.create_task(c.get(CM, "a", "default"))
        for _ in range(2):
            await asyncio.wait_for(_until(lambda: clock.sleepers == 1), 5)
            assert clock.next_deadline() == pytest.approx(clock.now() + 3)
            clock.advance(3)
        assert (await asyncio.wait_for(task, 5))["metadata"]["name"] == "a"

        server.faults.inject(429, verb="get", resource="configmaps", times=5, retry_after=2)
        task = asyncio.create_task(c.get(CM, "a", "default"))
        for _ in range(2):
            await asyncio.wait_for(_until(lambda: clock.sleepers == 1), 5)
            clock.advance(2)
        with pytest.raises(TooManyRequests) as err:
            await asyncio.wait_for(task, 5)
        assert err.value.retry_after == 2


async def test_requests_are_counted_by_code_method_and_host(client: Client, server: APIServer) -> None:
    def count(code: str, method: str) -> float:
        text = generate_latest(metrics.REGISTRY).decode()
        for fam in text_string_to_metric_families(text):
            if fam.name == "rest_client_requests":
                for s in fam.samples:
                    if s.name.endswith("_total") and s.labels == {
                            "code": code, "method": method, "host": f"127.0.0.1:{server.port}"}:
                        return s.value
        return 0.0

    before_201, before_404 = count("201", "POST"), count("404", "GET")
    await client.create(configmap("a"))
    with pytest.raises(NotFound):
        await client.get(CM, "nope", "default")
    assert count("201", "POST") == before_201 + 1
    assert count("404", "GET") == before_404 + 1


async def test_watch_streams_changes_and_old_versions_expire(client: Client, server: APIServer) -> None:
    start = await client.list(CM, "default")
    rv = start["metadata"]["resourceVersion"]
    events: list[tuple[str, str]] = []

    async def consume() -> None:
        async for etype, obj in client.watch(CM, "default", resource_version=rv, timeout_seconds=30):
            if etype != "BOOKMARK":
                events.append((etype, obj["metadata"]["name"]))
            if len(events) == 3:
                return

    task = asyncio.create_task(consume())
    obj = await client.create(configmap("w1"))
    await client.patch(obj, {"data": {"a": "b"}})
    await client.delete(obj)
    await asyncio.wait_for(task, 5)
    assert events == [("ADDED", "w1"), ("MODIFIED", "w1"), ("DELETED", "w1")]
    server.faults.expire_next_watch("configmaps")
    with pytest.raises(Expired):
        async for _ in client.watch(CM, "default", resource_version=rv, timeout_seconds=30):
            pass


async def _until(cond: Any) -> None:
    while not cond():
        await asyncio.sleep(0.001)


async def test_get_log_returns_the_container_log_text(client: Client, server: APIServer) -> None:
    await client.create({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "default"},
                         "spec": {"nodeName": "n1", "containers": [{"name": "main", "image": "busybox"}]}})
    seen: list[tuple[str, str, str, bool, int | None]] = []

    async def provider(ns: str, pod: str, container: str, follow: bool, tail: int | None) -> AsyncIterator[bytes]:
        seen.append((ns, pod, container, follow, tail))
        yield b"line 1\n"
        yield b"line 2\n"

    server.set_pod_log_provider(provider)
    assert await client.get_log("p", "default", container="main", tail_lines=2) == "line 1\nline 2\n"
    assert seen == [("default", "p", "main", False, 2)]


async def test_env_proxy_is_resolved_once_and_no_proxy_is_honoured(
    monkeypatch: pytest.MonkeyPatch, server: APIServer
) -> None:
    monkeypatch.setenv("HTTP_PROXY", "http://ann:pw@proxy.invalid:3128")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    async with Client(RestConfig(host="http://api.example.invalid:6443")) as proxied:
        await proxied.connect()
        assert proxied.proxy == "http://proxy.invalid:3128"
        assert proxied.proxy_headers == {"Proxy-Authorization": "Basic YW5uOnB3"}
    async with Client(load_config(str(server.kubeconfig_path)).with_rate(0)) as direct:
        assert (await direct.get(NS, "default"))["metadata"]["name"] == "default"
        assert direct.proxy is None


async def test_existing_kubernetes_asyncio_api_client_can_be_used(server: APIServer) -> None:
    api = await load_config(str(server.kubeconfig_path)).new_api_client()
    try:
        async with Client(api) as client:
            assert (await client.get(NS, "default"))["metadata"]["name"] == "default"
            assert await client.api_client() is api
        assert not api.rest_client.pool_manager.closed  # the caller's pool stays open
    finally:
        await api.close()


def test_importing_kreconcile_does_not_load_kubernetes_asyncio_models() -> None:
    code = ("import sys, kreconcile.manager, kreconcile.client, kreconcile.informer; "
            "print(any(m.startswith('kubernetes_asyncio') for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "False"  # ~40 MiB of generated models stay out of the operator


async def test_list_all_falls_back_to_one_full_list_when_a_continue_token_expires(client: Client) -> None:
    for i in range(5):
        await client.create(configmap(f"cm{i}"))
    calls: list[str | None] = []
    real_list = client.list

    async def flaky_list(gvk: GVK, namespace: str | None = None, **kw: Any) -> dict[str, Any]:
        calls.append(kw.get("continue_"))
        if kw.get("continue_"):
            raise Expired("the provided continue parameter is too old")
        return await real_list(gvk, namespace, **kw)

    client.list = flaky_list  # type: ignore[method-assign]
    result = await client.list_all(CM, "default", page_size=2)
    assert sorted(o["metadata"]["name"] for o in result["items"]) == [f"cm{i}" for i in range(5)]
    assert calls[0] is None and calls[1] is not None and calls[2] is None  # page 1, expired page 2, full list
