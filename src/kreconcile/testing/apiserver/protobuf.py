"""Decoding of the Kubernetes protobuf envelope for the bodies kubectl's generators send.

kubectl (1.3x) encodes typed objects it builds itself (``kubectl create namespace|configmap|secret|
serviceaccount|deployment|service|job``) as ``application/vnd.kubernetes.protobuf``: the 4-byte magic ``k8s\\0`` and a
``runtime.Unknown`` (typeMeta, raw) whose ``raw`` is the object's message from ``k8s.io/api``'s generated.proto.
This module decodes those messages for the fields the generators set (field numbers from generated.proto) into the
JSON form; any other kind, or a field outside the table, is a 415 naming what is unsupported, so nothing is
silently dropped. Responses are always JSON (clients accept it).
"""

from __future__ import annotations

import base64
import datetime
from typing import Any

from .errors import APIError

MAGIC = b"k8s\x00"
PROTOBUF = "application/vnd.kubernetes.protobuf"

# message name -> field number -> (json name, type); types: str, bytes, int, bool, time, msg:<name>,
# rep:str, rep:msg:<name>, map:str (map<string,string>), map:bytes (map<string,bytes>, base64 in JSON)
_MESSAGES: dict[str, dict[int, tuple[str, str]]] = {
    "Unknown": {1: ("typeMeta", "msg:TypeMeta"), 2: ("raw", "bytes"), 3: ("contentEncoding", "str"),
                4: ("contentType", "str")},
    "TypeMeta": {1: ("apiVersion", "str"), 2: ("kind", "str")},
    "Time": {1: ("seconds", "int"), 2: ("nanos", "int")},
    "ObjectMeta": {1: ("name", "str"), 2: ("generateName", "str"), 3: ("namespace", "str"), 5: ("uid", "str"),
                   6: ("resourceVersion", "str"), 7: ("generation", "int"), 8: ("creationTimestamp", "time"),
                   11: ("labels", "map:str"), 12: ("annotations", "map:str"),
                   13: ("ownerReferences", "rep:msg:OwnerReference"), 14: ("finalizers", "rep:str")},
    "OwnerReference": {1: ("kind", "str"), 3: ("name", "str"), 4: ("uid", "str"), 5: ("apiVersion", "str"),
                       6: ("controller", "bool"), 7: ("blockOwnerDeletion", "bool")},
    "Namespace": {1: ("metadata", "msg:ObjectMeta"), 2: ("spec", "msg:NamespaceSpec"),
                  3: ("status", "msg:Empty")},
    "NamespaceSpec": {1: ("finalizers", "rep:str")},
    "ConfigMap": {1: ("metadata", "msg:ObjectMeta"), 2: ("data", "map:str"), 3: ("binaryData", "map:bytes"),
                  4: ("immutable", "bool")},
    "Secret": {1: ("metadata", "msg:ObjectMeta"), 2: ("data", "map:bytes"), 3: ("type", "str"),
               4: ("stringData", "map:str"), 5: ("immutable", "bool")},
    "ServiceAccount": {1: ("metadata", "msg:ObjectMeta"), 4: ("automountServiceAccountToken", "bool")},
    "Deployment": {1: ("metadata", "msg:ObjectMeta"), 2: ("spec", "msg:DeploymentSpec"),
                   3: ("status", "msg:Empty")},
    "DeploymentSpec": {1: ("replicas", "int"), 2: ("selector", "msg:LabelSelector"),
                       3: ("template", "msg:PodTemplateSpec"), 4: ("strategy", "msg:Empty")},
    "LabelSelector": {1: ("matchLabels", "map:str")},
    "PodTemplateSpec": {1: ("metadata", "msg:ObjectMeta"), 2: ("spec", "msg:PodSpec")},
    "PodSpec": {2: ("containers", "rep:msg:Container"), 3: ("restartPolicy", "str")},
    "Job": {1: ("metadata", "msg:ObjectMeta"), 2: ("spec", "msg:JobSpec"), 3: ("status", "msg:Empty")},
    "JobSpec": {1: ("parallelism", "int"), 2: ("completions", "int"), 6: ("template", "msg:PodTemplateSpec"),
                7: ("backoffLimit", "int")},
    "Container": {1: ("name", "str"), 2: ("image", "str"), 3: ("command", "rep:str"), 4: ("args", "rep:str"),
                  6: ("ports", "rep:msg:ContainerPort"), 7: ("env", "rep:msg:EnvVar"),
                  8: ("resources", "msg:Empty")},
    "ContainerPort": {1: ("name", "str"), 2: ("hostPort", "int"), 3: ("containerPort", "int"),
                      4: ("protocol", "str")},
    "EnvVar": {1: ("name", "str"), 2: ("value", "str")},
    "Service": {1: ("metadata", "msg:ObjectMeta"), 2: ("spec", "msg:ServiceSpec"), 3: ("status", "msg:Empty")},
    "ServiceSpec": {1: ("ports", "rep:msg:ServicePort"), 2: ("selector", "map:str"), 3: ("clusterIP", "str"),
                    4: ("type", "str"), 11: ("externalName", "str")},
    "ServicePort": {1: ("name", "str"), 2: ("protocol", "str"), 3: ("port", "int"),
                    4: ("targetPort", "msg:IntOrString"), 5: ("nodePort", "int")},
    "IntOrString": {1: ("type", "int"), 2: ("intVal", "int"), 3: ("strVal", "str")},
    "Empty": {},
}
_KINDS = {("v1", "Namespace"), ("v1", "ConfigMap"), ("v1", "Secret"), ("v1", "ServiceAccount"),
          ("apps/v1", "Deployment"), ("v1", "Service"), ("batch/v1", "Job")}


