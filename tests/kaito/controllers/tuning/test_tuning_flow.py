"""The tuning controller end to end over HTTP on the API server emulator, in a real operator (workspace + machine
controllers with the local provider, and this controller). The Job controller's part is played by the test:
it writes the Job's status and pods as the Job controller and kubelet would, and serves the pods' logs."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from kaito.api import constants as c
from kaito.cli import main as cli_main
from kaito.provisioner import LocalProvider
from kaito.runtime.tuning.defaults import default_config_text
from kaito.workloads.tuning import ANNOTATION_JOB_HASH
from kreconcile.client import Client
from kreconcile.config import load_config
from kreconcile.errors import NotFound
from kreconcile.gvk import GVK
from kreconcile.testing.apiserver import APIServer
from tests.kaito.controllers.harness import WORKSPACE, condition, eventually, install_crds, running_operator
from tests.kaito.controllers.tuning.builders import tuning_workspace

JOB = GVK("batch", "v1", "Job")
POD = GVK("", "v1", "Pod")
CONFIGMAP = GVK("", "v1", "ConfigMap")
EVENT = GVK("events.k8s.io", "v1", "Event")


class Logs:
    """The kubelet's log endpoint: serves ``text`` for every container and counts the reads."""

    def __init__(self) -> None:
        self.text = ""
        self.reads: list[tuple[str, str]] = []

    async def __call__(self, namespace: str, pod: str, container: str, follow: bool, tail: int | None
                       ) -> AsyncIterator[bytes]:
        self.reads.append((pod, container))
        yield self.text.encode()


@pytest.fixture
async def server() -> AsyncIterator[APIServer]:
    async with APIServer() as srv:
        yield srv


@pytest.fixture
async def client(server: APIServer) -> AsyncIterator[Client]:
    async with Client(load_config(str(server.kubeconfig_path)).with_rate(0)) as cl:
        await install_crds(cl)
        yield cl


async def ws_condition(client: Client, name: str, type_: str) -> dict[str, Any] | None:
    return condition(await client.get(WORKSPACE, name, "default"), type_)


async def reason_is(client: Client, name: str, type_: str, reason: str) -> dict[str, Any] | None:
    cond = await ws_condition(client, name, type_)
    return cond if cond is not None and cond["reason"] == reason else None


async def job_status(client: Client, name: str, **status: Any) -> dict[str, Any]:
    job = await client.get(JOB, name, "default")
    job["status"] = status
    result: dict[str, Any] = await client.status().update(job)
    return result


def finished(type_: str) -> dict[str, Any]:
    stamp = "2026-01-01T00:00:00Z"
    return {"conditions": [{"type": type_, "status": "True", "lastProbeTime": stamp, "lastTransitionTime": stamp}]}


async def job_pod(client: Client, job: dict[str, Any], failed: tuple[str, int] | None) -> dict[str, Any]:
    """The Job's pod on the workspace's node, its containers terminated (``failed``: container, exit code)."""
    ws = await client.get(WORKSPACE, job["metadata"]["name"], "default")
    template = job["spec"]["template"]
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": f"{job['metadata']['name']}-x1", "namespace": "default",
            "labels": {**template["metadata"]["labels"], "job-name": job["metadata"]["name"]},
            "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": job["metadata"]["name"],
                                 "uid": job["metadata"]["uid"], "controller": True}],
        },
        "spec": {**template["spec"], "nodeName": ws["status"]["workerNodes"][0]},
    }
    created = await client.create(pod)

    def state(name: str) -> dict[str, Any]:
        code = failed[1] if failed and failed[0] == name else 0
        term = {"exitCode": code, "reason": "Error" if code else "Completed"}
        return {"name": name, "ready": False, "restartCount": 0, "image": "i", "imageID": "",
                "state": {"terminated": term}}

    created["status"] = {
        "phase": "Failed" if failed else "Succeeded",
        "initContainerStatuses": [state(ct["name"]) for ct in template["spec"].get("initContainers") or []],
        "containerStatuses": [state(ct["name"]) for ct in template["spec"]["containers"]],
    }
    result: dict[str, Any] = await client.status().update(created)
    return result


