"""The tuning controller's pure parts: the Job it wants and the status it computes from a Job and its pods."""

from __future__ import annotations

from typing import Any

import pytest

from kaito.api import constants as c
from kaito.api.workspace import parse_workspace
from kaito.controllers.tuning.job import (
    ANNOTATION_JOB_HASH,
    desired_job,
    is_loopback_registry,
    trainer_model_arg,
)
from kaito.controllers.tuning.status import (
    REASON_CONFIG_NOT_FOUND,
    REASON_DATA_DOWNLOAD_FAILED,
    REASON_INVALID_DATASET,
    REASON_PUSH_AUTH_FAILED,
    Failure,
    TuningObserved,
    compute_tuning_status,
    failed_container,
    failure_reason,
    summarize_log,
)
from kaito.presets.catalog import load_catalog
from kaito.runtime.oci import build_parser as oci_parser
from kaito.runtime.tuning.__main__ import build_parser as tuner_parser
from kaito.runtime.tuning.download import build_parser as download_parser
from tests.kaito.controllers.tuning.builders import tuning_workspace

CATALOG = load_catalog()
SMOL = CATALOG.preset("smollm2-135m-instruct")


def job_for(wire: dict[str, Any], config: str = "training_config: {}") -> dict[str, Any]:
    return desired_job(parse_workspace(wire), SMOL, config, gpus_per_node=0, version="0.1.0")


def containers(job: dict[str, Any]) -> dict[str, dict[str, Any]]:
    pod = job["spec"]["template"]["spec"]
    return {ct["name"]: ct for ct in [*(pod.get("initContainers") or []), *pod["containers"]]}


def test_every_container_command_is_accepted_by_the_runtime_cli_it_runs() -> None:
    job = job_for(tuning_workspace(input_image=None))
    parsers = {"kaito.runtime.tuning": tuner_parser(), "kaito.runtime.tuning.download": download_parser(),
               "kaito.runtime.oci": oci_parser()}
    for ct in containers(job).values():
        command = ct["command"]
        assert command[:2] == ["python", "-m"]
        args = parsers[command[2]].parse_args(command[3:])  # SystemExit(2) on a mismatch
        if command[2] == "kaito.runtime.tuning":
            assert args.model == "smollm2-135m-instruct" and args.method == "qlora"
            assert args.config == "/mnt/config/training_config.yaml"
        if command[2] == "kaito.runtime.oci":
            assert args.plain_http is True  # 127.0.0.1 registry


def test_the_job_mounts_kaitos_config_copy_even_when_the_user_names_a_configmap() -> None:
    job = job_for(tuning_workspace(config="my-config"))
    volumes = {v["name"]: v for v in job["spec"]["template"]["spec"]["volumes"]}
    assert volumes["config-volume"]["configMap"] == {"name": "tune-tuning-config"}


def test_a_changed_spec_or_config_changes_the_job_hash_and_equal_inputs_do_not() -> None:
    base = job_for(tuning_workspace())["metadata"]["annotations"][ANNOTATION_JOB_HASH]
    assert job_for(tuning_workspace())["metadata"]["annotations"][ANNOTATION_JOB_HASH] == base
    other_url = job_for(tuning_workspace(urls=["https://data.example.com/v2.parquet"]))
    assert other_url["metadata"]["annotations"][ANNOTATION_JOB_HASH] != base
    other_config = job_for(tuning_workspace(), config="training_config: {LoraConfig: {r: 16}}")
    assert other_config["metadata"]["annotations"][ANNOTATION_JOB_HASH] != base


def test_remote_registries_keep_https_and_volume_output_has_no_pusher() -> None:
    job = job_for(tuning_workspace(output_image="myregistry.azurecr.io/adapters/tune:v1",
                                   input_image="myregistry.azurecr.io/data/set:v1"))
    cts = containers(job)
    assert "--plain-http" not in cts["pusher"]["command"]
    assert "--plain-http" not in cts["data-puller"]["command"]
    assert "pusher" not in containers(job_for(tuning_workspace(output_image=None)))


@pytest.mark.parametrize(("image", "loopback"), [
    ("127.0.0.1:5000/a/b:v1", True), ("localhost:5000/a:v1", True), ("[::1]:5000/a:v1", True),
    ("127.3.2.1/a:v1", True), ("10.0.0.1:5000/a:v1", False), ("myregistry.azurecr.io/a:v1", False),
])
def test_loopback_registries_are_detected_by_host(image: str, loopback: bool) -> None:
    assert is_loopback_registry(image) is loopback


def test_gpu_presets_train_the_weights_baked_into_their_image() -> None:
    assert trainer_model_arg(CATALOG.preset("phi-3-mini-4k-instruct"), "0.1.0") == "/workspace/weights"
    assert trainer_model_arg(SMOL, "0.1.0") == "smollm2-135m-instruct"


def pod(containers_: list[dict[str, Any]], init: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"metadata": {"name": "tune-abc", "creationTimestamp": "2026-01-01T00:00:00Z"},
            "status": {"initContainerStatuses": init or [], "containerStatuses": containers_}}


def terminated(name: str, code: int, reason: str = "Error") -> dict[str, Any]:
    return {"name": name, "state": {"terminated": {"exitCode": code, "reason": reason}}}


def test_the_first_failed_container_is_found_init_containers_first() -> None:
    p = pod([terminated("pusher", 0, "Completed")], init=[terminated("data-downloader", 0, "Completed"),
                                                            terminated("tuner", 3)])
    assert failed_container([p]) == Failure("tuner", 3, "Error")
    assert failed_container([pod([terminated("pusher", 0, "Completed")])]) is None


