"""A container's environment as the kubelet builds it: ``envFrom``, ``env`` with ``valueFrom``, ``$(VAR)`` expansion.

Rules (``pkg/kubelet/kubelet_pods.go`` ``makeEnvironmentVariables`` and ``third_party/forked/golang/expansion``):
``envFrom`` sources first (with ``prefix``; keys that are not valid variable names are skipped), then ``env`` in
order, each value expanded against the variables defined before it; ``$(NAME)`` expands, ``$$`` is a literal
``$``, an undefined ``$(NAME)`` is left as is. ``command`` and ``args`` are expanded against the final
environment. A missing non-optional Secret/ConfigMap or key → :class:`ContainerConfigError` with the kubelet's
message (the container waits with reason ``CreateContainerConfigError``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from kreconcile.testing.kubelet.quantity import parse_quantity
from kreconcile.testing.kubelet.volumes import ContainerConfigError, ObjectGetter, config_map_bytes, secret_bytes

_ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
_FIELD_LABEL = re.compile(r"^metadata\.(labels|annotations)\['(.+)'\]$")


def expand(text: str, env: Mapping[str, str]) -> str:
    """Kubernetes ``$(VAR)`` expansion of ``text`` against ``env`` (``$$`` → ``$``, unknown refs kept)."""
    out: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "$" and i + 1 < len(text):
            nxt = text[i + 1]
            if nxt == "$":
                out.append("$")
                i += 2
                continue
            if nxt == "(":
                close = text.find(")", i + 2)
                if close != -1:
                    name = text[i + 2 : close]
                    out.append(env[name] if name in env else text[i : close + 1])
                    i = close + 1
                    continue
        out.append(ch)
        i += 1
    return "".join(out)


def pod_field(pod: Mapping[str, Any], field_path: str) -> str:
    """The value of a downward-API ``fieldRef.fieldPath`` for ``pod``.

    Supported: ``metadata.name|namespace|uid``, ``metadata.labels['k']``, ``metadata.annotations['k']``,
    ``spec.nodeName``, ``spec.serviceAccountName``, ``status.hostIP``, ``status.podIP``, ``status.podIPs``
    (pods run on loopback, so the IPs are ``127.0.0.1``).

    Raises:
        ContainerConfigError: an unsupported field path (names the field and the supported ones).
    """
    meta = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    match = _FIELD_LABEL.match(field_path)
    if match:
        return str((meta.get(match.group(1)) or {}).get(match.group(2), ""))
    simple: dict[str, Callable[[], str]] = {
        "metadata.name": lambda: str(meta.get("name", "")),
        "metadata.namespace": lambda: str(meta.get("namespace", "")),
        "metadata.uid": lambda: str(meta.get("uid", "")),
        "spec.nodeName": lambda: str(spec.get("nodeName", "")),
        "spec.serviceAccountName": lambda: str(spec.get("serviceAccountName", "default")),
        "status.hostIP": lambda: "127.0.0.1",
        "status.podIP": lambda: "127.0.0.1",
        "status.podIPs": lambda: "127.0.0.1",
    }
    if field_path not in simple:
        raise ContainerConfigError(
            f"fieldRef.fieldPath: {field_path!r} is not supported; use one of {', '.join(sorted(simple))}, "
            "metadata.labels['<key>'] or metadata.annotations['<key>']"
        )
    return simple[field_path]()


def resource_field(container: Mapping[str, Any], ref: Mapping[str, Any]) -> str:
    """``resourceFieldRef``: ``limits.cpu|memory|ephemeral-storage`` or ``requests.*``, in ``divisor`` units,
    rounded up (cpu limit unset → the node's cores, memory unset → 0 here as there are no node limits)."""
    resource = str(ref.get("resource", ""))
    kind, _, name = resource.partition(".")
    if kind not in ("limits", "requests") or not name:
        raise ContainerConfigError(
            f"resourceFieldRef.resource: {resource!r} is not supported; use limits.cpu, requests.memory, ..."
        )
    raw = ((container.get("resources") or {}).get(kind) or {}).get(name)
    if raw is None and kind == "requests":
        raw = ((container.get("resources") or {}).get("limits") or {}).get(name)
    value = parse_quantity(raw, f"resources.{resource}") if raw is not None else parse_quantity(0)
    divisor = parse_quantity(ref.get("divisor", "1"), "resourceFieldRef.divisor")
    return str(math.ceil(value / divisor)) if divisor else str(math.ceil(value))


async def build_env(
    pod: Mapping[str, Any],
    container: Mapping[str, Any],
    get_secret: ObjectGetter,
    get_config_map: ObjectGetter,
) -> dict[str, str]:
    """The container's environment from ``envFrom`` and ``env`` (see module docstring for the rules).

    Raises:
        ContainerConfigError: a missing Secret/ConfigMap/key that is not ``optional``.
    """
    namespace = (pod.get("metadata") or {}).get("namespace", "default")
    env: dict[str, str] = {}
    for source in container.get("envFrom") or []:
        prefix = source.get("prefix", "")
        if "configMapRef" in source:
            ref = source["configMapRef"]
            obj = await get_config_map(namespace, ref.get("name", ""))
            if obj is None:
                if ref.get("optional"):
                    continue
                raise ContainerConfigError(f'configmap "{ref.get("name", "")}" not found')
            data = config_map_bytes(obj)
        elif "secretRef" in source:
            ref = source["secretRef"]
            obj = await get_secret(namespace, ref.get("name", ""))
            if obj is None:
                if ref.get("optional"):
                    continue
                raise ContainerConfigError(f'secret "{ref.get("name", "")}" not found')
            data = secret_bytes(obj)
        else:
            continue
        for key, value in data.items():
            if _ENV_NAME.match(prefix + key):
                env[prefix + key] = value.decode(errors="replace")
    for item in container.get("env") or []:
        name = item["name"]
        if "valueFrom" not in item:
            env[name] = expand(str(item.get("value", "")), env)
            continue
        source = item["valueFrom"]
        if "fieldRef" in source:
            env[name] = pod_field(pod, source["fieldRef"]["fieldPath"])
        elif "resourceFieldRef" in source:
            env[name] = resource_field(container, source["resourceFieldRef"])
        elif "secretKeyRef" in source or "configMapKeyRef" in source:
            is_secret = "secretKeyRef" in source
            ref = source["secretKeyRef" if is_secret else "configMapKeyRef"]
            obj_name, key = ref.get("name", ""), ref.get("key", "")
            obj = await (get_secret if is_secret else get_config_map)(namespace, obj_name)
            kind = "secret" if is_secret else "configmap"
            if obj is None:
                if ref.get("optional"):
                    continue
                raise ContainerConfigError(f'{kind} "{obj_name}" not found')
            data = secret_bytes(obj) if is_secret else config_map_bytes(obj)
            if key not in data:
                if ref.get("optional"):
                    continue
                raise ContainerConfigError(f"couldn't find key {key} in {'Secret' if is_secret else 'ConfigMap'} "
                                           f"{namespace}/{obj_name}")
            env[name] = data[key].decode(errors="replace")
    return env


def expand_all(items: Sequence[str] | None, env: Mapping[str, str]) -> list[str] | None:
    """``command``/``args`` expanded against the container's final environment (None stays None)."""
    return None if items is None else [expand(str(x), env) for x in items]