async def test_a_tuning_workspace_gets_its_config_and_job_and_follows_it_to_succeeded(
    server: APIServer, client: Client
) -> None:
    async with running_operator(server, client):
        await client.create(tuning_workspace("tune"))
        job = await eventually(lambda: client.get(JOB, "tune", "default"))
        ws = await client.get(WORKSPACE, "tune", "default")
        assert condition(ws, c.COND_RESOURCE_READY)["status"] == "True"  # type: ignore[index]
        assert job["metadata"]["ownerReferences"][0]["uid"] == ws["metadata"]["uid"]
        cm = await client.get(CONFIGMAP, "tune-tuning-config", "default")
        assert cm["data"][c.TUNING_CONFIG_KEY] == default_config_text("qlora")
        assert cm["metadata"]["ownerReferences"][0]["uid"] == ws["metadata"]["uid"]
        started = await eventually(lambda: reason_is(client, "tune", c.COND_JOB_STARTED, c.REASON_JOB_STARTED))
        assert started["status"] == "True"
        assert (await client.get(WORKSPACE, "tune", "default"))["status"]["state"] == c.STATE_RUNNING

        await job_pod(client, job, failed=None)
        await job_status(client, "tune", succeeded=1, **finished("Complete"))
        done = await eventually(lambda: reason_is(client, "tune", c.COND_WORKSPACE_SUCCEEDED,
                                                  c.REASON_JOB_SUCCEEDED))
        assert done["status"] == "True"
        assert "127.0.0.1:5000/adapters/tune:v1" in done["message"]
        ws = await client.get(WORKSPACE, "tune", "default")
        assert ws["status"]["state"] == c.STATE_SUCCEEDED
        assert condition(ws, c.COND_RESOURCE_READY)["status"] == "True"  # type: ignore[index]
        events = (await client.list(EVENT, "default"))["items"]
        reasons = {e["reason"] for e in events if e["regarding"]["name"] == "tune"}
        assert {"TuningJobCreated", c.REASON_JOB_SUCCEEDED} <= reasons


async def test_a_wrong_push_secret_fails_once_with_the_log_tail_and_is_not_retried(
    server: APIServer, client: Client
) -> None:
    logs = Logs()
    logs.text = ('{"event": "tuning.push_failed", "error": "registry 127.0.0.1:5000 rejected the credentials of '
                 'user alice (HTTP 401); fix the imagePushSecret", "level": "error"}\n')
    server.set_pod_log_provider(logs)
    async with running_operator(server, client):
        await client.create(tuning_workspace("bad-secret"))
        job = await eventually(lambda: client.get(JOB, "bad-secret", "default"))
        await job_pod(client, job, failed=("tuner", 5))
        await job_status(client, "bad-secret", failed=1, **finished("Failed"))
        cond = await eventually(lambda: reason_is(client, "bad-secret", c.COND_WORKSPACE_SUCCEEDED,
                                                  "ImagePushAuthFailed"))
        assert cond["status"] == "False"
        assert "container tuner exited with code 5" in cond["message"]
        assert "rejected the credentials of user alice" in cond["message"]
        ws = await client.get(WORKSPACE, "bad-secret", "default")
        assert ws["status"]["state"] == c.STATE_FAILED
        # more events for the workspace (a label edit, the workspace controller's passes): no new Job, no re-read
        for i in range(3):
            await client.patch(ws, {"metadata": {"annotations": {"poke": str(i)}}})
        await eventually(lambda: _annotated(client, "bad-secret", "poke", "2"))
        await eventually(lambda: reason_is(client, "bad-secret", c.COND_WORKSPACE_SUCCEEDED, "ImagePushAuthFailed"))
        assert (await client.get(JOB, "bad-secret", "default"))["metadata"]["uid"] == job["metadata"]["uid"]
        assert logs.reads == [("bad-secret-x1", "tuner")]
        warnings = [e for e in (await client.list(EVENT, "default"))["items"]
                    if e["regarding"]["name"] == "bad-secret" and e["type"] == "Warning"
                    and e["reportingController"] == "kaito.sh/tuning-controller"]
        assert [e["reason"] for e in warnings] == ["ImagePushAuthFailed"]


async def _annotated(client: Client, name: str, key: str, value: str) -> bool:
    ws = await client.get(WORKSPACE, name, "default")
    return bool((ws["metadata"].get("annotations") or {}).get(key) == value)


async def test_a_404_url_is_reported_as_a_download_failure(server: APIServer, client: Client) -> None:
    logs = Logs()
    logs.text = ('{"event": "download.failed", "error": "https://data.example.com/train.parquet: HTTP 404 Not Found;'
                 ' check the URL (not retried)", "level": "error"}\n')
    server.set_pod_log_provider(logs)
    async with running_operator(server, client):
        await client.create(tuning_workspace("missing-data"))
        job = await eventually(lambda: client.get(JOB, "missing-data", "default"))
        await job_pod(client, job, failed=("data-downloader", 1))
        await job_status(client, "missing-data", failed=1, **finished("Failed"))
        cond = await eventually(lambda: reason_is(client, "missing-data", c.COND_WORKSPACE_SUCCEEDED,
                                                  "DataDownloadFailed"))
        assert "HTTP 404 Not Found" in cond["message"]
        assert "data-downloader" in cond["message"]


