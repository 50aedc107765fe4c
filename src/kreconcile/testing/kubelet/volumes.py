"""Pod volumes as local directories, and the path rewriting that stands in for mounts.

Container processes are not chrooted, so a ``mountPath`` such as ``/mnt/models`` cannot exist for them. Instead
each volume is a local directory and every *absolute* ``mountPath`` that appears in the container's command, args,
env values and ``workingDir`` is rewritten to that directory (:class:`PathMap`). A path matches only at a path
boundary: ``/mnt/adapter`` rewrites ``/mnt/adapter``, ``/mnt/adapter/x`` and ``--dir=/mnt/adapter`` but not
``/mnt/adapters`` or ``/x/mnt/adapter``; the longest mountPath wins. The map is also given to the process as JSON
in ``KRECONCILE_PATH_MAP`` (``{"/mnt/models": "/tmp/.../volumes/models"}``) for paths a program builds itself.

Where volumes live (``pod_dir`` is ``<data_dir>/pods/<uid>``, ``node_dir`` is ``<data_dir>/nodes/<node>``):

=========================  ==========================================================  ==================
volume                     local directory                                             lifetime
=========================  ==========================================================  ==================
emptyDir                   ``pod_dir/volumes/<name>``                                  the pod
configMap / secret         ``pod_dir/volumes/<name>``, one file per key (or ``items``)  the pod (at start)
downwardAPI                ``pod_dir/volumes/<name>``, one file per item               the pod
hostPath                   ``node_dir/hostpath/<path>`` (never the real host path)     the node
persistentVolumeClaim      ``<data_dir>/pvc/<namespace>/<claimName>``                   the claim's name
=========================  ==========================================================  ==================
"""

from __future__ import annotations

import base64
import json
import os
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ObjectGetter = Callable[[str, str], Awaitable[dict[str, Any] | None]]
"""``await get(namespace, name)`` → the object, or None when it does not exist."""


class ContainerConfigError(Exception):
    """A referenced Secret/ConfigMap/key is missing: the container waits with ``CreateContainerConfigError``."""


@dataclass(frozen=True)
class PathMap:
    """``mountPath`` → local directory, with boundary-aware rewriting of strings (see module docstring)."""

    mounts: Mapping[str, str]

    def __post_init__(self) -> None:
        keys = sorted((k.rstrip("/") or "/" for k in self.mounts if k.startswith("/")), key=len, reverse=True)
        pattern = (
            re.compile(r"(?<![A-Za-z0-9_.\-/])(" + "|".join(re.escape(k) for k in keys) + r")(?![A-Za-z0-9_.\-])")
            if keys
            else None
        )
        object.__setattr__(self, "_pattern", pattern)
        object.__setattr__(self, "_norm", {k.rstrip("/") or "/": v for k, v in self.mounts.items()})

    def rewrite(self, text: str) -> str:
        """``text`` with every mountPath occurrence (at a path boundary) replaced by its local directory."""
        pattern: re.Pattern[str] | None = self._pattern  # type: ignore[attr-defined]
        if pattern is None:
            return text
        norm: dict[str, str] = self._norm  # type: ignore[attr-defined]
        return pattern.sub(lambda m: norm[m.group(1)], text)

    def to_json(self) -> str:
        """The map as the JSON object given to processes in ``KRECONCILE_PATH_MAP``."""
        return json.dumps(dict(self.mounts), sort_keys=True)


def _safe_join(base: Path, relative: str, field: str) -> Path:
    """``base / relative`` refusing absolute paths and ``..`` escapes (as the API server validates ``path``)."""
    if relative.startswith("/") or ".." in Path(relative).parts:
        raise ContainerConfigError(f"{field}: {relative!r} must be a relative path without '..'")
    return base / relative


def _write_files(target: Path, files: Mapping[str, bytes], default_mode: int) -> None:
    target.mkdir(parents=True, exist_ok=True)
    wanted = set()
    for rel, data in files.items():
        path = _safe_join(target, rel, "items[].path")
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_bytes(data)
        os.chmod(tmp, default_mode)
        tmp.replace(path)
        wanted.add(path)
    for existing in target.rglob("*"):
        if existing.is_file() and existing not in wanted:
            existing.unlink()


def _key_files(
    data: Mapping[str, bytes], items: list[dict[str, Any]] | None, what: str, optional: bool
) -> dict[str, bytes]:
    if not items:
        return dict(data)
    out: dict[str, bytes] = {}
    for item in items:
        key = item.get("key", "")
        if key not in data:
            if optional:
                continue
            raise ContainerConfigError(f"couldn't find key {key} in {what}")
        out[item.get("path") or key] = data[key]
    return out


