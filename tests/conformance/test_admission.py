"""Validating admission webhooks are called with an AdmissionReview, and their answers are honoured."""

from __future__ import annotations

import base64
import json
import tempfile
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest_asyncio
from aiohttp import web

from kreconcile.testing.apiserver.tls import generate_certs

from .conftest import Cluster, eventually


class Webhook:
    """An HTTPS AdmissionReview endpoint on 127.0.0.1 that denies objects labelled ``deny: "yes"``."""

    def __init__(self) -> None:
        self.reviews: list[dict[str, Any]] = []
        self.url = ""
        self.ca_bundle = ""

    async def handle(self, request: web.Request) -> web.Response:
        review = await request.json()
        self.reviews.append(review)
        req = review["request"]
        obj = req.get("object") or req.get("oldObject") or {}
        denied = (obj.get("metadata", {}).get("labels") or {}).get("deny") == "yes"
        response: dict[str, Any] = {"uid": req["uid"], "allowed": not denied}
        if denied:
            response["status"] = {"code": 403, "message": "objects labelled deny=yes are not allowed"}
        return web.json_response({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                                  "response": response})

    async def mutate(self, request: web.Request) -> web.Response:
        review = await request.json()
        self.reviews.append(review)
        patch = [{"op": "add", "path": "/metadata/labels/mutated", "value": "yes"}]
        response = {"uid": review["request"]["uid"], "allowed": True, "patchType": "JSONPatch",
                    "patch": base64.b64encode(json.dumps(patch).encode()).decode()}
        return web.json_response({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                                  "response": response})


@pytest_asyncio.fixture
async def webhook() -> AsyncIterator[Webhook]:
    hook = Webhook()
    with tempfile.TemporaryDirectory() as tmp:
        certs = generate_certs(Path(tmp))
        app = web.Application()
        app.router.add_post("/validate", hook.handle)
        app.router.add_post("/mutate", hook.mutate)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=certs.server_context())
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        hook.url = f"https://127.0.0.1:{port}/validate"
        hook.ca_bundle = base64.b64encode(certs.ca_path.read_bytes()).decode()
        try:
            yield hook
        finally:
            await runner.cleanup()


def _config(cluster: Cluster, name: str, url: str, ca: str, policy: str = "Fail") -> dict[str, Any]:
    return {
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": name},
        "webhooks": [{
            "name": f"{name}.conformance.kreconcile.dev",
            "clientConfig": {"url": url, "caBundle": ca},
            "rules": [{"operations": ["CREATE", "UPDATE"], "apiGroups": [""], "apiVersions": ["v1"],
                       "resources": ["configmaps"]}],
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": cluster.namespace}}
            if cluster.minor >= 21 else {"matchLabels": {"conformance-ns": cluster.namespace}},
            "failurePolicy": policy, "sideEffects": "None", "admissionReviewVersions": ["v1"],
            "timeoutSeconds": 5,
        }],
    }


async def _register(cluster: Cluster, config: dict[str, Any]) -> None:
    if cluster.minor < 21:  # 1.20 has no automatic kubernetes.io/metadata.name label
        await cluster.request("PATCH", f"/api/v1/namespaces/{cluster.namespace}",
                              {"metadata": {"labels": {"conformance-ns": cluster.namespace}}},
                              "application/merge-patch+json")
    path = "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations"
    status, body = await cluster.request("POST", path, config)
    assert status == 201, body
    name = config["metadata"]["name"]
    cluster.cleanup.append(lambda: cluster.request("DELETE", f"{path}/{name}"))


async def _until_in_effect(cluster: Cluster, in_effect: Callable[[int, Any, str], bool]) -> None:
    """A real API server starts calling a new webhook configuration a moment after the POST returns (its
    informer must see it): create probe ConfigMaps until ``in_effect(status, body, probe_name)`` says the webhook
    took part, deleting the probes (upstream e2e tests wait the same way)."""
    counter = iter(range(10_000))

    async def probe() -> bool:
        name = f"probe-{next(counter)}"
        status, body = await cluster.request("POST", cluster.ns_path("configmaps"), {"metadata": {"name": name}})
        if status == 201:
            await cluster.request("DELETE", cluster.ns_path("configmaps", name=name))
        return in_effect(status, body, name)

    await eventually(probe, "the webhook configuration to take effect")