def _unsupported(what: str) -> APIError:
    return APIError(415, "UnsupportedMediaType", f"the emulator decodes protobuf bodies only for kubectl's "
                    f"generators (Namespace, ConfigMap, Secret, ServiceAccount, Deployment, Service, Job); {what}. "
                    "Send JSON (e.g. kubectl create -f FILE) instead")


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data):
            raise APIError(400, "BadRequest", "error decoding protobuf body: truncated varint")
        b = data[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7


def _fields(data: bytes) -> list[tuple[int, int, Any]]:
    out = []
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        value: int | bytes
        if wire == 0:
            value, pos = _varint(data, pos)
        elif wire == 2:
            length, pos = _varint(data, pos)
            value, pos = data[pos:pos + length], pos + length
        elif wire == 1:
            value, pos = data[pos:pos + 8], pos + 8
        elif wire == 5:
            value, pos = data[pos:pos + 4], pos + 4
        else:
            raise APIError(400, "BadRequest", f"error decoding protobuf body: wire type {wire}")
        out.append((number, wire, value))
    return out


def _decode(message: str, data: bytes) -> Any:
    table = _MESSAGES[message]
    out: dict[str, Any] = {}
    for number, _wire, value in _fields(data):
        if message == "Empty":
            continue
        if number not in table:
            if value in (0, b""):
                continue  # gogo-protobuf writes every non-pointer field, empty ones included
            raise _unsupported(f"field {number} of {message} is not supported")
        name, kind = table[number]
        if kind == "str":
            out[name] = value.decode()
        elif kind == "bytes":
            out[name] = value
        elif kind == "int":
            out[name] = value - (1 << 64) if value >= 1 << 63 else value
        elif kind == "bool":
            out[name] = bool(value)
        elif kind == "time":
            t = _decode("Time", value)
            if not t.get("seconds"):
                continue
            out[name] = datetime.datetime.fromtimestamp(t.get("seconds", 0), datetime.UTC).strftime(
                "%Y-%m-%dT%H:%M:%SZ")
        elif kind.startswith("msg:"):
            out[name] = _decode(kind[4:], value)
        elif kind == "rep:str":
            out.setdefault(name, []).append(value.decode())
        elif kind.startswith("rep:msg:"):
            out.setdefault(name, []).append(_decode(kind[8:], value))
        elif kind.startswith("map:"):
            entry = {n: v for n, _, v in _fields(value)}
            raw = entry.get(2, b"")
            out.setdefault(name, {})[entry.get(1, b"").decode()] = (
                raw.decode() if kind == "map:str" else base64.b64encode(raw).decode())
    if message == "IntOrString":
        return out.get("strVal", "") if out.get("type") == 1 else out.get("intVal", 0)
    # JSON omitempty: empty strings, maps, lists and zero scalars are absent (replicas is a pointer: kept)
    return {k: v for k, v in out.items() if k == "replicas" or v not in ("", 0, False, {}, [], b"")}


def decode(body: bytes) -> dict[str, Any]:
    """Decode a ``k8s\\0``-prefixed protobuf body into the object's JSON form.

    Raises:
        APIError: 400 for a malformed envelope, 415 for kinds or fields outside the supported table.
    """
    if not body.startswith(MAGIC):
        raise APIError(400, "BadRequest", "error decoding protobuf body: missing the k8s\\0 magic prefix")
    unknown = _decode("Unknown", body[len(MAGIC):])
    type_meta = unknown.get("typeMeta") or {}
    api_version, kind = type_meta.get("apiVersion", ""), type_meta.get("kind", "")
    if (api_version, kind) not in _KINDS:
        raise _unsupported(f"got {api_version}/{kind}")
    obj = _decode(kind, unknown.get("raw", b""))
    if kind == "Service":
        for port in (obj.get("spec") or {}).get("ports") or []:
            if port.get("targetPort") in (0, ""):
                port.pop("targetPort")
    obj.pop("status", None)
    return {"apiVersion": api_version, "kind": kind, **obj}
