"""Validating admission webhooks (reference item 10): ValidatingWebhookConfiguration objects are honoured on
every create, update and delete, the way kube-apiserver calls them.

For each webhook whose ``rules`` (operations, apiGroups, apiVersions, resources incl. ``*`` and
``resource/subresource``, scope), ``namespaceSelector`` and ``objectSelector`` match, the server POSTs an
``admission.k8s.io/v1`` AdmissionReview to ``clientConfig.url`` (or to ``clientConfig.service`` through
:attr:`APIServer.service_resolver`), trusting ``clientConfig.caBundle``, within ``timeoutSeconds`` (default 10,
max 30). A denial becomes the real error: code ``response.status.code`` (default 403) and message
``admission webhook "<name>" denied the request: <message>``. A call that fails is an error under
``failurePolicy: Fail`` (the v1 default; 500 ``failed calling webhook``) and is skipped under ``Ignore``.
MutatingWebhookConfiguration webhooks run first (before schema validation), each returning an optional base64 JSON
patch applied to the object; ``reinvocationPolicy`` is not honoured (each runs once).
"""

from __future__ import annotations

import base64
import json
import ssl
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import aiohttp
import jsonpatch

from .errors import APIError
from .resources import ResourceType
from .selectors import labels_match, selector_from_label_selector

if TYPE_CHECKING:
    from .registry import Registry

VWC_KEY = ("admissionregistration.k8s.io", "validatingwebhookconfigurations")
MWC_KEY = ("admissionregistration.k8s.io", "mutatingwebhookconfigurations")
ServiceResolver = Callable[[str, str, int], str | None]
"""``(namespace, service, port) -> base URL`` (e.g. ``https://127.0.0.1:43121``), or None if unknown."""


def _matches_rule(rule: dict[str, Any], rt: ResourceType, operation: str, subresource: str | None) -> bool:
    ops = rule.get("operations") or []
    if "*" not in ops and operation not in ops:
        return False
    groups = rule.get("apiGroups") or []
    if "*" not in groups and rt.group not in groups:
        return False
    versions = rule.get("apiVersions") or []
    if "*" not in versions and rt.version not in versions:
        return False
    wanted = f"{rt.plural}/{subresource}" if subresource else rt.plural
    ok = False
    for res in rule.get("resources") or []:
        if res in ("*/*", wanted) or (res == "*" and not subresource):
            ok = True
        elif res.startswith("*/") and subresource and res[2:] == subresource:
            ok = True
        elif res.endswith("/*") and res[:-2] == rt.plural and subresource:
            ok = True
    if not ok:
        return False
    scope = rule.get("scope", "*")
    return scope == "*" or (scope == "Namespaced") == rt.namespaced


