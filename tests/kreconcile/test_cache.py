"""Cache over the in-memory list/watch source: copy-on-read, selectors, indexes, namespace scoping."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from kreconcile.cache import Cache, CacheNotStartedError, ObjectSelector
from kreconcile.cachedclient import CachedClient
from kreconcile.errors import NotFound
from kreconcile.gvk import GVK
from tests.kreconcile.test_informer import CM, FakeSource, cm


def labelled(name: str, ns: str = "default", **labels: str) -> dict[str, Any]:
    obj = cm(name, ns)
    obj["metadata"]["labels"] = labels
    return obj


@pytest.fixture
async def cache() -> AsyncIterator[tuple[FakeSource, Cache]]:
    src = FakeSource()
    src.write("ADDED", labelled("a", app="web", tier="fe"))
    src.write("ADDED", labelled("b", app="db"))
    src.write("ADDED", labelled("c", ns="other", app="web"))
    c = Cache(src)
    stop = asyncio.Event()
    task = asyncio.create_task(c.start(stop))
    await asyncio.sleep(0)
    yield src, c
    stop.set()
    await asyncio.wait_for(task, 2)


async def test_reads_return_deep_copies_that_cannot_corrupt_the_cache(cache: Any) -> None:
    _, c = cache
    got = await c.get(CM, "a", "default")
    got["metadata"]["labels"]["app"] = "mutated"
    got["data"]["x"] = "y"
    listed = await c.list(CM)
    listed[0]["metadata"]["name"] = "mutated"
    again = await c.get(CM, "a", "default")
    assert again["metadata"]["labels"]["app"] == "web" and again["data"] == {}
    assert sorted(o["metadata"]["name"] for o in await c.list(CM)) == ["a", "b", "c"]


async def test_get_missing_raises_not_found(cache: Any) -> None:
    _, c = cache
    with pytest.raises(NotFound, match="not found in cache"):
        await c.get(CM, "zzz", "default")


async def test_list_filters_by_namespace_label_selector_and_index(cache: Any) -> None:
    src, c = cache
    names = lambda objs: sorted(o["metadata"]["name"] for o in objs)  # noqa: E731
    assert names(await c.list(CM, "default")) == ["a", "b"]
    assert names(await c.list(CM, label_selector={"app": "web"})) == ["a", "c"]
    assert names(await c.list(CM, label_selector="app in (web,db),tier!=fe")) == ["b", "c"]
    assert names(await c.list(CM, label_selector={"matchExpressions": [
        {"key": "tier", "operator": "Exists"}]})) == ["a"]
    c.index_field(CM, "app", lambda o: [o["metadata"].get("labels", {}).get("app", "")])
    assert names(await c.list(CM, index=("app", "web"))) == ["a", "c"]
    assert names(await c.list(CM, "other", index=("app", "web"))) == ["c"]
    src.write("MODIFIED", labelled("a", app="db"))
    await asyncio.wait_for(_until(lambda: c.get_informer(CM).get("default/a")["metadata"]["labels"] == {"app": "db"}),
                           2)
    assert names(await c.list(CM, index=("app", "web"))) == ["c"]


async def _until(cond: Any) -> None:
    while not cond():
        await asyncio.sleep(0)


async def test_one_shared_informer_per_kind(cache: Any) -> None:
    _, c = cache
    assert c.get_informer(CM) is c.get_informer(CM)
    assert c.get_informer(GVK("", "v1", "Secret")) is not c.get_informer(CM)


async def test_reading_before_start_is_a_clear_error() -> None:
    c = Cache(FakeSource())
    with pytest.raises(CacheNotStartedError, match="api_reader"):
        await c.get(CM, "a", "default")


async def test_default_namespaces_restrict_what_is_cached() -> None:
    src = FakeSource()
    src.write("ADDED", cm("a", "team-a"))
    src.write("ADDED", cm("b", "team-b"))
    src.write("ADDED", cm("x", "elsewhere"))

    scoped_calls: list[str | None] = []
    orig = src.list_all

    async def list_all(gvk: GVK, namespace: str | None = None, **kw: Any) -> dict[str, Any]:
        scoped_calls.append(namespace)
        result = await orig(gvk, namespace, **kw)
        result["items"] = [o for o in result["items"] if namespace is None or o["metadata"]["namespace"] == namespace]
        return result

    src.list_all = list_all  # type: ignore[method-assign]
    c = Cache(src, default_namespaces=["team-a", "team-b"],
              by_object={GVK("", "v1", "Secret"): ObjectSelector(namespaces=["team-a"])})
    stop = asyncio.Event()
    task = asyncio.create_task(c.start(stop))
    await asyncio.sleep(0)
    objs = await c.list(CM)
    assert sorted(o["metadata"]["name"] for o in objs) == ["a", "b"]
    assert sorted(str(n) for n in scoped_calls) == ["team-a", "team-b"]
    assert (await c.get(CM, "b", "team-b"))["metadata"]["name"] == "b"
    with pytest.raises(NotFound):
        await c.get(CM, "x", "elsewhere")
    stop.set()
    await asyncio.wait_for(task, 2)
    with pytest.raises(ValueError, match="default_namespaces"):
        Cache(src, default_namespaces=[])


async def test_cached_client_answers_field_selectors_from_indexes(cache: Any) -> None:
    _, c = cache
    reader = CachedClient(c, api=None)  # type: ignore[arg-type]  # reads only: never touches the API
    c.index_field(CM, "app", lambda o: [o["metadata"].get("labels", {}).get("app", "")])
    c.index_field(CM, "tier", lambda o: [o["metadata"].get("labels", {}).get("tier", "none")])
    names = lambda result: sorted(o["metadata"]["name"] for o in result["items"])  # noqa: E731
    assert names(await reader.list(CM, field_selector="app=web")) == ["a", "c"]
    assert names(await reader.list(CM, field_selector="app=web,metadata.namespace=other")) == ["c"]
    assert names(await reader.list(CM, field_selector="app=web,tier=fe")) == ["a"]
    assert names(await reader.list(CM, field_selector="metadata.name=b")) == ["b"]
    assert (await reader.get(CM, "b", "default"))["metadata"]["labels"] == {"app": "db"}
    with pytest.raises(KeyError, match="add_index"):
        await reader.list(CM, field_selector="spec.nodeName=n1")
    with pytest.raises(ValueError, match="key=value"):
        await reader.list(CM, field_selector="app!=web")
