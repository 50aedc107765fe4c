"""Bad input gets the real status codes and reasons and never corrupts stored state."""

from __future__ import annotations

from .conftest import Cluster


async def _unchanged(cluster: Cluster, before: dict) -> None:
    _, after = await cluster.request("GET", cluster.ns_path("configmaps", name="keep"))
    assert after["data"] == before["data"]
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]


async def test_bad_bodies_and_documents(cluster: Cluster) -> None:
    before = await cluster.create("configmaps", {"metadata": {"name": "keep"}, "data": {"k": "v"}})
    path = cluster.ns_path("configmaps", name="keep")
    cases = [
        ("POST", cluster.ns_path("configmaps"), b"{not json", "application/json", 400, "BadRequest"),
        ("PUT", path, b'{"apiVersion":"v1","kind":"Secret","metadata":{"name":"keep"}}', "application/json", 400,
         "BadRequest"),
        ("PUT", path, b'{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"other"}}', "application/json",
         400, "BadRequest"),
        ("PATCH", path, b"[{\"op\": \"bogus\"}", "application/json-patch+json", 400, "BadRequest"),
        ("PATCH", path, b'{"data": {"k": "x"}}', "application/json-patch+json", 400, "BadRequest"),
        ("PATCH", path, b'[{"op": "remove", "path": "/data/missing"}]', "application/json-patch+json", 422,
         "Invalid"),
    ]
    if cluster.minor >= 21:  # 1.20 answers a malformed merge patch with a reason-less 500 "Invalid JSON Patch"
        cases.append(("PATCH", path, b"not json", "application/merge-patch+json", 400, "BadRequest"))
    for method, url, raw, ctype, code, reason in cases:
        status, body = await cluster.request(method, url, raw=raw, content_type=ctype)
        assert (status, body.get("reason")) == (code, reason), (method, raw, body)
    await _unchanged(cluster, before)


async def test_oversize_body_is_rejected(cluster: Cluster) -> None:
    before = await cluster.create("configmaps", {"metadata": {"name": "keep"}, "data": {"k": "v"}})
    huge = {**before, "data": {"k": "x" * (3 * 1024 * 1024 + 10)}}
    status, body = await cluster.request("PUT", cluster.ns_path("configmaps", name="keep"), huge)
    assert status == 413 and body["reason"] == "RequestEntityTooLarge"
    await _unchanged(cluster, before)


async def test_invalid_selectors_and_parameters(cluster: Cluster) -> None:
    for params in ({"labelSelector": "a in (b"}, {"labelSelector": "=x"}, {"fieldSelector": "metadata.name"},
                   {"fieldSelector": "spec.unknown=1"}):
        status, body = await cluster.request("GET", cluster.ns_path("configmaps"), params=params)
        assert (status, body["reason"]) == (400, "BadRequest"), params


async def test_unknown_fields_of_builtin_kinds_are_dropped(cluster: Cluster) -> None:
    body = {"metadata": {"name": "u"}, "data": {"k": "v"}, "dta": {"typo": "x"}}
    status, created = await cluster.request("POST", cluster.ns_path("configmaps"), body)
    assert status == 201 and "dta" not in created and created["data"] == {"k": "v"}


async def test_strict_field_validation_rejects_unknown_fields(cluster: Cluster) -> None:
    cluster.require_minor(27, "server-side fieldValidation")
    body = {"metadata": {"name": "u"}, "spec": {"replica": 2, "selector": {"matchLabels": {"a": "b"}},
                                                "template": {"metadata": {"labels": {"a": "b"}},
                                                             "spec": {"containers": [{"name": "c", "image": "i"}]}}}}
    status, error = await cluster.request("POST", cluster.ns_path("deployments", "apps/v1"), body,
                                          params={"fieldValidation": "Strict"})
    assert (status, error["reason"]) == (400, "BadRequest")
    assert 'unknown field "spec.replica"' in error["message"]
    async with cluster.http.post(cluster.ns_path("deployments", "apps/v1"), json=body,
                                 params={"fieldValidation": "Warn"}) as r:
        assert r.status == 201
        assert 'unknown field \\"spec.replica\\"' in r.headers.get("Warning", "")  # RFC 7234 quoted-string
