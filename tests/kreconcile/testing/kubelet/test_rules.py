"""The kubelet's pure rules: argv, env, paths, ports, quantities, back-off, phase, conditions."""

from __future__ import annotations

import json
from fractions import Fraction

import pytest

from kreconcile.testing.kubelet.backoff import Backoff, go_duration
from kreconcile.testing.kubelet.env import build_env, expand
from kreconcile.testing.kubelet.images import ImageMap, ImageSpec, resolve_argv
from kreconcile.testing.kubelet.ports import port_env, rewrite_argv
from kreconcile.testing.kubelet.quantity import parse_quantity, pod_requests
from kreconcile.testing.kubelet.status import ContainerRecord, pod_conditions, pod_phase, qos_class
from kreconcile.testing.kubelet.volumes import ContainerConfigError, PathMap

IMAGE = ImageSpec(entrypoint=("/entry",), cmd=("--default",))


@pytest.mark.parametrize(
    ("command", "args", "argv"),
    [
        (None, None, ("/entry", "--default")),
        (None, ["--x"], ("/entry", "--x")),
        (["/bin/run"], None, ("/bin/run",)),
        (["/bin/run"], ["a", "b"], ("/bin/run", "a", "b")),
    ],
)
def test_command_and_args_combine_with_the_image_as_kubernetes_does(command, args, argv) -> None:
    assert resolve_argv(IMAGE, command, args) == argv


def test_an_image_with_nothing_to_run_and_no_command_is_an_error() -> None:
    with pytest.raises(ValueError, match=r"set the container's command"):
        resolve_argv(ImageSpec(), None, None)


def test_image_lookup_prefers_exact_then_untagged_then_longest_prefix() -> None:
    images = ImageMap()
    images.register("repo/app", cmd=["untagged"])
    images.register("repo/app:v2", cmd=["exact"])
    images.register("repo/", cmd=["prefix"])
    images.register("repo/ap", cmd=["longer-prefix"])
    assert images.lookup("repo/app:v2").cmd == ["exact"]  # type: ignore[union-attr]
    assert images.lookup("repo/app:v1").cmd == ["untagged"]  # type: ignore[union-attr]
    assert images.lookup("repo/apx:v1").cmd == ["longer-prefix"]  # type: ignore[union-attr]
    assert images.lookup("repo/zzz").cmd == ["prefix"]  # type: ignore[union-attr]
    assert images.lookup("other/app") is None


def test_mount_paths_are_rewritten_only_at_path_boundaries_longest_first() -> None:
    paths = PathMap({"/mnt/adapter": "/L/adapter", "/mnt/adapter/special": "/L/special", "/data": "/L/data"})
    assert paths.rewrite("/mnt/adapter") == "/L/adapter"
    assert paths.rewrite("/mnt/adapter/x.bin") == "/L/adapter/x.bin"
    assert paths.rewrite("/mnt/adapter/special/y") == "/L/special/y"
    assert paths.rewrite("--dir=/mnt/adapter") == "--dir=/L/adapter"
    assert paths.rewrite("cp /data/* /mnt/adapter/") == "cp /L/data/* /L/adapter/"
    assert paths.rewrite("/mnt/adapters") == "/mnt/adapters"
    assert paths.rewrite("/x/mnt/adapter") == "/x/mnt/adapter"
    assert json.loads(paths.to_json())["/data"] == "/L/data"


def test_container_ports_after_port_flags_and_in_port_env_become_local_ports() -> None:
    ports = {5000: 41000}
    argv = rewrite_argv(["srv", "--port", "5000", "--http-port=5000", "-p", "5000", "--workers", "5000"], ports)
    assert argv == ["srv", "--port", "41000", "--http-port=41000", "-p", "41000", "--workers", "5000"]
    env = port_env({"SERVER_PORT": "5000", "BATCH": "5000"}, ports)
    assert env["SERVER_PORT"] == "41000"
    assert env["BATCH"] == "5000"
    assert env["KRECONCILE_PORT_5000"] == "41000"
    assert json.loads(env["KRECONCILE_PORTS"]) == {"5000": 41000}
    assert env["PORT"] == "41000"


def test_dollar_paren_expansion_follows_kubernetes_rules() -> None:
    env = {"A": "1", "B": "two"}
    assert expand("$(A)-$(B)", env) == "1-two"
    assert expand("$$(A)", env) == "$(A)"
    assert expand("$(MISSING)", env) == "$(MISSING)"
    assert expand("cost $5", env) == "cost $5"


async def test_env_resolves_value_from_and_env_from_in_order() -> None:
    pod = {"metadata": {"name": "p", "namespace": "ns", "labels": {"tier": "web"}}, "spec": {"nodeName": "n1"}}
    secret = {"data": {"token": "czNjcjN0"}}  # "s3cr3t"
    cm = {"data": {"MODE": "fast", "bad key": "x"}}

    async def get_secret(ns: str, name: str):
        return secret if (ns, name) == ("ns", "creds") else None

    async def get_cm(ns: str, name: str):
        return cm if (ns, name) == ("ns", "settings") else None

    container = {
        "name": "c",
        "resources": {"limits": {"memory": "64Mi"}},
        "envFrom": [{"configMapRef": {"name": "settings"}, "prefix": "CFG_"}],
        "env": [
            {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "TIER", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['tier']"}}},
            {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
            {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "token"}}},
            {"name": "MEM_MI", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}}},
            {"name": "GREETING", "value": "$(POD) on $(NODE)"},
            {"name": "OPT", "valueFrom": {"secretKeyRef": {"name": "absent", "key": "k", "optional": True}}},
        ],
    }
    env = await build_env(pod, container, get_secret, get_cm)
    assert env == {
        "CFG_MODE": "fast",
        "POD": "p",
        "TIER": "web",
        "NODE": "n1",
        "TOKEN": "s3cr3t",
        "MEM_MI": "64",
        "GREETING": "p on n1",
    }