def _reviewed(webhook: Webhook) -> Callable[[int, Any, str], bool]:
    return lambda _status, _body, name: any(r["request"].get("name") == name for r in webhook.reviews)


async def test_webhook_denies_and_allows(cluster: Cluster, webhook: Webhook) -> None:
    await _register(cluster, _config(cluster, f"deny-{cluster.namespace}", webhook.url, webhook.ca_bundle))
    await _until_in_effect(cluster, _reviewed(webhook))
    status, _ = await cluster.request("POST", cluster.ns_path("configmaps"), {"metadata": {"name": "ok"}})
    assert status == 201
    status, body = await cluster.request("POST", cluster.ns_path("configmaps"),
                                         {"metadata": {"name": "no", "labels": {"deny": "yes"}}})
    assert status == 403
    assert body["message"].startswith(f'admission webhook "deny-{cluster.namespace}.conformance.kreconcile.dev" '
                                      "denied the request: objects labelled deny=yes")
    status, _ = await cluster.request("GET", cluster.ns_path("configmaps", name="no"))
    assert status == 404
    review = next(r for r in webhook.reviews if r["request"]["name"] == "ok")
    request = review["request"]
    assert review["apiVersion"] == "admission.k8s.io/v1" and request["operation"] == "CREATE"
    assert request["resource"] == {"group": "", "version": "v1", "resource": "configmaps"}
    assert request["namespace"] == cluster.namespace and request["object"]["metadata"]["name"] == "ok"
    status, _ = await cluster.request("PATCH", cluster.ns_path("configmaps", name="ok"),
                                      {"metadata": {"labels": {"deny": "yes"}}}, "application/merge-patch+json")
    assert status == 403
    update = webhook.reviews[-1]["request"]
    assert update["operation"] == "UPDATE" and update["oldObject"]["metadata"]["name"] == "ok"


async def test_failure_policy(cluster: Cluster, webhook: Webhook) -> None:
    dead = "https://127.0.0.1:9/validate"  # nothing listens on the discard port
    ca = webhook.ca_bundle
    await _register(cluster, _config(cluster, f"ignore-{cluster.namespace}", dead, ca, "Ignore"))
    status, _ = await cluster.request("POST", cluster.ns_path("configmaps"), {"metadata": {"name": "a"}})
    assert status == 201
    await _register(cluster, _config(cluster, f"fail-{cluster.namespace}", dead, ca, "Fail"))
    await _until_in_effect(cluster, lambda status, _body, _name: status == 500)
    status, body = await cluster.request("POST", cluster.ns_path("configmaps"), {"metadata": {"name": "b"}})
    assert status == 500 and "failed calling webhook" in body["message"]
    assert json.dumps(body).count("fail-") >= 1


async def test_mutating_webhook_patches_before_validation(cluster: Cluster, webhook: Webhook) -> None:
    config = _config(cluster, f"mutate-{cluster.namespace}", webhook.url.replace("/validate", "/mutate"),
                     webhook.ca_bundle)
    config["kind"] = "MutatingWebhookConfiguration"
    if cluster.minor < 21:
        await cluster.request("PATCH", f"/api/v1/namespaces/{cluster.namespace}",
                              {"metadata": {"labels": {"conformance-ns": cluster.namespace}}},
                              "application/merge-patch+json")
    path = "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations"
    status, body = await cluster.request("POST", path, config)
    assert status == 201, body
    name = config["metadata"]["name"]
    cluster.cleanup.append(lambda: cluster.request("DELETE", f"{path}/{name}"))
    await _until_in_effect(cluster, _reviewed(webhook))
    created = await cluster.create("configmaps", {"metadata": {"name": "m", "labels": {"app": "x"}}})
    assert created["metadata"]["labels"] == {"app": "x", "mutated": "yes"}