@pytest.mark.parametrize(("failure", "reason"), [
    (Failure("data-downloader", 1, "Error"), REASON_DATA_DOWNLOAD_FAILED),
    (Failure("tuner", 3, "Error"), REASON_INVALID_DATASET),
    (Failure("tuner", 137, "OOMKilled"), c.REASON_CONTAINER_OOM_KILLED),
    (Failure("pusher", 3, "Error"), REASON_PUSH_AUTH_FAILED),
    (Failure("tuner", 5, "Error", "tuning.push_failed: registry r rejected the credentials"), REASON_PUSH_AUTH_FAILED),
    (Failure("tuner", 5, "Error", "tuning.push_failed: registry r unreachable"), "ImagePushFailed"),
])
def test_failure_reasons_follow_the_container_role_and_exit_code(failure: Failure, reason: str) -> None:
    assert failure_reason(failure) == reason


def test_log_summaries_keep_the_runtime_error_not_the_timestamps() -> None:
    log = "\n".join([
        '{"event": "download.attempt", "url": "x", "timestamp": "2026"}',
        '{"event": "download.failed", "error": "https://x/train.parquet: HTTP 404 Not Found", "level": "error"}',
        "plain line",
    ])
    assert summarize_log(log) == ("download.attempt | download.failed: https://x/train.parquet: HTTP 404 Not Found"
                                  " | plain line")


def job(**status: Any) -> dict[str, Any]:
    return {"metadata": {"name": "tune"}, "status": status}


def done(type_: str) -> dict[str, Any]:
    return {"conditions": [{"type": type_, "status": "True"}]}


def conds(status: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {x["type"]: x for x in status["conditions"]}


def test_status_follows_the_job_running_then_succeeded_keeping_other_conditions() -> None:
    old = {"conditions": [{"type": "ResourceReady", "status": "True", "reason": "ResourceReady", "message": "ok",
                           "lastTransitionTime": "2026-01-01T00:00:00Z"}], "workerNodes": ["n1"]}
    running = compute_tuning_status(old, TuningObserved(generation=1, job=job(active=1)), 100.0, "tune")
    assert running["state"] == c.STATE_RUNNING and running["workerNodes"] == ["n1"]
    assert conds(running)[c.COND_JOB_STARTED]["status"] == "True"
    assert conds(running)[c.COND_WORKSPACE_SUCCEEDED]["status"] == "False"
    assert conds(running)["ResourceReady"] == old["conditions"][0]
    ok = compute_tuning_status(running, TuningObserved(generation=1, job=job(**done("Complete")),
                                                       output="image r/a:v1"), 200.0, "tune")
    assert ok["state"] == c.STATE_SUCCEEDED
    assert conds(ok)[c.COND_WORKSPACE_SUCCEEDED]["reason"] == c.REASON_JOB_SUCCEEDED
    assert "image r/a:v1" in conds(ok)[c.COND_WORKSPACE_SUCCEEDED]["message"]
    assert conds(ok)[c.COND_JOB_STARTED]["lastTransitionTime"] == conds(running)[c.COND_JOB_STARTED][
        "lastTransitionTime"]


def test_a_failed_job_reports_the_container_exit_code_and_log_tail() -> None:
    failure = Failure("tuner", 3, "Error", "tuning.dataset_invalid: train.parquet row 4: column text is empty")
    failed = compute_tuning_status({}, TuningObserved(generation=2, job=job(**done("Failed")), failure=failure),
                                   1.0, "tune")
    cond = conds(failed)[c.COND_WORKSPACE_SUCCEEDED]
    assert failed["state"] == c.STATE_FAILED and cond["reason"] == REASON_INVALID_DATASET
    assert "container tuner exited with code 3" in cond["message"]
    assert "row 4: column text is empty" in cond["message"]
    assert cond["observedGeneration"] == 2


def test_a_blocked_workspace_fails_with_the_reason_and_a_pod_problem_shows_while_running() -> None:
    blocked = compute_tuning_status({}, TuningObserved(generation=1, blocked=(REASON_CONFIG_NOT_FOUND, "create it")),
                                    1.0, "tune")
    assert blocked["state"] == c.STATE_FAILED
    assert conds(blocked)[c.COND_JOB_STARTED]["reason"] == REASON_CONFIG_NOT_FOUND
    pending = {"metadata": {"name": "tune-x"}, "status": {"conditions": [
        {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": "0/1 nodes available"}]}}
    waiting = compute_tuning_status({}, TuningObserved(generation=1, job=job(), pods=[pending]), 1.0, "tune")
    assert conds(waiting)[c.COND_WORKSPACE_SUCCEEDED]["reason"] == c.REASON_UNSCHEDULABLE
    assert waiting["state"] == c.STATE_RUNNING


def test_volume_input_is_mounted_as_the_data_directory_without_a_downloader() -> None:
    wire = tuning_workspace(output_image=None)
    wire["tuning"]["input"] = {"volumeSource": {"persistentVolumeClaim": {"claimName": "datasets"}}}
    job = job_for(wire)
    pod = job["spec"]["template"]["spec"]
    assert set(containers(job)) == {"tuner"}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["data-volume"]["persistentVolumeClaim"] == {"claimName": "datasets"}
    assert volumes["output-volume"] == {"name": "output-volume", "emptyDir": {}}
    mounts = {m["mountPath"]: m["name"] for m in containers(job)["tuner"]["volumeMounts"]}
    assert mounts[c.DATA_DIR] == "data-volume" and mounts[c.OUTPUT_DIR] == "output-volume"
