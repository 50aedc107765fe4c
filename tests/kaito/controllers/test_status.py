"""compute_status of the workspace and machine controllers: pure functions from observed state to conditions."""

from __future__ import annotations

from typing import Any

import pytest

from kaito.api import constants as c
from kaito.controllers.machine import Observed as MachineObserved
from kaito.controllers.machine import compute_status as machine_status
from kaito.controllers.workspace import Observed, compute_status
from kaito.controllers.workspace.status import pod_problem
from kaito.provisioner import Machine, QuotaExceededError
from kreconcile.conditions import get_condition

NOW = 1_767_225_600.0


def node(name: str, ready: bool = True, gpus: int = 1) -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "status": {
            "capacity": {c.RESOURCE_GPU: str(gpus)},
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        },
    }


def nodeclaim(name: str, **conds: tuple[str, str, str]) -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "status": {"conditions": [{"type": t, "status": s, "reason": r, "message": m}
                                  for t, (s, r, m) in conds.items()]},
    }


def pod(name: str, status: dict[str, Any]) -> dict[str, Any]:
    return {"metadata": {"name": name}, "status": status}


def observed(**kw: Any) -> Observed:
    base: dict[str, Any] = dict(generation=3, inference=True, target_node_count=1, auto_provisioning=True,
                                gpu_required=True)
    base.update(kw)
    return Observed(**base)


def cond(status: dict[str, Any], type_: str) -> dict[str, Any]:
    found = get_condition(status["conditions"], type_)
    assert found is not None, f"no {type_} condition"
    return found


def test_resource_ready_carries_the_provider_reason_not_a_generic_message() -> None:
    nc = nodeclaim("ws-abc-0", Launched=("False", "QuotaExceeded", "exceeding approved quota for NCSv3"))
    status = compute_status({}, observed(nodeclaims=[nc]), NOW)
    resource = cond(status, c.COND_RESOURCE_READY)
    assert (resource["status"], resource["reason"]) == ("False", "NodeClaimQuotaExceeded")
    assert resource["message"] == "NodeClaim ws-abc-0: exceeding approved quota for NCSv3"
    assert status["state"] == c.STATE_PENDING
    assert cond(status, c.COND_WORKSPACE_SUCCEEDED)["status"] == "False"


def test_all_ready_and_endpoint_answering_is_workspace_succeeded() -> None:
    nc = nodeclaim("ws-abc-0", Ready=("True", "Ready", ""))
    sts = {"metadata": {"generation": 1}, "spec": {"replicas": 1},
           "status": {"observedGeneration": 1, "readyReplicas": 1, "updatedReplicas": 1}}
    status = compute_status({}, observed(nodeclaims=[nc], nodes=[node("n1")], workload=sts,
                                         endpoint=(True, "answers")), NOW)
    for type_ in (c.COND_NODECLAIM_READY, c.COND_NODES_READY, c.COND_RESOURCE_READY, c.COND_INFERENCE_READY,
                  c.COND_WORKSPACE_SUCCEEDED):
        assert cond(status, type_)["status"] == "True", type_
        assert cond(status, type_)["observedGeneration"] == 3
    assert status["state"] == c.STATE_READY
    assert status["workerNodes"] == ["n1"]
    assert status["targetNodeCount"] == 1


def test_a_node_without_gpu_capacity_is_not_ready_for_a_gpu_preset() -> None:
    status = compute_status({}, observed(auto_provisioning=False, nodes=[node("n1", gpus=0)]), NOW)
    nodes = cond(status, c.COND_NODES_READY)
    assert nodes["status"] == "False" and nodes["reason"] == "NoMatchingNodes"
    assert "nvidia.com/gpu" in nodes["message"]


def test_last_transition_time_moves_only_when_status_flips() -> None:
    first = compute_status({}, observed(auto_provisioning=False, nodes=[]), NOW)
    again = compute_status(first, observed(auto_provisioning=False, nodes=[]), NOW + 100)
    assert cond(again, c.COND_NODES_READY)["lastTransitionTime"] == cond(first, c.COND_NODES_READY)[
        "lastTransitionTime"]
    flipped = compute_status(again, observed(auto_provisioning=False, nodes=[node("n1")]), NOW + 200)
    assert cond(flipped, c.COND_NODES_READY)["lastTransitionTime"] != cond(first, c.COND_NODES_READY)[
        "lastTransitionTime"]


def test_unchanged_observation_yields_an_identical_status() -> None:
    obs = observed(auto_provisioning=False, nodes=[node("n1")])
    first = compute_status({}, obs, NOW)
    assert compute_status(first, obs, NOW + 50) == first