async def test_missing_secret_key_is_a_config_error_naming_it() -> None:
    async def get_secret(ns: str, name: str):
        return {"data": {}}

    async def get_cm(ns: str, name: str):
        return None

    container = {"name": "c", "env": [{"name": "T", "valueFrom": {"secretKeyRef": {"name": "s", "key": "tok"}}}]}
    with pytest.raises(ContainerConfigError, match=r"couldn't find key tok in Secret default/s"):
        await build_env({"metadata": {"namespace": "default"}}, container, get_secret, get_cm)


def test_quantities_parse_exactly() -> None:
    assert parse_quantity("100m") == Fraction(1, 10)
    assert parse_quantity("1Gi") == 2**30
    assert parse_quantity("1.5G") == 1_500_000_000
    assert parse_quantity("1e3") == 1000
    assert parse_quantity(2) == 2
    with pytest.raises(ValueError, match=r"limits\.cpu: 'lots' is not a quantity"):
        parse_quantity("lots", "limits.cpu")


def test_pod_requests_take_max_of_init_and_sum_of_containers_and_default_to_limits() -> None:
    pod = {
        "spec": {
            "initContainers": [{"name": "i", "resources": {"requests": {"cpu": "2"}}}],
            "containers": [
                {"name": "a", "resources": {"requests": {"cpu": "500m"}, "limits": {"nvidia.com/gpu": "1"}}},
                {"name": "b", "resources": {"requests": {"cpu": "700m", "memory": "1Gi"}}},
            ],
        }
    }
    assert pod_requests(pod) == {"cpu": 2, "memory": 2**30, "nvidia.com/gpu": 1}


def test_crash_loop_backoff_restarts_at_once_then_doubles_from_10s_to_300s() -> None:
    backoff = Backoff()
    now = 0.0
    delays = []
    for _ in range(8):
        delay = backoff.next(now)
        delays.append(delay)
        now += delay + 1
    assert delays == [0, 10, 20, 40, 80, 160, 300, 300]
    assert [go_duration(d) for d in (10, 80, 300)] == ["10s", "1m20s", "5m0s"]


def test_backoff_starts_over_after_a_long_healthy_run() -> None:
    backoff = Backoff()
    backoff.next(0)
    backoff.next(1)
    assert backoff.next(1000) == 0


def _rec(name: str, state: dict, last: dict | None = None, ready: bool = False) -> ContainerRecord:
    return ContainerRecord(name, "img", state, last or {}, ready=ready)


RUNNING = {"running": {"startedAt": "t"}}
OK = {"terminated": {"exitCode": 0}}
FAIL = {"terminated": {"exitCode": 1}}
WAIT = {"waiting": {"reason": "ContainerCreating"}}
BACKOFF = {"waiting": {"reason": "CrashLoopBackOff"}}


@pytest.mark.parametrize(
    ("policy", "init", "containers", "phase"),
    [
        ("Always", [], [_rec("a", WAIT)], "Pending"),
        ("Always", [_rec("i", RUNNING)], [_rec("a", WAIT)], "Pending"),
        ("Never", [_rec("i", FAIL)], [_rec("a", WAIT)], "Failed"),
        ("Always", [_rec("i", OK)], [_rec("a", RUNNING)], "Running"),
        ("Always", [], [_rec("a", BACKOFF, {"terminated": {"exitCode": 1}})], "Running"),
        ("Never", [], [_rec("a", OK), _rec("b", OK)], "Succeeded"),
        ("Never", [], [_rec("a", OK), _rec("b", FAIL)], "Failed"),
        ("OnFailure", [], [_rec("a", OK)], "Succeeded"),
        ("OnFailure", [], [_rec("a", BACKOFF, {"terminated": {"exitCode": 1}})], "Running"),
        ("Never", [], [_rec("a", RUNNING), _rec("b", OK)], "Running"),
    ],
)
def test_pod_phase_follows_the_kubelet(policy, init, containers, phase) -> None:
    assert pod_phase(policy, init, containers) == phase


def test_conditions_name_unready_containers_and_keep_transition_times() -> None:
    records = [_rec("a", RUNNING, ready=True), _rec("b", RUNNING)]
    first = pod_conditions("Running", [], records, [], "T1")
    ready = next(c for c in first if c["type"] == "Ready")
    assert ready["status"] == "False"
    assert ready["reason"] == "ContainersNotReady"
    assert ready["message"] == "containers with unready status: [b]"
    later = pod_conditions("Running", [], records, first, "T2")
    assert next(c for c in later if c["type"] == "Ready")["lastTransitionTime"] == "T1"
    records[1].ready = True
    flipped = pod_conditions("Running", [], records, later, "T3")
    assert next(c for c in flipped if c["type"] == "Ready") == {
        "type": "Ready", "status": "True", "lastProbeTime": None, "lastTransitionTime": "T3"
    }


def test_qos_class() -> None:
    guaranteed = {"spec": {"containers": [{"resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}]}}
    burstable = {"spec": {"containers": [{"resources": {"requests": {"cpu": "1"}}}]}}
    assert qos_class(guaranteed) == "Guaranteed"
    assert qos_class(burstable) == "Burstable"
    assert qos_class({"spec": {"containers": [{}]}}) == "BestEffort"
