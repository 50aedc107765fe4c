"""HTTP, TCP and exec probes, and the threshold bookkeeping around them.

Defaults are the API's (``core/v1.Probe``): ``initialDelaySeconds`` 0, ``periodSeconds`` 10, ``timeoutSeconds`` 1,
``successThreshold`` 1, ``failureThreshold`` 3. An HTTP probe succeeds on a status in [200, 400) (the kubelet's
rule); a TCP probe when the connection opens; an exec probe when the command exits 0. Probes reach the container
on 127.0.0.1 at the local port mapped from the probe's ``port``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp

from kreconcile.testing.kubelet.images import LaunchSpec
from kreconcile.testing.kubelet.ports import resolve_port


@dataclass(frozen=True)
class ProbeConfig:
    """A probe's timing, with the API defaults."""

    initial_delay: float = 0.0
    period: float = 10.0
    timeout: float = 1.0
    success_threshold: int = 1
    failure_threshold: int = 3

    @classmethod
    def of(cls, probe: Mapping[str, Any]) -> ProbeConfig:
        """Read the timing fields of a ``core/v1.Probe`` dict (missing → defaults)."""
        return cls(
            initial_delay=float(probe.get("initialDelaySeconds", 0)),
            period=float(probe.get("periodSeconds", 10)),
            timeout=float(probe.get("timeoutSeconds", 1)),
            success_threshold=int(probe.get("successThreshold", 1)),
            failure_threshold=int(probe.get("failureThreshold", 3)),
        )


@dataclass(frozen=True)
class ProbeResult:
    """One probe attempt: ``ok`` and, on failure, the kubelet-style message (``"HTTP probe failed with ..."``)."""

    ok: bool
    message: str = ""


async def run_probe(
    probe: Mapping[str, Any], container: Mapping[str, Any], ports: Mapping[int, int], launch: LaunchSpec
) -> ProbeResult:
    """Run one attempt of ``probe`` (httpGet, tcpSocket, exec or grpc-as-tcp) against the container.

    ``launch`` supplies env and cwd for exec probes. The attempt is bounded by ``timeoutSeconds`` of real time
    (it measures how long real I/O takes, so it is not on the kubelet's injectable clock).
    """
    timeout = float(probe.get("timeoutSeconds", 1))
    try:
        async with asyncio.timeout(timeout):
            if "httpGet" in probe:
                return await _http(probe["httpGet"], container, ports)
            if "tcpSocket" in probe:
                return await _tcp(resolve_port(probe["tcpSocket"]["port"], container, ports))
            if "grpc" in probe:
                return await _tcp(resolve_port(probe["grpc"]["port"], container, ports))
            if "exec" in probe:
                return await _exec(list(probe["exec"].get("command") or []), launch)
    except TimeoutError:
        return ProbeResult(False, f"probe timed out after {timeout:g}s")
    return ProbeResult(False, "probe has no handler: set httpGet, tcpSocket, grpc or exec")


async def _http(spec: Mapping[str, Any], container: Mapping[str, Any], ports: Mapping[int, int]) -> ProbeResult:
    port = resolve_port(spec.get("port", 80), container, ports)
    path = spec.get("path") or "/"
    if not path.startswith("/"):
        path = "/" + path
    scheme = str(spec.get("scheme", "HTTP")).lower()
    headers = {h["name"]: h.get("value", "") for h in spec.get("httpHeaders") or []}
    headers.setdefault("User-Agent", "kube-probe/1.30")
    url = f"{scheme}://127.0.0.1:{port}{path}"
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.get(url, headers=headers, ssl=False, allow_redirects=False) as resp,
        ):
            if 200 <= resp.status < 400:
                return ProbeResult(True)
            return ProbeResult(False, f"HTTP probe failed with statuscode: {resp.status}")
    except (aiohttp.ClientError, OSError) as exc:
        return ProbeResult(False, f'Get "{url}": {exc}')


async def _tcp(port: int) -> ProbeResult:
    try:
        _reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError as exc:
        return ProbeResult(False, f"dial tcp 127.0.0.1:{port}: connect: {exc.strerror or exc}")
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return ProbeResult(True)


async def _exec(command: list[str], launch: LaunchSpec) -> ProbeResult:
    if not command:
        return ProbeResult(False, "exec probe has an empty command")
    try:
        proc = await asyncio.create_subprocess_exec(
            *command,
            env=dict(launch.env),
            cwd=launch.cwd,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
        )
    except OSError as exc:
        return ProbeResult(False, f"exec probe could not start: {exc}")
    try:
        out, _ = await proc.communicate()
    except asyncio.CancelledError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        raise
    if proc.returncode == 0:
        return ProbeResult(True)
    return ProbeResult(False, f"command exited with {proc.returncode}: {out.decode(errors='replace')[-200:]}")


class ProbeState:
    """Consecutive success/failure counting: the result flips only after the threshold in a row."""

    def __init__(self, config: ProbeConfig, initial: bool) -> None:
        self.config = config
        self.result = initial
        self.failures = 0
        """Consecutive failed attempts so far."""
        self._successes = 0

    def record(self, ok: bool) -> bool:
        """Count one attempt; returns True when the overall result changed."""
        before = self.result
        if ok:
            self.failures = 0
            self._successes += 1
            if self._successes >= self.config.success_threshold:
                self.result = True
        else:
            self._successes = 0
            self.failures += 1
            if self.failures >= self.config.failure_threshold:
                self.result = False
        return self.result != before
