"""Builders of tuning Workspaces for the tuning controller's tests."""

from __future__ import annotations

from typing import Any

from kaito.api import constants as c


def tuning_workspace(
    name: str = "tune",
    *,
    preset: str = "smollm2-135m-instruct",
    method: str = "qlora",
    urls: list[str] | None = None,
    input_image: str | None = None,
    output_image: str | None = "127.0.0.1:5000/adapters/tune:v1",
    push_secret: str | None = "push-creds",
    config: str | None = None,
    instance_type: str = "local-cpu",
    namespace: str = "default",
) -> dict[str, Any]:
    """A v1beta1 tuning Workspace dict: URL input (default) or ``input_image``; image output (default) or an
    emptyDir volume when ``output_image`` is None."""
    source: dict[str, Any] = {"image": input_image} if input_image else {
        "urls": urls or ["https://data.example.com/train.parquet"]}
    output: dict[str, Any] = {"volumeSource": {"emptyDir": {}}}
    if output_image:
        output = {"image": output_image}
        if push_secret:
            output["imagePushSecret"] = push_secret
    tuning: dict[str, Any] = {"preset": {"name": preset}, "method": method, "input": source, "output": output}
    if config:
        tuning["config"] = config
    return {
        "apiVersion": f"{c.GROUP}/{c.V1BETA1}",
        "kind": "Workspace",
        "metadata": {"name": name, "namespace": namespace},
        "resource": {"instanceType": instance_type, "labelSelector": {"matchLabels": {"apps": name}}},
        "tuning": tuning,
    }
