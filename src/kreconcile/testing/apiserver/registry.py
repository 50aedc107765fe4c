"""The REST semantics of every resource: create, get, list, update, patch, delete (reference items 2-8).

:class:`Registry` sits between the HTTP handlers and the :class:`~.storage.Store`. Each write builds a fresh
object from the stored one, applies the server's rules (metadata, status subresource, generation, finalizers,
optimistic concurrency, defaults, CRD schema, managedFields, admission webhooks) and commits it. Writes that
await an admission webhook re-check the stored version before committing and retry (patches) or conflict
(updates carrying a resourceVersion), like the real server's GuaranteedUpdate.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Awaitable, Callable
from typing import Any

from kreconcile.clock import Clock

from . import builtins, objects
from .apply import server_side_apply, track_update
from .builtin_schema import prune_builtin
from .errors import APIError, bad_request, cause, conflict, expired, forbidden, invalid, not_found
from .patch import apply_patch
from .resources import ResourceType, builtin_types
from .schema import report_unknown_fields, validate_custom_resource
from .selectors import make_filter, parse_field_selector, parse_label_selector
from .storage import Store

AdmissionHook = Callable[..., Awaitable[None]]
MutationHook = Callable[..., Awaitable[dict[str, Any]]]

# Resources whose default deletion propagation is orphan (batch/v1 Jobs and core/v1 ReplicationControllers keep
# their pods unless the client asks otherwise: DefaultGarbageCollectionPolicy in their registry strategies).
_ORPHAN_BY_DEFAULT = {("batch", "jobs"), ("", "replicationcontrollers")}


class Registry:
    """Resource types plus the rules applied on every read and write. ``clock.wall()`` stamps timestamps."""

    def __init__(self, store: Store, clock: Clock) -> None:
        self.store = store
        self.clock = clock
        self.types: dict[tuple[str, str, str], ResourceType] = {}
        self.admission: AdmissionHook | None = None
        self.mutation: MutationHook | None = None
        self.on_crd_change: Callable[[dict[str, Any] | None, dict[str, Any] | None], None] | None = None
        for rt in builtin_types():
            self.register(rt)

    # ---- types -------------------------------------------------------------------------------------------
    def register(self, rt: ResourceType) -> None:
        """Serve ``rt`` at ``/apis/{group}/{version}/{plural}``."""
        self.types[(rt.group, rt.version, rt.plural)] = rt

    def unregister(self, group: str, plural: str) -> None:
        """Stop serving every version of ``group``/``plural``."""
        for k in [k for k in self.types if k[0] == group and k[2] == plural]:
            del self.types[k]

    def lookup(self, group: str, version: str, plural: str) -> ResourceType:
        """The served type, or 404 NotFound (``the server could not find the requested resource``)."""
        rt = self.types.get((group, version, plural))
        if rt is None:
            raise APIError(404, "NotFound", "the server could not find the requested resource",
                           {"group": group, "kind": plural})
        return rt

    def find_kind(self, group: str, kind: str) -> ResourceType | None:
        """A served type of ``kind`` in ``group`` (any version), for owner and webhook lookups."""
        for rt in self.types.values():
            if rt.group == group and rt.kind == kind:
                return rt
        return None

    def group_versions(self) -> dict[tuple[str, str], list[ResourceType]]:
        """Served types grouped by (group, version)."""
        out: dict[tuple[str, str], list[ResourceType]] = {}
        for rt in self.types.values():
            out.setdefault((rt.group, rt.version), []).append(rt)
        return out

    # ---- reads -------------------------------------------------------------------------------------------
    @staticmethod
    def present(rt: ResourceType, obj: dict[str, Any]) -> dict[str, Any]:
        """The stored object as served by ``rt``'s version (apiVersion rewritten; no schema conversion)."""
        if obj.get("apiVersion") == rt.api_version:
            return obj
        out = dict(obj)
        out["apiVersion"] = rt.api_version
        return out

    def get(self, rt: ResourceType, namespace: str, name: str) -> dict[str, Any]:
        """The stored object, or 404 NotFound."""
        obj = self.store.get(rt.key, namespace if rt.namespaced else "", name)
        if obj is None:
            raise not_found(rt.plural, rt.group, name)
        return self.present(rt, obj)

    def list_objects(self, rt: ResourceType, namespace: str | None, label_selector: str | None = None,
             field_selector: str | None = None, limit: int | None = None, continue_: str | None = None
             ) -> dict[str, Any]:
        """A ``{Kind}List`` with the collection resourceVersion; ``limit``/``continue`` paginate by
        (namespace, name). Raises 400 for bad selectors, 410 Expired for a continue token from a version the
        watch log no longer holds."""
        labels = parse_label_selector(label_selector)
        fields = parse_field_selector(field_selector, rt.key)
        pred = make_filter(labels, fields)
        list_rv = self.store.rv
        start: tuple[str, str] | None = None
        if continue_:
            try:
                token = json.loads(base64.urlsafe_b64decode(continue_.encode()))
                list_rv, start = int(token["rv"]), (str(token["start"][0]), str(token["start"][1]))
            except (ValueError, KeyError, TypeError, IndexError) as e:
                raise bad_request("continue key is not valid: the continue parameter is malformed") from e
            if self.store.too_old(rt.key, list_rv) is not None:
                raise expired("The provided continue parameter is too old to display a consistent list result. "
                              "You can start a new list without the continue parameter.")
        items: list[dict[str, Any]] = []
        remaining = 0
        next_start: tuple[str, str] | None = None
        for obj in self.store.items(rt.key, namespace if rt.namespaced else None):
            meta = obj["metadata"]
            pos = (meta.get("namespace") or "", meta["name"])
            if start is not None and pos <= start:
                continue
            if not pred(obj):
                continue
            if limit and len(items) >= limit:
                remaining += 1
                continue
            items.append(self.present(rt, obj))
            next_start = pos
        metadata: dict[str, Any] = {"resourceVersion": str(list_rv)}
        if limit and remaining and next_start is not None:
            token = {"v": "meta.k8s.io/v1", "rv": list_rv, "start": list(next_start)}
            metadata["continue"] = base64.urlsafe_b64encode(json.dumps(token).encode()).decode()
            if not labels and not fields:
                metadata["remainingItemCount"] = remaining
        return {"kind": rt.list_kind, "apiVersion": rt.api_version, "metadata": metadata, "items": items}

    # ---- writes ------------------------------------------------------------------------------------------
    def _check_namespace(self, rt: ResourceType, namespace: str, name: str) -> None:
        if not rt.namespaced:
            return
        ns = self.store.get(("", "namespaces"), "", namespace)
        if ns is None:
            raise not_found("namespaces", "", namespace)
        if ns["metadata"].get("deletionTimestamp"):
            err = forbidden(rt.plural, rt.group, name, f"unable to create new content in namespace {namespace} "
                            "because it is being terminated")
            err.details = {**(err.details or {}), "causes": [{
                "reason": "NamespaceTerminating", "message": f"namespace {namespace} is being terminated",
                "field": "metadata.namespace"}]}
            raise err

    async def _admit(self, operation: str, rt: ResourceType, obj: dict[str, Any] | None,
                     old: dict[str, Any] | None, subresource: str | None, dry_run: bool) -> None:
        if self.admission is not None:
            await self.admission(operation, rt, obj, old, subresource, dry_run)

    def _validate(self, rt: ResourceType, obj: dict[str, Any], old: dict[str, Any] | None,
                  field_validation: str | None, warnings: list[str] | None) -> None:
        if rt.crd is not None:
            objects.validate_metadata(rt, obj)
            validate_custom_resource(rt, obj, field_validation, warnings)
        else:
            report_unknown_fields(prune_builtin(rt, obj), field_validation, warnings)
            objects.validate_metadata(rt, obj)
            builtins.validate(rt, obj, old)

    async def create(self, rt: ResourceType, namespace: str, body: Any, *, manager: str = "unknown",
                     dry_run: bool = False, field_validation: str | None = None,
                     warnings: list[str] | None = None,
                     managed_fields: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        """Create an object (reference item 2): 409 AlreadyExists, 404 for a missing namespace, 422 Invalid.

        ``managed_fields`` replaces the Update bookkeeping (server-side apply passes its Apply entry)."""
        obj = objects.check_identity(rt, objects.clone(body), namespace, None)
        meta = obj["metadata"]
        if meta.get("resourceVersion") and managed_fields is None:
            # the real etcd3 store's ErrResourceVersionSetOnCreate, answered as a reason-less 500
            raise APIError(500, "", "resourceVersion should not be set on objects to be created")
        if not meta.get("name") and meta.get("generateName"):
            for _ in range(8):
                meta["name"] = objects.generate_name(meta["generateName"])
                if self.store.get(rt.key, namespace if rt.namespaced else "", meta["name"]) is None:
                    break
        objects.init_metadata(rt, obj, self.clock.wall())
        objects.apply_status_rules(rt, None, obj, None)
        builtins.default(rt, obj, None, self)
        if self.mutation is not None:
            obj = await self.mutation("CREATE", rt, obj, None, None, dry_run)
            meta = obj["metadata"]
        self._validate(rt, obj, None, field_validation, warnings)
        name = meta["name"]
        self._check_namespace(rt, namespace, name)
        if managed_fields is not None:
            meta["managedFields"] = managed_fields
        else:
            track_update(rt, None, obj, manager, None, self.clock.wall())
        await self._admit("CREATE", rt, obj, None, None, dry_run)
        key_ns = namespace if rt.namespaced else ""
        if self.store.get(rt.key, key_ns, name) is not None:
            raise objects_already_exists(rt, name)
        if dry_run:
            return self.present(rt, obj)
        builtins.before_commit(rt, None, obj, self)
        stored = self.store.commit(rt.key, obj, None)
        builtins.after_commit(rt, None, stored, self)
        return self.present(rt, self.store.get(rt.key, key_ns, name) or stored)

    async def update(self, rt: ResourceType, namespace: str, name: str, body: Any, *,
                     subresource: str | None = None, manager: str = "unknown", dry_run: bool = False,
                     field_validation: str | None = None, warnings: list[str] | None = None) -> dict[str, Any]:
        """PUT (reference items 3, 5): 404 if absent, 409 Conflict on a stale resourceVersion."""
        new = objects.check_identity(rt, objects.clone(body), namespace, name)
        new["metadata"].setdefault("name", name)
        wanted = new["metadata"].get("resourceVersion")
        if not wanted and (rt.crd is not None or rt.group == "apiextensions.k8s.io"):
            # custom resources and CRDs do not allow unconditional updates (AllowUnconditionalUpdate false)
            raise invalid(rt.kind if rt.crd is None else rt.plural, rt.group, name, [cause(
                "metadata.resourceVersion", "Invalid value: 0x0: must be specified for an update")])
        return await self._write(rt, namespace, name, lambda _cur: new, wanted, subresource=subresource,
                                 manager=manager, dry_run=dry_run, field_validation=field_validation,
                                 warnings=warnings, retry=not wanted)

    async def patch(self, rt: ResourceType, namespace: str, name: str, content_type: str, body: bytes, *,
                    subresource: str | None = None, manager: str | None = None, force: bool = False,
                    dry_run: bool = False, field_validation: str | None = None,
                    warnings: list[str] | None = None) -> tuple[dict[str, Any], bool]:
        """PATCH by Content-Type (reference item 4). Returns (object, created) where created is True when a
        server-side apply created the object."""
        if content_type == "application/apply-patch+yaml":
            if not manager:
                raise bad_request("fieldManager is required for apply requests (set ?fieldManager=<name>)")
            return await server_side_apply(self, rt, namespace, name, body, subresource=subresource,
                                           manager=manager, force=force, dry_run=dry_run,
                                           field_validation=field_validation, warnings=warnings)
        holder: dict[str, Any] = {}

        def build(current: dict[str, Any]) -> dict[str, Any]:
            patched = apply_patch(rt, current, content_type, body)
            holder["rv"] = (patched.get("metadata") or {}).get("resourceVersion")
            out = objects.check_identity(rt, patched, namespace, name)
            return out

        obj = await self._write(rt, namespace, name, build, None, subresource=subresource,
                                manager=manager or "unknown", dry_run=dry_run, field_validation=field_validation,
                                warnings=warnings, retry=True, patch_rv=holder)
        return obj, False

    async def _write(self, rt: ResourceType, namespace: str, name: str,
                     build: Callable[[dict[str, Any]], dict[str, Any]], wanted: str | None, *,
                     subresource: str | None, manager: str, dry_run: bool, field_validation: str | None,
                     warnings: list[str] | None, retry: bool, patch_rv: dict[str, Any] | None = None,
                     operation: str = "Update") -> dict[str, Any]:
        key_ns = namespace if rt.namespaced else ""
        for _attempt in range(16):
            current = self.store.get(rt.key, key_ns, name)
            if current is None:
                raise not_found(rt.plural, rt.group, name)
            new = build(objects.clone(current))
            if patch_rv is not None:
                wanted = patch_rv.get("rv")
            objects.precondition_rv(rt, current, wanted)
            new["metadata"]["name"] = name
            new = objects.apply_status_rules(rt, current, new, subresource)
            objects.carry_immutable(current, new)
            builtins.default(rt, new, current, self)
            if self.mutation is not None:
                new = await self.mutation("UPDATE", rt, new, current, subresource, dry_run)
                if self.store.get(rt.key, key_ns, name) is not current and retry and not wanted:
                    continue
            objects.check_finalizers_on_deleting(rt, current, new)
            self._validate(rt, new, current, field_validation, warnings)
            objects.bump_generation(rt, current, new)
            track_update(rt, current, new, manager, subresource, self.clock.wall(), operation=operation)
            if objects.same_content(current, new):
                return self.present(rt, current)
            await self._admit("UPDATE", rt, new, current, subresource, dry_run)
            latest = self.store.get(rt.key, key_ns, name)
            if latest is not current:
                if latest is None:
                    raise not_found(rt.plural, rt.group, name)
                if retry and not wanted:
                    continue
                raise conflict(rt.plural, rt.group, name, "the object has been modified; please apply your "
                               "changes to the latest version and try again")
            if dry_run:
                return self.present(rt, new)
            return self.present(rt, self.commit_update(rt, current, new))
        raise conflict(rt.plural, rt.group, name, "too many concurrent writers; retry")

    def commit_update(self, rt: ResourceType, current: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
        """Commit an update; an object being deleted whose last finalizer went away is removed instead."""
        builtins.before_commit(rt, current, new, self)
        meta = new["metadata"]
        if meta.get("deletionTimestamp") and not meta.get("finalizers") and not builtins.blocks_removal(rt, new):
            out = self.store.remove(rt.key, new)
        else:
            out = self.store.commit(rt.key, new, current)
        builtins.after_commit(rt, current, out, self)
        return out

    async def delete(self, rt: ResourceType, namespace: str, name: str, options: dict[str, Any], *,
                     dry_run: bool = False) -> dict[str, Any]:
        """DELETE (reference item 6): preconditions (409), finalizers → deletionTimestamp, propagation policy
        (Background default; Orphan adds the ``orphan`` finalizer, Foreground ``foregroundDeletion``)."""
        key_ns = namespace if rt.namespaced else ""
        current = self.store.get(rt.key, key_ns, name)
        if current is None:
            raise not_found(rt.plural, rt.group, name)
        pre = options.get("preconditions") or {}
        meta = current["metadata"]
        if pre.get("uid") and pre["uid"] != meta.get("uid"):
            raise conflict(rt.plural, rt.group, name, f"Precondition failed: UID in precondition: {pre['uid']}, "
                           f"UID in object meta: {meta.get('uid')}")
        if pre.get("resourceVersion") and pre["resourceVersion"] != meta.get("resourceVersion"):
            raise conflict(rt.plural, rt.group, name, f"Precondition failed: ResourceVersion in precondition: "
                           f"{pre['resourceVersion']}, ResourceVersion in object meta: {meta.get('resourceVersion')}")
        policy = options.get("propagationPolicy")
        if policy is None and options.get("orphanDependents") is not None:
            policy = "Orphan" if options["orphanDependents"] else "Background"
        if policy is None:
            policy = "Orphan" if rt.key in _ORPHAN_BY_DEFAULT else "Background"
        if policy not in ("Orphan", "Foreground", "Background"):
            raise APIError(422, "Invalid", f'DeleteOptions.meta.k8s.io "" is invalid: propagationPolicy: '
                           f'Unsupported value: "{policy}": supported values: "Foreground", "Background", "Orphan"',
                           {"causes": [{"reason": "FieldValueNotSupported", "field": "propagationPolicy",
                                        "message": f'Unsupported value: "{policy}"'}]})
        await self._admit("DELETE", rt, None, current, None, dry_run)
        if dry_run:
            return self.present(rt, current)
        current = self.store.get(rt.key, key_ns, name)
        if current is None:
            raise not_found(rt.plural, rt.group, name)
        new = objects.clone(current)
        nmeta = new["metadata"]
        finalizers = list(nmeta.get("finalizers") or [])
        deleting = bool(nmeta.get("deletionTimestamp"))
        if policy == "Orphan" and "orphan" not in finalizers and not deleting:
            finalizers = [f for f in finalizers if f != "foregroundDeletion"] + ["orphan"]
        elif policy == "Foreground" and "foregroundDeletion" not in finalizers and not deleting:
            finalizers = [f for f in finalizers if f != "orphan"] + ["foregroundDeletion"]
        grace = builtins.grace_period(rt, new, options.get("gracePeriodSeconds"))
        if not finalizers and grace == 0 and not builtins.blocks_removal(rt, new):
            out = self.store.remove(rt.key, new)
            builtins.after_commit(rt, current, out, self)
            return self.present(rt, out)
        if finalizers:
            nmeta["finalizers"] = finalizers
        now = self.clock.wall()
        if not deleting or (grace < int(nmeta.get("deletionGracePeriodSeconds") or 0)):
            nmeta["deletionTimestamp"] = objects.rfc3339(now + grace)
            nmeta["deletionGracePeriodSeconds"] = grace
            if rt.tracks_generation and not deleting:
                nmeta["generation"] = int(nmeta.get("generation") or 1) + 1
        if deleting and grace == 0 and not finalizers and rt.key == ("", "pods"):
            out = self.store.remove(rt.key, new)
            builtins.after_commit(rt, current, out, self)
            return self.present(rt, out)
        builtins.on_delete_requested(rt, new)
        if objects.same_content(current, new):
            return self.present(rt, current)
        out = self.store.commit(rt.key, new, current)
        builtins.after_commit(rt, current, out, self)
        return self.present(rt, out)

    def system_update(self, rt: ResourceType, current: dict[str, Any], mutate: Callable[[dict[str, Any]], None]
                      ) -> dict[str, Any]:
        """An in-server controller's write (GC, namespace controller, CRD status): mutate a copy and commit."""
        new = objects.clone(current)
        mutate(new)
        if objects.same_content(current, new):
            return current
        return self.commit_update(rt, current, new)

    def system_delete(self, rt: ResourceType, current: dict[str, Any], policy: str = "Background") -> None:
        """An in-server controller's delete (GC cascade, namespace cleanup), honouring finalizers."""
        new = objects.clone(current)
        meta = new["metadata"]
        finalizers = list(meta.get("finalizers") or [])
        if policy == "Foreground" and "foregroundDeletion" not in finalizers and not meta.get("deletionTimestamp"):
            finalizers.append("foregroundDeletion")
        if not finalizers and not builtins.blocks_removal(rt, new):
            out = self.store.remove(rt.key, new)
            builtins.after_commit(rt, current, out, self)
            return
        if meta.get("deletionTimestamp"):
            return
        meta["finalizers"] = finalizers
        meta["deletionTimestamp"] = objects.rfc3339(self.clock.wall())
        meta["deletionGracePeriodSeconds"] = 0
        if rt.tracks_generation:
            meta["generation"] = int(meta.get("generation") or 1) + 1
        builtins.on_delete_requested(rt, new)
        out = self.store.commit(rt.key, new, current)
        builtins.after_commit(rt, current, out, self)

    def type_for_key(self, key: tuple[str, str]) -> ResourceType | None:
        """Any served version of the resource stored under ``key``."""
        for rt in self.types.values():
            if rt.key == key:
                return rt
        return None


def objects_already_exists(rt: ResourceType, name: str) -> APIError:
    """409 AlreadyExists for ``rt``/``name``."""
    from .errors import already_exists

    return already_exists(rt.plural, rt.group, name)
