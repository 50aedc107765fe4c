"""What the process kubelet reports about its node in ``status.nodeInfo`` (``NodeSystemInfo``).

A real kubelet fills it on registration and on every status sync (``setters.VersionInfo`` and
``setters.MachineInfo`` in ``pkg/kubelet/nodestatus/setters.go``); ``kubectl get nodes`` shows ``kubeletVersion``
as VERSION and, with ``-o wide``, ``osImage``, ``kernelVersion`` and ``containerRuntimeVersion``.
"""

from __future__ import annotations

import platform
from pathlib import Path

from kreconcile.testing.apiserver.discovery import version_info

KUBELET_VERSION = str(version_info()["gitVersion"])
"""The Kubernetes version the emulated API server reports in ``/version`` (``v1.30.0-kreconcile``)."""
CONTAINER_RUNTIME_VERSION = "process://kreconcile"
"""``<runtime>://<version>`` as CRI runtimes report it (``containerd://1.7.2``): pods run as local processes."""


def architecture() -> str:
    """``GOARCH`` of this machine (``amd64``, ``arm64``)."""
    machine = platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine)


def _os_image() -> str:
    """``PRETTY_NAME`` of ``/etc/os-release``, as the kubelet reads it (cadvisor), else the platform string."""
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return platform.platform()


def node_info(node_name: str) -> dict[str, str]:
    """``status.nodeInfo`` of node ``node_name`` served by a process kubelet on this machine."""
    return {
        "kubeletVersion": KUBELET_VERSION,
        "kubeProxyVersion": "",
        "containerRuntimeVersion": CONTAINER_RUNTIME_VERSION,
        "operatingSystem": platform.system().lower() or "linux",
        "architecture": architecture(),
        "osImage": _os_image(),
        "kernelVersion": platform.release(),
        "machineID": node_name,
        "systemUUID": node_name,
        "bootID": node_name,
    }