def config_map_bytes(config_map: Mapping[str, Any]) -> dict[str, bytes]:
    """A ConfigMap's ``data`` (UTF-8) and ``binaryData`` (base64) as bytes per key."""
    out = {k: str(v).encode() for k, v in (config_map.get("data") or {}).items()}
    out.update({k: base64.b64decode(v) for k, v in (config_map.get("binaryData") or {}).items()})
    return out


def secret_bytes(secret: Mapping[str, Any]) -> dict[str, bytes]:
    """A Secret's ``data`` (base64) and any not-yet-merged ``stringData`` as bytes per key."""
    out = {k: base64.b64decode(v) for k, v in (secret.get("data") or {}).items()}
    out.update({k: str(v).encode() for k, v in (secret.get("stringData") or {}).items()})
    return out


@dataclass(frozen=True)
class VolumeDirs:
    """Where a pod's volumes are: ``volumes`` maps volume name → local directory."""

    volumes: Mapping[str, Path]


async def prepare_volumes(
    pod: Mapping[str, Any],
    pod_dir: Path,
    node_dir: Path,
    data_dir: Path,
    get_secret: ObjectGetter,
    get_config_map: ObjectGetter,
    field_value: Callable[[str], str],
) -> VolumeDirs:
    """Create (or refresh) the local directory of every volume in ``pod.spec.volumes``.

    ``field_value(fieldPath)`` resolves downwardAPI ``fieldRef`` items. Unknown volume types get an empty
    directory (so mounts still resolve).

    Raises:
        ContainerConfigError: a non-optional Secret/ConfigMap or key is missing (message as the kubelet's).
    """
    namespace = pod.get("metadata", {}).get("namespace", "default")
    out: dict[str, Path] = {}
    for volume in (pod.get("spec") or {}).get("volumes") or []:
        name = volume["name"]
        local = pod_dir / "volumes" / name
        if "hostPath" in volume:
            local = node_dir / "hostpath" / volume["hostPath"]["path"].lstrip("/")
            local.mkdir(parents=True, exist_ok=True)
        elif "persistentVolumeClaim" in volume:
            local = data_dir / "pvc" / namespace / volume["persistentVolumeClaim"]["claimName"]
            local.mkdir(parents=True, exist_ok=True)
        elif "configMap" in volume:
            src = volume["configMap"]
            optional = bool(src.get("optional"))
            obj = await get_config_map(namespace, src.get("name", ""))
            if obj is None and not optional:
                raise ContainerConfigError(f'configmap "{src.get("name", "")}" not found')
            data = config_map_bytes(obj) if obj else {}
            files = _key_files(data, src.get("items"), f'ConfigMap "{src.get("name")}"', optional)
            _write_files(local, files, int(src.get("defaultMode", 0o644)))
        elif "secret" in volume:
            src = volume["secret"]
            optional = bool(src.get("optional"))
            obj = await get_secret(namespace, src.get("secretName", ""))
            if obj is None and not optional:
                raise ContainerConfigError(f'secret "{src.get("secretName", "")}" not found')
            data = secret_bytes(obj) if obj else {}
            files = _key_files(data, src.get("items"), f'Secret "{src.get("secretName")}"', optional)
            _write_files(local, files, int(src.get("defaultMode", 0o644)))
        elif "downwardAPI" in volume:
            files = {}
            for item in volume["downwardAPI"].get("items") or []:
                if "fieldRef" in item:
                    files[item["path"]] = field_value(item["fieldRef"]["fieldPath"]).encode()
            _write_files(local, files, int(volume["downwardAPI"].get("defaultMode", 0o644)))
        else:
            local.mkdir(parents=True, exist_ok=True)
        out[name] = local
    return VolumeDirs(out)


def mount_map(container: Mapping[str, Any], volumes: VolumeDirs, index: int, kind: str = "containers") -> PathMap:
    """The container's ``volumeMounts`` as a :class:`PathMap` (``subPath`` honoured).

    Raises:
        ContainerConfigError: a mount names a volume the pod does not declare.
    """
    mounts: dict[str, str] = {}
    for j, mount in enumerate(container.get("volumeMounts") or []):
        name = mount.get("name", "")
        if name not in volumes.volumes:
            raise ContainerConfigError(
                f"spec.{kind}[{index}].volumeMounts[{j}].name: volume {name!r} is not in spec.volumes; add it there"
            )
        local = volumes.volumes[name]
        if mount.get("subPath"):
            local = _safe_join(local, mount["subPath"], f"spec.{kind}[{index}].volumeMounts[{j}].subPath")
            if not local.exists():
                local.mkdir(parents=True, exist_ok=True)
        mounts[mount["mountPath"]] = str(local)
    return PathMap(mounts)