async def test_a_changed_spec_replaces_the_job_and_runs_again(server: APIServer, client: Client) -> None:
    async with running_operator(server, client):
        await client.create(tuning_workspace("rerun"))
        first = await eventually(lambda: client.get(JOB, "rerun", "default"))
        await job_status(client, "rerun", succeeded=1, **finished("Complete"))
        await eventually(lambda: reason_is(client, "rerun", c.COND_WORKSPACE_SUCCEEDED, c.REASON_JOB_SUCCEEDED))
        ws = await client.get(WORKSPACE, "rerun", "default")
        ws["tuning"]["output"]["image"] = "127.0.0.1:5000/adapters/rerun:v2"
        await client.update(ws)

        async def replaced() -> dict[str, Any] | None:
            try:
                job = await client.get(JOB, "rerun", "default")
            except NotFound:
                return None
            return job if job["metadata"]["uid"] != first["metadata"]["uid"] else None

        second = await eventually(replaced)
        assert second["metadata"]["annotations"][ANNOTATION_JOB_HASH] != first["metadata"]["annotations"][
            ANNOTATION_JOB_HASH]
        tuner = second["spec"]["template"]["spec"]["containers"][0]
        assert "127.0.0.1:5000/adapters/rerun:v2" in tuner["command"]
        await eventually(lambda: _state_is(client, "rerun", c.STATE_RUNNING))
        await job_status(client, "rerun", succeeded=1, **finished("Complete"))
        await eventually(lambda: _state_is(client, "rerun", c.STATE_SUCCEEDED))


async def _state_is(client: Client, name: str, state: str) -> bool:
    ws = await client.get(WORKSPACE, name, "default")
    return bool((ws.get("status") or {}).get("state") == state)


async def test_a_user_config_is_waited_for_validated_copied_and_followed(server: APIServer, client: Client) -> None:
    async with running_operator(server, client):
        await client.create(tuning_workspace("mine", method="lora", config="my-config"))
        missing = await eventually(lambda: reason_is(client, "mine", c.COND_JOB_STARTED, "TuningConfigNotFound"))
        assert "ConfigMap default/my-config not found" in missing["message"]
        # a LoRA workspace with a quantized config: rule 7 names the section and the fix
        bad = {"training_config": {"QuantizationConfig": {"load_in_4bit": True}, "LoraConfig": {"r": 4}}}
        await client.create({"apiVersion": "v1", "kind": "ConfigMap",
                             "metadata": {"name": "my-config", "namespace": "default"},
                             "data": {c.TUNING_CONFIG_KEY: yaml.safe_dump(bad)}})
        invalid = await eventually(lambda: reason_is(client, "mine", c.COND_JOB_STARTED, "InvalidTuningConfig"))
        assert "QuantizationConfig" in invalid["message"] and "qlora" in invalid["message"]
        with pytest.raises(NotFound):
            await client.get(JOB, "mine", "default")
        good = yaml.safe_dump({"training_config": {"LoraConfig": {"r": 4},
                                                   "TrainingArguments": {"max_steps": 5}}})
        user = await client.get(CONFIGMAP, "my-config", "default")
        user["data"] = {c.TUNING_CONFIG_KEY: good}
        await client.update(user)
        first = await eventually(lambda: client.get(JOB, "mine", "default"))
        copy = await client.get(CONFIGMAP, "mine-tuning-config", "default")
        assert copy["data"][c.TUNING_CONFIG_KEY] == good
        # editing the user's ConfigMap re-runs the tuning with the new content
        user = await client.get(CONFIGMAP, "my-config", "default")
        changed = good.replace("max_steps: 5", "max_steps: 7")
        user["data"] = {c.TUNING_CONFIG_KEY: changed}
        await client.update(user)

        async def rerun() -> bool:
            try:
                job = await client.get(JOB, "mine", "default")
            except NotFound:
                return False
            return bool(job["metadata"]["uid"] != first["metadata"]["uid"])

        await eventually(rerun)
        copy = await client.get(CONFIGMAP, "mine-tuning-config", "default")
        assert copy["data"][c.TUNING_CONFIG_KEY] == changed


async def test_the_default_template_in_the_operator_namespace_is_copied(server: APIServer, client: Client) -> None:
    await client.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "kaito-workspace"}})
    template = yaml.safe_dump({"training_config": {"LoraConfig": {"r": 16}, "TrainingArguments": {"max_steps": 3}}})
    await client.create({"apiVersion": "v1", "kind": "ConfigMap",
                         "metadata": {"name": "lora-params-template", "namespace": "kaito-workspace"},
                         "data": {c.TUNING_CONFIG_KEY: template}})
    async with running_operator(server, client):
        await client.create(tuning_workspace("tmpl", method="lora"))
        await eventually(lambda: client.get(JOB, "tmpl", "default"))
        copy = await client.get(CONFIGMAP, "tmpl-tuning-config", "default")
        assert copy["data"][c.TUNING_CONFIG_KEY] == template


