"""deep_copy, merge_patch_diff, create_or_update and create_or_patch (against an in-memory client)."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kreconcile.errors import Conflict, NotFound
from kreconcile.gvk import GVK
from kreconcile.util import OperationResult, create_or_patch, create_or_update, deep_copy, merge_patch_diff


def apply_merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 reference algorithm."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            result.pop(k, None)
        else:
            result[k] = apply_merge_patch(result.get(k), v)
    return result


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=3),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=2), children, max_size=3),
    max_leaves=10,
)
json_docs = st.dictionaries(st.text(max_size=2), json_values.filter(lambda v: v is not None), max_size=4)


def _no_nulls(v: Any) -> bool:
    if v is None:
        return False
    if isinstance(v, dict):
        return all(_no_nulls(x) for x in v.values())
    return True


@given(json_docs, json_docs)
def test_merge_patch_diff_applied_to_before_gives_after(before: dict[str, Any], after: dict[str, Any]) -> None:
    if not (_no_nulls(before) and _no_nulls(after)):
        return  # merge patch cannot express explicit nulls inside objects (RFC 7386 limitation)
    patch = merge_patch_diff(before, after)
    assert apply_merge_patch(before, patch) == after
    assert (patch == {}) == (before == after)


def test_deep_copy_is_independent() -> None:
    obj = {"a": [{"b": 1}], "c": {"d": "e"}}
    cp = deep_copy(obj)
    cp["a"][0]["b"] = 2
    cp["c"]["d"] = "x"
    assert obj == {"a": [{"b": 1}], "c": {"d": "e"}}


class MemClient:
    def __init__(self) -> None:
        self.objs: dict[tuple[str, str], dict[str, Any]] = {}
        self.writes: list[tuple[str, Any]] = []
        self.rv = 0

    def _store(self, obj: dict[str, Any]) -> dict[str, Any]:
        self.rv += 1
        obj = copy.deepcopy(obj)
        obj["metadata"]["resourceVersion"] = str(self.rv)
        self.objs[(obj["metadata"].get("namespace"), obj["metadata"]["name"])] = obj
        return copy.deepcopy(obj)

    async def get(self, gvk: GVK, name: str, namespace: str | None = None) -> dict[str, Any]:
        if (namespace, name) not in self.objs:
            raise NotFound("nope")
        return copy.deepcopy(self.objs[(namespace, name)])

    async def create(self, obj: dict[str, Any]) -> dict[str, Any]:
        self.writes.append(("create", None))
        return self._store(obj)

    async def update(self, obj: dict[str, Any]) -> dict[str, Any]:
        self.writes.append(("update", None))
        cur = self.objs[(obj["metadata"].get("namespace"), obj["metadata"]["name"])]
        if cur["metadata"]["resourceVersion"] != obj["metadata"]["resourceVersion"]:
            raise Conflict("stale")
        return self._store(obj)

    async def patch(self, obj: dict[str, Any], patch: dict[str, Any], patch_type: str = "merge",
                    subresource: str | None = None) -> dict[str, Any]:
        self.writes.append(("patch" if subresource is None else f"patch/{subresource}", patch))
        cur = self.objs[(obj["metadata"].get("namespace"), obj["metadata"]["name"])]
        return self._store(apply_merge_patch(cur, patch))

    def status(self) -> Any:
        client = self

        class W:
            async def patch(self, obj: dict[str, Any], patch: dict[str, Any], patch_type: str = "merge") -> Any:
                return await client.patch(obj, patch, patch_type, subresource="status")

        return W()


def template() -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg", "namespace": "ns"}}


async def test_create_or_update_creates_then_updates_only_on_change() -> None:
    c = MemClient()

    def want(value: str) -> Any:
        def mutate(obj: dict[str, Any]) -> None:
            obj.setdefault("data", {})["k"] = value
        return mutate

    obj = template()
    assert await create_or_update(c, obj, want("1")) == "created"  # type: ignore[arg-type]
    assert obj["metadata"]["resourceVersion"] == "1"
    assert await create_or_update(c, template(), want("1")) == OperationResult.UNCHANGED  # type: ignore[arg-type]
    assert await create_or_update(c, template(), want("2")) == "updated"  # type: ignore[arg-type]
    assert [w for w, _ in c.writes] == ["create", "update"]
    assert c.objs[("ns", "cfg")]["data"] == {"k": "2"}


async def test_create_or_update_rejects_renaming_mutations() -> None:
    def rename(obj: dict[str, Any]) -> None:
        obj["metadata"]["name"] = "other"

    with pytest.raises(ValueError, match="must only change the desired fields"):
        await create_or_update(MemClient(), template(), rename)  # type: ignore[arg-type]


async def test_create_or_patch_sends_minimal_patches_and_status_separately() -> None:
    c = MemClient()
    await c.create({**template(), "data": {"a": "1", "b": "2"}, "status": {"phase": "old"}})
    c.writes.clear()

    async def mutate(obj: dict[str, Any]) -> None:
        obj["data"]["b"] = "3"
        obj["status"]["phase"] = "new"

    assert await create_or_patch(c, template(), mutate) == "updatedStatus"  # type: ignore[arg-type]
    assert c.writes == [("patch", {"data": {"b": "3"}}), ("patch/status", {"status": {"phase": "new"}})]

    def status_only(obj: dict[str, Any]) -> None:
        obj["status"]["phase"] = "newer"

    assert await create_or_patch(c, template(), status_only) == "updatedStatusOnly"  # type: ignore[arg-type]
    assert await create_or_patch(c, template(), lambda o: None) == "unchanged"  # type: ignore[arg-type]
    assert len(c.writes) == 3
