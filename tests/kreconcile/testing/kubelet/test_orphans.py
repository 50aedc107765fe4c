"""No container outlives the kubelet's process: Ctrl-C (atexit) and a hard kill (PR_SET_PDEATHSIG)."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

import pytest

from .conftest import wait_for

pytestmark = pytest.mark.slow

SCRIPT = """
import asyncio, sys
sys.path.insert(0, {tests!r})
from conftest import FakeBackend, make_pod
from kreconcile.testing.kubelet import ImageMap, ProcessKubelet

async def main():
    backend = FakeBackend()
    kubelet = ProcessKubelet("node-1", backend, ImageMap.with_defaults(), {data!r})
    await kubelet.sync_pod(make_pod("p", [{{"name": "c", "image": "busybox", "command": {command!r}}}]))
    while "running" not in (backend.statuses.get("p", {{}}).get("containerStatuses") or [{{}}])[0].get("state", {{}}):
        await asyncio.sleep(0.05)
    print("PID", backend.statuses["p"]["containerStatuses"][0]["containerID"].split("//")[1], flush=True)
    await asyncio.sleep(300)  # no cleanup of our own: only the safety nets may act

asyncio.run(main())
"""


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2] != "Z"


async def _start(tmp_path: Path, command: list[str]) -> tuple[asyncio.subprocess.Process, int]:
    script = SCRIPT.format(tests=str(Path(__file__).parent), data=str(tmp_path), command=command)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", script, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL
    )
    assert proc.stdout is not None
    while True:
        line = (await asyncio.wait_for(proc.stdout.readline(), timeout=30)).decode()
        if not line:
            raise AssertionError("the kubelet script exited before its container started")
        if line.startswith("PID "):
            return proc, int(line.split()[1])


async def test_ctrl_c_of_the_kubelet_process_kills_its_containers(tmp_path: Path) -> None:
    proc, pid = await _start(tmp_path, ["sh", "-c", "sleep 300 & wait"])
    assert _alive(pid)
    proc.send_signal(signal.SIGINT)
    await asyncio.wait_for(proc.wait(), timeout=30)
    await wait_for(lambda: not _alive(pid), timeout=10)


async def test_hard_kill_of_the_kubelet_process_kills_the_container(tmp_path: Path) -> None:
    proc, pid = await _start(tmp_path, ["sleep", "300"])
    assert _alive(pid)
    proc.kill()
    await proc.wait()
    await wait_for(lambda: not _alive(pid), timeout=10)
