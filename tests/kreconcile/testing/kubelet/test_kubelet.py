"""The process kubelet running real processes: readiness, ports, volumes, logs, restarts, back-off, termination."""

from __future__ import annotations

import asyncio
import os
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from kreconcile.testing.kubelet import ProcessKubelet, live_process_groups

from .conftest import PYTHON, WEBSERVER, FakeBackend, make_pod, state_of, wait_for

pytestmark = pytest.mark.slow


def _get(port: int, path: str = "/") -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
        return resp.read().decode()


def _pids_alive(pids: list[int]) -> list[int]:
    """The pids that still exist and are not zombies (dead, waiting for their reparented parent to reap them)."""
    alive = []
    for pid in pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        if stat[stat.rfind(")") + 2] != "Z":
            alive.append(pid)
    return alive


def _waiting_reason(backend: FakeBackend, pod: str) -> str | None:
    return state_of(backend, pod).get("state", {}).get("waiting", {}).get("reason")


def _ready(backend: FakeBackend, pod: str) -> bool:
    conds = (backend.statuses.get(pod) or {}).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conds)


async def test_web_server_becomes_ready_and_answers_on_its_local_port(
    kubelet: ProcessKubelet, backend: FakeBackend
) -> None:
    pod = make_pod(
        "web",
        [
            {
                "name": "server",
                "image": "python:3.11",
                "command": ["python", WEBSERVER, "--port", "8080"],
                "ports": [{"containerPort": 8080, "name": "http"}],
                "readinessProbe": {"httpGet": {"path": "/health", "port": "http"}, "periodSeconds": 1},
            }
        ],
    )
    await kubelet.sync_pod(pod)
    await wait_for(lambda: _ready(backend, "web"))
    status = backend.statuses["web"]
    assert status["phase"] == "Running"
    assert status["podIP"] == "127.0.0.1"
    assert status["qosClass"] == "BestEffort"
    cs = status["containerStatuses"][0]
    assert cs["ready"] is True and cs["started"] is True and "running" in cs["state"]
    port = kubelet.local_port("default", "web", 8080)
    assert port is not None and port != 8080
    body = await asyncio.to_thread(_get, port)
    assert body == "hello from web\n"
    assert "listening on" in kubelet.read_log("default", "web").decode()