@pytest.mark.parametrize(
    ("status", "reason", "fragment"),
    [
        ({"conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                          "message": "0/1 nodes are available: 1 Insufficient nvidia.com/gpu."}]},
         c.REASON_UNSCHEDULABLE, "Insufficient nvidia.com/gpu"),
        ({"containerStatuses": [{"name": "inference", "state": {"waiting": {"reason": "ImagePullBackOff",
                                                                             "message": "Back-off pulling"}}}]},
         c.REASON_IMAGE_PULL_ERROR, "ImagePullBackOff"),
        ({"containerStatuses": [{"name": "inference", "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                                 "lastState": {"terminated": {"exitCode": 1, "reason": "Error"}}}]},
         c.REASON_CRASH_LOOP_BACKOFF, "exit code 1"),
        ({"containerStatuses": [{"name": "inference", "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                                 "lastState": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}}]},
         c.REASON_CONTAINER_OOM_KILLED, "OOMKilled"),
        ({"phase": "Failed", "reason": "Evicted", "message": "The node was low on resource: memory."},
         c.REASON_POD_EVICTED, "low on resource"),
        ({"phase": "Running", "containerStatuses": [{"name": "inference", "state": {"running": {}},
                                                     "started": True, "ready": False, "restartCount": 2}]},
         c.REASON_PROBE_FAILED, "restarted 2 time(s)"),
    ],
)
def test_pod_failures_become_inference_ready_reasons(status: dict[str, Any], reason: str, fragment: str) -> None:
    problem = pod_problem([pod("ws-0", status)])
    assert problem is not None
    assert problem[0] == reason
    assert fragment in problem[1]
    assert len(problem[1]) <= c.CONDITION_MESSAGE_LIMIT


def test_healthy_and_still_starting_pods_have_no_problem() -> None:
    assert pod_problem([pod("ws-0", {"phase": "Running", "containerStatuses": [
        {"name": "inference", "ready": True, "started": True, "state": {"running": {}}}]})]) is None
    # still loading the model (startup probe not passed yet), or just started and not probed ready yet
    assert pod_problem([pod("ws-0", {"phase": "Running", "containerStatuses": [
        {"name": "inference", "ready": False, "started": False, "state": {"running": {}}}]})]) is None
    assert pod_problem([pod("ws-0", {"phase": "Running", "containerStatuses": [
        {"name": "inference", "ready": False, "started": True, "restartCount": 0, "state": {"running": {}}}]})]) is None


def test_deleting_sets_workspace_deleting() -> None:
    status = compute_status({}, observed(deleting=True), NOW)
    assert cond(status, c.COND_WORKSPACE_DELETING)["status"] == "True"


def test_machine_status_walks_launched_registered_initialized_ready() -> None:
    machine = Machine("nc-0", "local:///nc-0", "Standard_NC6s_v3", "Running", node_name="nc-0",
                      capacity={c.RESOURCE_GPU: "1"})
    status = machine_status({}, MachineObserved(machine, None, node("nc-0"), gpus_expected=1), 1, NOW)
    assert [x["type"] for x in status["conditions"] if x["status"] == "True"] == [
        "Launched", "Registered", "Initialized", "Ready"]
    assert status["nodeName"] == "nc-0" and status["providerID"] == "local:///nc-0"


def test_machine_status_reports_quota_errors_and_missing_gpus() -> None:
    err = QuotaExceededError("exceeding approved quota")
    status = machine_status({}, MachineObserved(None, err, None, gpus_expected=1), 1, NOW)
    launched = cond(status, "Launched")
    assert (launched["status"], launched["reason"]) == ("False", "QuotaExceeded")
    machine = Machine("nc-0", "local:///nc-0", "Standard_NC6s_v3", "Running", node_name="nc-0")
    status = machine_status({}, MachineObserved(machine, None, node("nc-0", gpus=0), gpus_expected=1), 1, NOW)
    ready = cond(status, "Ready")
    assert ready["status"] == "False" and ready["reason"] == "GPUCapacityMissing"
    assert "device plugin" in ready["message"]


def test_a_crash_loop_message_leads_with_the_termination_message_and_keeps_the_logs_hint() -> None:
    not_runnable = ("image mcr.microsoft.com/aks/kaito/kaito-phi-3-mini-4k-instruct:0.0.2 is not runnable locally: it "
                    "is a GPU preset image with model weights that kaito dev does not have. Under kaito dev use the "
                    "CPU preset smollm2-135m-instruct (examples/inference/smollm2-local.yaml).")
    waiting = {"reason": "CrashLoopBackOff", "message": "back-off 20s restarting failed container=workspace-phi-3-mini "
               "pod=workspace-phi-3-mini-0_default(0f8d5a43-7a4e-4d0b-a2a3-5b0e8e1f7c11)"}
    status = {"containerStatuses": [{"name": "workspace-phi-3-mini", "state": {"waiting": waiting},
                                     "lastState": {"terminated": {"exitCode": 1, "reason": "Error",
                                                                  "message": not_runnable + "\n"}}}]}
    problem = pod_problem([pod("workspace-phi-3-mini-0", status)])
    assert problem is not None and problem[0] == c.REASON_CRASH_LOOP_BACKOFF
    message = problem[1]
    assert len(message) <= c.CONDITION_MESSAGE_LIMIT
    assert message.startswith("pod workspace-phi-3-mini-0 container workspace-phi-3-mini exited (exit code 1): "
                              "image mcr.microsoft.com/aks/kaito/kaito-phi-3-mini-4k-instruct:0.0.2 is not runnable "
                              "locally")
    assert message.endswith("; see `kubectl logs workspace-phi-3-mini-0 -c workspace-phi-3-mini --previous`")
    assert "0f8d5a43" not in message and "..." in message


def test_a_short_crash_loop_message_names_the_back_off_without_the_pod_uid() -> None:
    waiting = {"reason": "CrashLoopBackOff",
               "message": "back-off 40s restarting failed container=inference pod=ws-0_default(0f8d5a43-7a4e-4d0b-a2a3-"
                          "5b0e8e1f7c11)"}
    status = {"containerStatuses": [{"name": "inference", "state": {"waiting": waiting},
                                     "lastState": {"terminated": {"exitCode": 1, "reason": "Error"}}}]}
    problem = pod_problem([pod("ws-0", status)])
    assert problem is not None
    assert problem[1] == ("pod ws-0 container inference is in CrashLoopBackOff (exit code 1), back-off 40s; "
                          "see `kubectl logs ws-0 -c inference --previous`")
