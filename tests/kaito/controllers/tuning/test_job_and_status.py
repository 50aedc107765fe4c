"""The tuning controller's pure part: the status it computes from a Job and its pods (the Job itself is built by
:mod:`kaito.workloads.tuning`; see ``tests/kaito/workloads/test_tuning.py``)."""

from __future__ import annotations

from typing import Any

import pytest

from kaito.api import constants as c
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


def test_a_running_job_says_which_container_runs_or_that_its_pod_has_not_started_one() -> None:
    def running_message(pod_status: dict[str, Any]) -> str:
        pod_ = {"metadata": {"name": "tune-x"}, "status": pod_status}
        status = compute_tuning_status({}, TuningObserved(generation=1, job=job(active=1), pods=[pod_]), 1.0, "tune")
        cond = conds(status)[c.COND_WORKSPACE_SUCCEEDED]
        assert cond["reason"] == "JobRunning"
        return str(cond["message"])

    training = {"phase": "Pending", "initContainerStatuses": [
        {"name": "tuner", "state": {"running": {"startedAt": "2026-01-01T00:00:00Z"}}}]}
    assert running_message(training) == "tuning Job tune is running: its pod tune-x is running container tuner"
    stuck = {"phase": "Pending", "initContainerStatuses": [
        {"name": "tuner", "state": {"waiting": {"reason": "PodInitializing"}}}]}
    message = running_message(stuck)
    assert "its pod tune-x has not started a container yet (tuner PodInitializing)" in message
    assert "`kubectl describe pod tune-x`" in message and "a Secret or ConfigMap it mounts does not exist" in message