async def test_init_containers_run_in_order_and_share_volumes_through_rewritten_paths(
    kubelet: ProcessKubelet, backend: FakeBackend
) -> None:
    backend.config_maps[("default", "cfg")] = {"data": {"greeting.txt": "hi"}}
    backend.secrets[("default", "sec")] = {"data": {"token": "dG9r"}}  # "tok"
    pod = make_pod(
        "job",
        [
            {
                "name": "main",
                "image": "busybox",
                "command": ["sh", "-c", "cat /work/order /etc/cfg/greeting.txt /etc/sec/token > /work/result"],
                "volumeMounts": [
                    {"name": "work", "mountPath": "/work"},
                    {"name": "cfg", "mountPath": "/etc/cfg"},
                    {"name": "sec", "mountPath": "/etc/sec"},
                ],
            }
        ],
        restartPolicy="Never",
        initContainers=[
            {"name": f"init-{i}", "image": "busybox", "command": ["sh", "-c", f"echo {i} >> /work/order"],
             "volumeMounts": [{"name": "work", "mountPath": "/work"}]}
            for i in (1, 2)
        ],
        volumes=[
            {"name": "work", "emptyDir": {}},
            {"name": "cfg", "configMap": {"name": "cfg"}},
            {"name": "sec", "secret": {"secretName": "sec"}},
        ],
    )
    await kubelet.sync_pod(pod)
    await wait_for(lambda: (backend.statuses.get("job") or {}).get("phase") == "Succeeded")
    worker = kubelet.worker("default", "job")
    assert worker is not None
    result = (worker.pod_dir / "volumes" / "work" / "result").read_text()
    assert result == "1\n2\nhitok"
    status = backend.statuses["job"]
    assert [s["state"]["terminated"]["reason"] for s in status["initContainerStatuses"]] == ["Completed"] * 2
    assert status["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 0
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert ready["reason"] == "PodCompleted"


async def test_unknown_image_waits_with_err_image_pull_then_image_pull_backoff(
    fake_kubelet: Any, backend: FakeBackend
) -> None:
    kubelet, clock = fake_kubelet
    pod = make_pod("nope", [{"name": "c", "image": "registry.example/unknown:1"}])
    await kubelet.sync_pod(pod)
    await wait_for(lambda: _waiting_reason(backend, "nope") == "ErrImagePull")
    assert "registry.example/unknown:1" in state_of(backend, "nope")["state"]["waiting"]["message"]
    assert backend.statuses["nope"]["phase"] == "Pending"
    await clock.advance_and_settle(1.0)
    await wait_for(
        lambda: state_of(backend, "nope")["state"]["waiting"]["reason"] == "ImagePullBackOff"
    )
    # Registering the image makes the next pull succeed.
    kubelet.image_map.register("registry.example/unknown", cmd=["sh", "-c", "sleep 30"])
    await wait_for(lambda: "running" in state_of(backend, "nope")["state"], clock=clock, step=5.0)


async def test_crashing_container_goes_to_crash_loop_backoff_with_growing_delay(
    fake_kubelet: Any, backend: FakeBackend
) -> None:
    kubelet, clock = fake_kubelet
    pod = make_pod("crash", [{"name": "c", "image": "busybox", "command": ["sh", "-c", "echo boom; exit 3"]}])
    await kubelet.sync_pod(pod)
    seen: list[str] = []
    for restarts in (1, 2, 3):
        await wait_for(lambda r=restarts: state_of(backend, "crash").get("restartCount") == r and "waiting" in
                       state_of(backend, "crash")["state"])
        cs = state_of(backend, "crash")
        assert cs["state"]["waiting"]["reason"] == "CrashLoopBackOff"
        assert cs["lastState"]["terminated"]["exitCode"] == 3
        assert cs["lastState"]["terminated"]["reason"] == "Error"
        seen.append(cs["state"]["waiting"]["message"].split()[1])
        assert backend.statuses["crash"]["phase"] == "Running"
        await clock.advance_and_settle(clock.next_deadline() - clock.now())  # type: ignore[operator]
    assert seen == ["10s", "20s", "40s"]
    assert "back-off 10s restarting failed container=c pod=crash_default(uid-crash)" in [
        s["containerStatuses"][0]["state"].get("waiting", {}).get("message") for s in backend.history["crash"]
    ]
    assert kubelet.read_log("default", "crash", "c", previous=True) == b"boom\n"


async def test_on_failure_job_pod_restarts_until_it_succeeds(fake_kubelet: Any, backend: FakeBackend) -> None:
    kubelet, clock = fake_kubelet
    script = "n=$(cat /state/n 2>/dev/null || echo 0); n=$((n+1)); echo $n > /state/n; [ $n -ge 3 ]"
    pod = make_pod(
        "retry",
        [{"name": "c", "image": "busybox", "command": ["sh", "-c", script],
          "volumeMounts": [{"name": "state", "mountPath": "/state"}]}],
        restartPolicy="OnFailure",
        volumes=[{"name": "state", "emptyDir": {}}],
    )
    await kubelet.sync_pod(pod)
    await wait_for(lambda: (backend.statuses.get("retry") or {}).get("phase") == "Succeeded", clock=clock, step=5)
    assert state_of(backend, "retry")["restartCount"] == 2


async def test_liveness_failure_restarts_the_container(kubelet: ProcessKubelet, backend: FakeBackend,
                                                       tmp_path: Path) -> None:
    flag = tmp_path / "unhealthy"
    flag.write_text("x")
    pod = make_pod(
        "live",
        [
            {
                "name": "server",
                "image": "python",
                "command": ["python", WEBSERVER, "--port", "9000", "--unhealthy-file", str(flag)],
                "ports": [{"containerPort": 9000}],
                "livenessProbe": {"httpGet": {"path": "/health", "port": 9000}, "periodSeconds": 1,
                                  "failureThreshold": 2},
            }
        ],
        terminationGracePeriodSeconds=2,
    )
    await kubelet.sync_pod(pod)
    await wait_for(lambda: state_of(backend, "live").get("restartCount", 0) >= 1, timeout=30)
    flag.unlink()
    assert any(r == "Killing" and "failed liveness probe" in m for _, r, m in backend.events)


async def test_memory_limit_exceeded_is_oom_killed(kubelet: ProcessKubelet, backend: FakeBackend) -> None:
    hog = "import time; x = bytearray(300 * 1024 * 1024); x[::4096] = b'1' * len(x[::4096]); time.sleep(60)"
    pod = make_pod(
        "hog",
        [{"name": "c", "image": "python", "command": ["python", "-c", hog],
          "resources": {"limits": {"memory": "64Mi"}}}],
        restartPolicy="Never",
    )
    await kubelet.sync_pod(pod)
    await wait_for(lambda: (backend.statuses.get("hog") or {}).get("phase") == "Failed", timeout=30)
    term = state_of(backend, "hog")["state"]["terminated"]
    assert term["reason"] == "OOMKilled"
    assert term["exitCode"] == 137


async def test_deletion_sends_sigterm_then_sigkill_after_grace_and_leaves_no_process(
    fake_kubelet: Any, backend: FakeBackend
) -> None:
    kubelet, clock = fake_kubelet
    pod = make_pod(
        "stubborn",
        [{"name": "c", "image": "busybox", "command": ["sh", "-c", "trap '' TERM; sleep 300 & sleep 300 & wait"]}],
        terminationGracePeriodSeconds=20,
    )
    await kubelet.sync_pod(pod)
    await wait_for(lambda: "running" in state_of(backend, "stubborn").get("state", {}))
    worker = kubelet.worker("default", "stubborn")
    assert worker is not None
    pgid = int(state_of(backend, "stubborn")["containerID"].split("//")[1])
    await asyncio.sleep(0.3)  # let the shell fork its children (a process-level fact, not logic)
    members = [int(p) for p in os.listdir("/proc") if p.isdigit() and _pgid(int(p)) == pgid]
    assert len(members) >= 2
    deleting = {**pod, "metadata": {**pod["metadata"], "deletionTimestamp": "2026-01-01T00:00:00Z",
                                    "deletionGracePeriodSeconds": 20}}
    await kubelet.sync_pod(deleting)
    await wait_for(lambda: clock.sleepers == 1)  # the grace period timer
    await clock.advance_and_settle(5)
    assert _pids_alive([pgid]) == [pgid]  # SIGTERM ignored, grace not over
    await clock.advance_and_settle(16)
    await wait_for(lambda: backend.finalized == ["stubborn"])
    assert _pids_alive(members) == []
    assert pgid not in live_process_groups()
    assert state_of(backend, "stubborn")["state"]["terminated"]["exitCode"] == 137


def _pgid(pid: int) -> int:
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return -1


async def test_missing_secret_waits_with_create_container_config_error(
    kubelet: ProcessKubelet, backend: FakeBackend
) -> None:
    pod = make_pod("cfg", [{"name": "c", "image": "busybox", "command": ["sh", "-c", "echo $TOKEN; sleep 30"],
                            "env": [{"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "s", "key": "t"}}}]}])
    await kubelet.sync_pod(pod)
    await wait_for(lambda: state_of(backend, "cfg").get("state", {}).get("waiting", {}).get("reason")
                   == "CreateContainerConfigError")
    assert state_of(backend, "cfg")["state"]["waiting"]["message"] == 'secret "s" not found'
    backend.secrets[("default", "s")] = {"data": {"t": "eWVz"}}
    await wait_for(lambda: kubelet.read_log("default", "cfg") == b"yes\n" if "running" in
                   state_of(backend, "cfg").get("state", {}) else False)


async def test_shutdown_kills_every_process(backend: FakeBackend, images: Any, tmp_path: Path) -> None:
    kubelet = ProcessKubelet("node-1", backend, images, tmp_path)
    for i in range(2):
        await kubelet.sync_pod(make_pod(f"p{i}", [{"name": "c", "image": "busybox", "command": ["sleep", "300"]}]))
    await wait_for(lambda: all("running" in state_of(backend, f"p{i}").get("state", {}) for i in range(2)))
    pids = [int(state_of(backend, f"p{i}")["containerID"].split("//")[1]) for i in range(2)]
    await kubelet.shutdown(grace_seconds=1.0)
    assert _pids_alive(pids) == []
    assert not set(pids) & live_process_groups()


def test_python_image_runs_this_interpreter() -> None:
    from kreconcile.testing.kubelet import ImageMap
    from kreconcile.testing.kubelet.images import LaunchContext, LaunchSpec

    spec = ImageMap.with_defaults().lookup("python:3.12-slim")
    assert spec is not None and spec.transform is not None
    ctx = LaunchContext({}, {}, {}, {}, Path("/tmp"))
    assert spec.transform(LaunchSpec(("python3", "-V"), {}, "/"), ctx).argv == (PYTHON, "-V")


async def test_pre_stop_hook_runs_before_the_container_is_stopped(
    kubelet: ProcessKubelet, backend: FakeBackend
) -> None:
    pod = make_pod(
        "hooked",
        [{"name": "c", "image": "busybox", "command": ["sleep", "300"],
          "volumeMounts": [{"name": "work", "mountPath": "/work"}],
          "lifecycle": {"preStop": {"exec": {"command": ["sh", "-c", "echo bye > /work/bye"]}}}}],
        volumes=[{"name": "work", "emptyDir": {}}],
        terminationGracePeriodSeconds=2,
    )
    await kubelet.sync_pod(pod)
    await wait_for(lambda: "running" in state_of(backend, "hooked").get("state", {}))
    worker = kubelet.worker("default", "hooked")
    assert worker is not None
    await worker.stop()
    assert (worker.pod_dir / "volumes" / "work" / "bye").read_text() == "bye\n"


async def test_termination_message_comes_from_the_file_or_the_log_tail(
    kubelet: ProcessKubelet, backend: FakeBackend
) -> None:
    pod = make_pod(
        "msg",
        [
            {"name": "file", "image": "busybox",
             "command": ["sh", "-c", "echo 'weights missing' > /dev/termination-log; exit 3"]},
            {"name": "logs", "image": "busybox", "terminationMessagePolicy": "FallbackToLogsOnError",
             "command": ["sh", "-c", "echo line1; echo 'CUDA out of memory'; exit 1"]},
        ],
        restartPolicy="Never",
    )
    await kubelet.sync_pod(pod)
    await wait_for(lambda: (backend.statuses.get("msg") or {}).get("phase") == "Failed")
    assert state_of(backend, "msg", 0)["state"]["terminated"]["message"] == "weights missing\n"
    assert state_of(backend, "msg", 1)["state"]["terminated"]["message"] == "line1\nCUDA out of memory\n"


async def test_active_deadline_fails_the_pod_and_stops_its_containers(
    fake_kubelet: Any, backend: FakeBackend
) -> None:
    kubelet, clock = fake_kubelet
    pod = make_pod("late", [{"name": "c", "image": "busybox", "command": ["sleep", "300"]}],
                   activeDeadlineSeconds=30, terminationGracePeriodSeconds=1)
    await kubelet.sync_pod(pod)
    await wait_for(lambda: "running" in state_of(backend, "late").get("state", {}))
    await wait_for(lambda: (backend.statuses.get("late") or {}).get("phase") == "Failed", clock=clock, step=5)
    status = backend.statuses["late"]
    assert status["reason"] == "DeadlineExceeded"
    assert "terminated" in status["containerStatuses"][0]["state"]


async def test_host_network_pods_keep_their_declared_ports(kubelet: ProcessKubelet, backend: FakeBackend) -> None:
    pod = make_pod("hostnet", [{"name": "c", "image": "busybox", "command": ["sleep", "300"],
                                "ports": [{"containerPort": 18081}]}], hostNetwork=True)
    await kubelet.sync_pod(pod)
    await wait_for(lambda: "running" in state_of(backend, "hostnet").get("state", {}))
    assert kubelet.local_port("default", "hostnet", 18081) == 18081


async def test_a_missing_config_map_volume_is_retried_with_the_volume_managers_backoff(
    fake_kubelet: Any, backend: FakeBackend
) -> None:
    kubelet, clock = fake_kubelet
    pod = make_pod("mnt", [{"name": "c", "image": "busybox", "command": ["sleep", "30"],
                            "volumeMounts": [{"name": "cfg", "mountPath": "/cfg"}]}],
                   volumes=[{"name": "cfg", "configMap": {"name": "missing"}}])
    await kubelet.sync_pod(pod)
    await wait_for(lambda: backend.events)
    for _ in range(60):  # 30 s: mounts at 0, 0.5, 1.5, 3.5, 7.5, 15.5 s (next at 31.5), not every second
        await clock.advance_and_settle(0.5)
    mounts = [e for e in backend.events if e[1] == "FailedMount"]
    assert 5 <= len(mounts) <= 7, mounts
    assert mounts[0][0] == "Warning" and 'configmap "missing" not found' in mounts[0][2]
    backend.config_maps[("default", "missing")] = {"data": {"a": "1"}}
    await wait_for(lambda: "running" in state_of(backend, "mnt").get("state", {}), clock=clock, step=1.0)


def test_the_mount_retry_backoff_doubles_from_half_a_second_to_two_minutes() -> None:
    from kreconcile.testing.kubelet.backoff import RetryBackoff

    backoff = RetryBackoff()
    assert [backoff.next() for _ in range(10)] == [0.5, 1, 2, 4, 8, 16, 32, 64, 122, 122]