async def test_no_job_is_created_until_the_workspace_controller_reports_the_node_ready(
    server: APIServer, client: Client
) -> None:
    provider = LocalProvider(client, failures={"local-cpu": "QuotaExceeded"})
    async with running_operator(server, client, provider=provider):
        await client.create(tuning_workspace("waiting"))
        cond = await eventually(lambda: reason_is(client, "waiting", c.COND_RESOURCE_READY,
                                                  c.REASON_NODECLAIM_QUOTA_EXCEEDED))
        assert cond["status"] == "False"
        ws = await client.get(WORKSPACE, "waiting", "default")
        assert ws["status"]["state"] == c.STATE_PENDING
        assert condition(ws, c.COND_JOB_STARTED) is None
        assert (await client.list(JOB, "default"))["items"] == []
        assert (await client.list(CONFIGMAP, "default", label_selector={c.LABEL_WORKSPACE_NAME: "waiting"}))[
            "items"] == []


async def test_a_v1alpha1_workspace_in_the_seeds_shape_is_tuned_and_its_objects_go_with_it(
    server: APIServer, client: Client
) -> None:
    wire = tuning_workspace("seed", method="lora", output_image=None)
    wire["apiVersion"] = f"{c.GROUP}/{c.V1ALPHA1}"
    async with running_operator(server, client):
        await client.create(wire)
        job = await eventually(lambda: client.get(JOB, "seed", "default"))
        tuner = job["spec"]["template"]["spec"]["containers"][0]
        assert tuner["name"] == "tuner" and tuner["command"][-4:-2] == ["--method", "lora"]
        await eventually(lambda: reason_is(client, "seed", c.COND_JOB_STARTED, c.REASON_JOB_STARTED))
        await client.delete(await client.get(WORKSPACE, "seed", "default"))

        async def gone(gvk: GVK, name: str) -> bool:
            try:
                await client.get(gvk, name, "default")
            except NotFound:
                return True
            return False

        await eventually(lambda: gone(WORKSPACE, "seed"))
        await eventually(lambda: gone(JOB, "seed"))
        await eventually(lambda: gone(CONFIGMAP, "seed-tuning-config"))


def _planned(tmp_path: Path, docs: list[dict[str, Any]], capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    """``kaito plan -o yaml`` of ``docs`` (one file): ``{kind: object}``."""
    path = tmp_path / "ws.yaml"
    path.write_text(yaml.safe_dump_all(docs))
    assert cli_main(["plan", str(path), "-o", "yaml"]) == 0
    return {d["kind"]: d for d in yaml.safe_load_all(capsys.readouterr().out)}


def _missing(planned: Any, stored: Any, path: str = "") -> list[str]:
    """Paths where ``stored`` (the object on the server) differs from ``planned``; fields only the server adds
    (defaults such as ``completions``, ``uid``, ``status``) are not differences."""
    if isinstance(planned, dict) and isinstance(stored, dict):
        return [p for k, v in planned.items() for p in _missing(v, stored.get(k), f"{path}.{k}")]
    if isinstance(planned, list) and isinstance(stored, list) and len(planned) == len(stored):
        return [p for i, (a, b) in enumerate(zip(planned, stored, strict=True)) for p in _missing(a, b, f"{path}[{i}]")]
    return [] if planned == stored else [f"{path}: planned {planned!r}, created {stored!r}"]


@pytest.mark.parametrize("config", [None, "users-config"])
async def test_kaito_plan_prints_the_configmap_and_job_the_controller_creates(
    server: APIServer, client: Client, tmp_path: Path, capsys: pytest.CaptureFixture[str], config: str | None
) -> None:
    wire = tuning_workspace("planned", method="lora", config=config)
    docs = [wire]
    if config:
        text = yaml.safe_dump({"training_config": {"LoraConfig": {"r": 4}, "TrainingArguments": {"max_steps": 3}}})
        user = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": config, "namespace": "default"},
                "data": {c.TUNING_CONFIG_KEY: text}}
        docs = [user, wire]
        await client.create(user)
    planned = _planned(tmp_path, docs, capsys)
    async with running_operator(server, client):
        await client.create(wire)
        job = await eventually(lambda: client.get(JOB, "planned", "default"))
        cm = await client.get(CONFIGMAP, "planned-tuning-config", "default")
    assert _missing(planned["ConfigMap"], cm) == []
    assert _missing(planned["Job"], job) == []
    assert cm["metadata"]["annotations"] == planned["ConfigMap"]["metadata"]["annotations"]
    assert job["metadata"]["annotations"] == planned["Job"]["metadata"]["annotations"]
    assert planned["Job"]["metadata"]["annotations"][ANNOTATION_JOB_HASH]
