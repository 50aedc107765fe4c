"""In-server controllers: the ownerReference garbage collector, the namespace controller and CRD cleanup.

They run inside the emulator (as kube-controller-manager's garbagecollector and namespace controllers and the
apiextensions finalizer do beside a real server), asynchronously after the write that triggers them, so clients
observe cascades through watches or by polling, as on a real cluster (reference item 6):

- Background: a dependent whose owners (by ``ownerReferences[].uid``) are all gone is deleted; dangling
  references to missing owners are removed when other owners remain.
- Foreground: an owner deleting with the ``foregroundDeletion`` finalizer has its dependents deleted (in
  foreground too); the finalizer is removed once no dependent with ``blockOwnerDeletion: true`` remains, and the
  owner disappears with its last finalizer.
- Orphan: an owner deleting with the ``orphan`` finalizer has its reference removed from every dependent, then
  the finalizer is removed.
- A deleting namespace has all its content deleted; then its ``spec.finalizers`` (``kubernetes``) are cleared
  and it is removed.
- A deleting CRD has all its custom resources deleted, then loses ``customresourcecleanup.apiextensions.k8s.io``.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Any

import structlog

from .crd import CLEANUP_FINALIZER
from .storage import Event, Key

if TYPE_CHECKING:
    from .registry import Registry

log = structlog.get_logger("kreconcile.testing.apiserver.gc")
_NS_KEY: Key = ("", "namespaces")
_CRD_KEY: Key = ("apiextensions.k8s.io", "customresourcedefinitions")
Ref = tuple[Key, str, str]


class GarbageCollector:
    """Reacts to store events; :meth:`run` processes the dirty set until cancelled."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self.store = registry.store
        self.dependents: dict[str, set[Ref]] = {}
        self.dirty: set[Ref] = set()
        self.wake = asyncio.Event()
        self.store.listeners.append(self.on_event)
        for key in self.store.keys():
            for obj in self.store.items(key):
                self._index(key, obj, None)
                self._mark(key, obj)

    def _ref(self, key: Key, obj: dict[str, Any]) -> Ref:
        meta = obj["metadata"]
        return (key, meta.get("namespace") or "", meta["name"])

    def _index(self, key: Key, obj: dict[str, Any] | None, old: dict[str, Any] | None) -> None:
        for source, add in ((old, False), (obj, True)):
            if source is None:
                continue
            ref = self._ref(key, source)
            for owner in source["metadata"].get("ownerReferences") or []:
                uid = owner.get("uid")
                if not uid:
                    continue
                if add:
                    self.dependents.setdefault(uid, set()).add(ref)
                else:
                    deps = self.dependents.get(uid)
                    if deps is not None:
                        deps.discard(ref)
                        if not deps:
                            del self.dependents[uid]

    def _mark(self, key: Key, obj: dict[str, Any]) -> None:
        meta = obj["metadata"]
        if meta.get("ownerReferences") or meta.get("deletionTimestamp"):
            self.dirty.add(self._ref(key, obj))
            self.wake.set()

    def on_event(self, event: Event) -> None:
        """Store listener: keep the owner→dependents index and mark objects to look at."""
        if event.type == "DELETED":
            self._index(event.key, None, event.old or event.obj)
            uid = event.obj["metadata"].get("uid", "")
            for ref in self.dependents.get(uid, set()):
                self.dirty.add(ref)
            # an owner waiting in foreground for this dependent
            for owner in event.obj["metadata"].get("ownerReferences") or []:
                loc = self.store.by_uid.get(owner.get("uid", ""))
                if loc is not None:
                    self.dirty.add(loc)
            ns = event.obj["metadata"].get("namespace")
            if ns:
                self.dirty.add((_NS_KEY, "", ns))
            if event.key != _CRD_KEY:
                for crd in self.store.items(_CRD_KEY):
                    spec = crd.get("spec") or {}
                    if (spec.get("group"), (spec.get("names") or {}).get("plural")) == event.key:
                        self.dirty.add((_CRD_KEY, "", crd["metadata"]["name"]))
            self.wake.set()
            return
        self._index(event.key, event.obj, event.old)
        self._mark(event.key, event.obj)

    async def run(self) -> None:
        """Process dirty objects until cancelled."""
        while True:
            await self.wake.wait()
            self.wake.clear()
            while self.dirty:
                batch = sorted(self.dirty)
                self.dirty.clear()
                for ref in batch:
                    try:
                        self.process(ref)
                    except Exception as e:  # one bad object must not stop collection for the others
                        log.warning("gc_process_failed", ref=str(ref), error=str(e))
                await asyncio.sleep(0)

    def settle(self) -> None:
        """Process everything pending now, synchronously (for embedders that want a settled state at once)."""
        for _ in range(100):
            if not self.dirty:
                return
            batch = sorted(self.dirty)
            self.dirty.clear()
            for ref in batch:
                with contextlib.suppress(Exception):
                    self.process(ref)

    def process(self, ref: Ref) -> None:
        """Drive one object: its own deletion finalizers, then its owners' existence."""
        key, ns, name = ref
        obj = self.store.get(key, ns, name)
        if obj is None:
            return
        rt = self.registry.type_for_key(key)
        if rt is None:
            return
        meta = obj["metadata"]
        uid = meta.get("uid", "")
        finalizers = meta.get("finalizers") or []
        if meta.get("deletionTimestamp"):
            if key == _NS_KEY:
                self._namespace(obj)
                return
            if key == _CRD_KEY and CLEANUP_FINALIZER in finalizers:
                self._crd_cleanup(obj)
                return
            if "orphan" in finalizers:
                for orphan_ref in list(self.dependents.get(uid, set())):
                    self._drop_owner(orphan_ref, uid)
                self.registry.system_update(rt, obj, lambda o: _remove_finalizer(o, "orphan"))
                return
            if "foregroundDeletion" in finalizers:
                blocking = False
                for dep_ref in list(self.dependents.get(uid, set())):
                    dep = self.store.get(dep_ref[0], dep_ref[1], dep_ref[2])
                    if dep is None:
                        continue
                    dep_rt = self.registry.type_for_key(dep_ref[0])
                    owner_ref: dict[str, Any] = next(
                        (o for o in dep["metadata"].get("ownerReferences") or [] if o.get("uid") == uid), {})
                    if owner_ref.get("blockOwnerDeletion"):
                        blocking = True
                    if dep_rt is not None and not dep["metadata"].get("deletionTimestamp"):
                        self.registry.system_delete(dep_rt, dep, "Foreground")
                if not blocking:
                    current = self.store.get(key, ns, name)
                    if current is not None:
                        self.registry.system_update(rt, current, lambda o: _remove_finalizer(o,
                                                                                               "foregroundDeletion"))
                return
        owners = meta.get("ownerReferences") or []
        if not owners:
            return
        missing = [o for o in owners if o.get("uid") and self.store.by_uid.get(o["uid"]) is None]
        if not missing:
            return
        if len(missing) == len(owners):
            if not meta.get("deletionTimestamp"):
                self.registry.system_delete(rt, obj, "Background")
            return
        gone = {o["uid"] for o in missing}
        self.registry.system_update(rt, obj, lambda o: _set_owners(o, [r for r in owners if r.get("uid")
                                                                        not in gone]))

    def _drop_owner(self, ref: Ref, uid: str) -> None:
        obj = self.store.get(ref[0], ref[1], ref[2])
        rt = self.registry.type_for_key(ref[0])
        if obj is None or rt is None:
            return
        owners = [o for o in obj["metadata"].get("ownerReferences") or [] if o.get("uid") != uid]
        self.registry.system_update(rt, obj, lambda o: _set_owners(o, owners))

    def _namespace(self, ns_obj: dict[str, Any]) -> None:
        name = ns_obj["metadata"]["name"]
        remaining = 0
        for key in list(self.store.keys()):
            if key == _NS_KEY:
                continue
            rt = self.registry.type_for_key(key)
            for obj in self.store.items(key, name):
                remaining += 1
                if rt is None:
                    self.store.remove(key, dict(obj, metadata=dict(obj["metadata"])))
                elif not obj["metadata"].get("deletionTimestamp"):
                    self.registry.system_delete(rt, obj, "Background")
        if remaining:
            still = sum(len(self.store.items(k, name)) for k in self.store.keys() if k != _NS_KEY)
            if still:
                return
        current = self.store.get(_NS_KEY, "", name)
        ns_rt = self.registry.type_for_key(_NS_KEY)
        if current is not None and ns_rt is not None:
            self.registry.system_update(ns_rt, current, lambda o: o.setdefault("spec", {}).__setitem__(
                "finalizers", []))

    def _crd_cleanup(self, crd: dict[str, Any]) -> None:
        spec = crd.get("spec") or {}
        key = (spec.get("group", ""), (spec.get("names") or {}).get("plural", ""))
        rt = self.registry.type_for_key(key)
        items = self.store.items(key)
        for obj in items:
            if rt is None:
                self.store.remove(key, dict(obj, metadata=dict(obj["metadata"])))
            elif not obj["metadata"].get("deletionTimestamp"):
                self.registry.system_delete(rt, obj, "Background")
        if self.store.items(key):
            return
        crd_rt = self.registry.type_for_key(_CRD_KEY)
        current = self.store.get(_CRD_KEY, "", crd["metadata"]["name"])
        if crd_rt is not None and current is not None:
            self.registry.system_update(crd_rt, current, lambda o: _remove_finalizer(o, CLEANUP_FINALIZER))


def _remove_finalizer(obj: dict[str, Any], finalizer: str) -> None:
    meta = obj["metadata"]
    meta["finalizers"] = [f for f in meta.get("finalizers") or [] if f != finalizer]
    if not meta["finalizers"]:
        del meta["finalizers"]


def _set_owners(obj: dict[str, Any], owners: list[dict[str, Any]]) -> None:
    if owners:
        obj["metadata"]["ownerReferences"] = owners
    else:
        obj["metadata"].pop("ownerReferences", None)
