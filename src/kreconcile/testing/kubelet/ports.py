"""A free local port per ``containerPort``, and how the process learns it.

All pods share the host's loopback, so two replicas cannot both listen on 5000. The kubelet allocates a free
127.0.0.1 port for every declared ``containerPort`` (kept across restarts of the container) and tells the process
in three ways:

1. environment: ``KRECONCILE_PORT_<containerPort>=<local>`` for each port, ``KRECONCILE_PORTS`` as JSON
   (``{"5000": 41234}``), and ``PORT`` = the first port's local port (the Heroku/Cloud Run convention);
2. command line: in ``command``/``args``, a value equal to a declared containerPort that follows a flag whose name
   contains ``port`` is replaced (``--port 5000``, ``--port=5000``, ``-p 5000``, ``--http-port=5000``);
   so is an ``env`` value equal to a containerPort when the variable's name contains ``PORT``;
3. an :class:`~kreconcile.testing.kubelet.images.ImageSpec` ``transform`` receives the map and may put it anywhere.

Probes and Service proxies address the local port; ``status.podIP`` is ``127.0.0.1``.
"""

from __future__ import annotations

import json
import re
import socket
from collections.abc import Mapping, Sequence
from typing import Any

_PORT_FLAG = re.compile(r"^-{1,2}[A-Za-z0-9_.-]*port[A-Za-z0-9_.-]*$|^-p$", re.IGNORECASE)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now (bind to port 0, read it back, close)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def declared_ports(container: Mapping[str, Any]) -> list[tuple[str | None, int]]:
    """``(name, containerPort)`` for each entry of ``container.ports`` (TCP and UDP alike)."""
    out: list[tuple[str | None, int]] = []
    for entry in container.get("ports") or []:
        out.append((entry.get("name"), int(entry["containerPort"])))
    return out


def rewrite_argv(argv: Sequence[str], ports: Mapping[int, int]) -> list[str]:
    """``argv`` with containerPorts after port flags replaced by their local ports (see module docstring)."""
    out = list(argv)
    for i, token in enumerate(out):
        flag, eq, value = token.partition("=")
        if eq and _PORT_FLAG.match(flag) and value.isdigit() and int(value) in ports:
            out[i] = f"{flag}={ports[int(value)]}"
        elif i > 0 and _PORT_FLAG.match(argv[i - 1]) and token.isdigit() and int(token) in ports:
            out[i] = str(ports[int(token)])
    return out


def port_env(env: Mapping[str, str], ports: Mapping[int, int]) -> dict[str, str]:
    """``env`` plus the ``KRECONCILE_PORT*``/``PORT`` variables, with ``*PORT*`` values mapped to local ports."""
    out = dict(env)
    for name, value in env.items():
        if "PORT" in name.upper() and value.isdigit() and int(value) in ports:
            out[name] = str(ports[int(value)])
    if ports:
        out["KRECONCILE_PORTS"] = json.dumps({str(k): v for k, v in ports.items()})
        for container_port, local in ports.items():
            out[f"KRECONCILE_PORT_{container_port}"] = str(local)
        out.setdefault("PORT", str(next(iter(ports.values()))))
    return out


def resolve_port(port: object, container: Mapping[str, Any], ports: Mapping[int, int]) -> int:
    """A probe's ``port`` (number or named port) → the local port to connect to.

    A number that is not a declared containerPort is used as is (the process listens there itself).

    Raises:
        ValueError: a named port the container does not declare.
    """
    if isinstance(port, str) and not port.isdigit():
        for name, number in declared_ports(container):
            if name == port:
                return ports.get(number, number)
        raise ValueError(f"probe port {port!r} is not a named port of container {container.get('name')!r}")
    number = int(port)  # type: ignore[call-overload]
    return ports.get(number, number)
