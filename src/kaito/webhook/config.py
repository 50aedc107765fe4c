"""The Validating/MutatingWebhookConfiguration objects that route Workspace admission to the kaito webhook."""

from __future__ import annotations

import base64
from typing import Any

from kaito.api import constants as c

VALIDATING_NAME = "validation.workspace.kaito.sh"
MUTATING_NAME = "defaulting.workspace.kaito.sh"
TIMEOUT_SECONDS = 10
"""Seconds the API server waits for the webhook (the Kubernetes default and maximum is 10/30)."""


def _client_config(
    path: str, ca_bundle: bytes, url: str | None, service: tuple[str, str, int] | None
) -> dict[str, Any]:
    config: dict[str, Any] = {"caBundle": base64.b64encode(ca_bundle).decode()}
    if url is not None:
        config["url"] = url.rstrip("/") + path
    elif service is not None:
        namespace, name, port = service
        config["service"] = {"namespace": namespace, "name": name, "path": path, "port": port}
    else:
        raise ValueError("webhook client config: give url= (out of cluster) or service=(namespace, name, port)")
    return config


def _webhook(
    name: str, path: str, ca_bundle: bytes, url: str | None, service: tuple[str, str, int] | None
) -> dict[str, Any]:
    return {
        "name": name,
        "admissionReviewVersions": ["v1"],
        "sideEffects": "None",
        "failurePolicy": "Fail",
        "matchPolicy": "Equivalent",
        "timeoutSeconds": TIMEOUT_SECONDS,
        "clientConfig": _client_config(path, ca_bundle, url, service),
        "rules": [
            {
                "apiGroups": [c.GROUP],
                "apiVersions": [c.V1ALPHA1, c.V1BETA1],
                "operations": ["CREATE", "UPDATE"],
                "resources": [c.WORKSPACE_PLURAL],
                "scope": "Namespaced",
            }
        ],
    }


def webhook_configurations(
    ca_bundle: bytes, *, url: str | None = None, service: tuple[str, str, int] | None = None
) -> list[dict[str, Any]]:
    """A MutatingWebhookConfiguration (``/mutate``) and a ValidatingWebhookConfiguration (``/validate``) for
    Workspaces (both versions, CREATE and UPDATE, failurePolicy Fail).

    Args:
        ca_bundle: PEM of the CA that signed the webhook's serving certificate.
        url: base URL of a webhook outside the cluster, e.g. ``https://127.0.0.1:9443`` (kaito dev, tests).
        service: ``(namespace, service name, port)`` of the webhook Service in the cluster.

    Raises:
        ValueError: neither ``url`` nor ``service`` given.
    """
    return [
        {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "MutatingWebhookConfiguration",
            "metadata": {"name": MUTATING_NAME},
            "webhooks": [_webhook(MUTATING_NAME, "/mutate", ca_bundle, url, service)],
        },
        {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingWebhookConfiguration",
            "metadata": {"name": VALIDATING_NAME},
            "webhooks": [_webhook(VALIDATING_NAME, "/validate", ca_bundle, url, service)],
        },
    ]