class WebhookCaller:
    """Installed as ``Registry.admission``; ``service_resolver`` maps service references to URLs."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self.service_resolver: ServiceResolver | None = None

    def _namespace_labels(self, namespace: str) -> dict[str, str]:
        ns = self.registry.store.get(("", "namespaces"), "", namespace)
        return dict((ns or {}).get("metadata", {}).get("labels") or {})

    def _url(self, hook: dict[str, Any]) -> str:
        cc = hook.get("clientConfig") or {}
        if cc.get("url"):
            return str(cc["url"])
        svc = cc.get("service") or {}
        port = int(svc.get("port") or 443)
        base = self.service_resolver(svc.get("namespace", ""), svc.get("name", ""), port) \
            if self.service_resolver else None
        if base is None:
            base = f"https://{svc.get('name')}.{svc.get('namespace')}.svc:{port}"
        return base.rstrip("/") + str(svc.get("path") or "/")

    async def __call__(self, operation: str, rt: ResourceType, obj: dict[str, Any] | None,
                       old: dict[str, Any] | None, subresource: str | None, dry_run: bool) -> None:
        """Validating admission: every matching webhook must allow the request."""
        for hook, namespace in self._hooks(VWC_KEY, operation, rt, obj, old, subresource):
            await self._call(hook, operation, rt, obj, old, subresource, dry_run, namespace)

    async def mutate(self, operation: str, rt: ResourceType, obj: dict[str, Any], old: dict[str, Any] | None,
                     subresource: str | None, dry_run: bool) -> dict[str, Any]:
        """Mutating admission (before schema validation, as kube-apiserver orders them): each matching webhook
        may return a base64 JSON patch (``patchType: JSONPatch``) applied to the object in turn."""
        for hook, namespace in self._hooks(MWC_KEY, operation, rt, obj, old, subresource):
            response = await self._call(hook, operation, rt, obj, old, subresource, dry_run, namespace)
            patch = response.get("patch") if response else None
            if patch:
                try:
                    ops = json.loads(base64.b64decode(patch))
                    obj = jsonpatch.JsonPatch(ops).apply(obj)
                except (ValueError, jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as e:
                    raise APIError(500, "InternalError", f'Internal error occurred: admission webhook '
                                   f'"{hook.get("name")}" returned an invalid patch: {e}') from e
        return obj

    def _hooks(self, key: tuple[str, str], operation: str, rt: ResourceType, obj: dict[str, Any] | None,
               old: dict[str, Any] | None, subresource: str | None) -> list[tuple[dict[str, Any], str]]:
        configs = self.registry.store.items(key)
        if not configs or rt.key in (VWC_KEY, MWC_KEY):
            return []
        subject = obj or old or {}
        namespace = subject.get("metadata", {}).get("namespace") or ""
        out = []
        for config in configs:
            for hook in config.get("webhooks") or []:
                if not any(_matches_rule(r, rt, operation, subresource) for r in hook.get("rules") or []):
                    continue
                if rt.namespaced and hook.get("namespaceSelector"):
                    reqs = selector_from_label_selector(hook["namespaceSelector"])
                    if not labels_match(reqs, {"metadata": {"labels": self._namespace_labels(namespace)}}):
                        continue
                if hook.get("objectSelector"):
                    reqs = selector_from_label_selector(hook["objectSelector"])
                    if not any(o is not None and labels_match(reqs, o) for o in (obj, old)):
                        continue
                out.append((hook, namespace))
        return out

    async def _call(self, hook: dict[str, Any], operation: str, rt: ResourceType, obj: dict[str, Any] | None,
                    old: dict[str, Any] | None, subresource: str | None, dry_run: bool, namespace: str
                    ) -> dict[str, Any] | None:
        name = str(hook.get("name", ""))
        uid = str(uuid.uuid4())
        options_kind = {"CREATE": "CreateOptions", "UPDATE": "UpdateOptions", "DELETE": "DeleteOptions"}[operation]
        request: dict[str, Any] = {
            "uid": uid,
            "kind": {"group": rt.group, "version": rt.version, "kind": rt.kind},
            "resource": {"group": rt.group, "version": rt.version, "resource": rt.plural},
            "requestKind": {"group": rt.group, "version": rt.version, "kind": rt.kind},
            "requestResource": {"group": rt.group, "version": rt.version, "resource": rt.plural},
            "name": (obj or old or {}).get("metadata", {}).get("name", ""),
            "operation": operation,
            "userInfo": {"username": "kreconcile-admin", "groups": ["system:masters", "system:authenticated"]},
            "object": obj,
            "oldObject": old,
            "dryRun": dry_run,
            "options": {"kind": options_kind, "apiVersion": "meta.k8s.io/v1"},
        }
        if namespace:
            request["namespace"] = namespace
        if subresource:
            request["subResource"] = subresource
            request["requestSubResource"] = subresource
        review = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request}
        url = self._url(hook)
        timeout = min(30, int(hook.get("timeoutSeconds") or 10))
        ca = (hook.get("clientConfig") or {}).get("caBundle")
        ctx: ssl.SSLContext | bool = False
        try:
            if url.startswith("https://"):
                ctx = ssl.create_default_context(cadata=base64.b64decode(ca).decode()) if ca else \
                    ssl.create_default_context()
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session, \
                    session.post(url, json=review, ssl=ctx) as resp:
                if resp.status != 200:
                    raise ValueError(f"webhook answered HTTP {resp.status}")
                answer = json.loads(await resp.read())
            response = answer["response"]
            if response.get("uid") != uid:
                raise ValueError(f"expected response.uid={uid!r}, got {response.get('uid')!r}")
        except (TimeoutError, aiohttp.ClientError, ValueError, KeyError, TypeError, ssl.SSLError) as e:
            if hook.get("failurePolicy", "Fail") == "Ignore":
                return None
            raise APIError(500, "InternalError", f'Internal error occurred: failed calling webhook "{name}": '
                           f'failed to call webhook: Post "{url}": {e}') from e
        if response.get("allowed"):
            return dict(response)
        status = response.get("status") or {}
        message = f'admission webhook "{name}" denied the request'
        if status.get("message"):
            message += f": {status['message']}"
        raise APIError(int(status.get("code") or 403), str(status.get("reason") or ""), message,
                       status.get("details"))
