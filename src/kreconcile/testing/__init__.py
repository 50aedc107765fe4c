"""kreconcile.testing: test tools for kreconcile users (our envtest).

- :class:`APIServer`: an in-process Kubernetes API server emulator with the real server's semantics.
- :class:`LocalCluster`: the emulator (or a real kube-apiserver) plus workload controllers, a scheduler and a
  process kubelet, so pods run as local processes (imported lazily: it pulls in the whole framework).
- :mod:`kreconcile.testing.kubeconfig`: read a kubeconfig into an aiohttp session (server URL, CA, token/cert).
- :mod:`kreconcile.testing.pytest_plugin`: the ``apiserver`` and ``kubeconfig`` fixtures.
- :mod:`kreconcile.testing.fakes`: in-memory informers, cache and manager for unit tests of controllers.
"""

from typing import Any

from .apiserver import APIError, APIServer, Faults

__all__ = ["APIError", "APIServer", "Faults", "LocalCluster"]


def __getattr__(name: str) -> Any:
    if name == "LocalCluster":
        from .localcluster import LocalCluster

        return LocalCluster
    raise AttributeError(f"module 'kreconcile.testing' has no attribute {name!r}")
