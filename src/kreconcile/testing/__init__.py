"""kreconcile.testing: test tools for kreconcile users (our envtest).

- :class:`APIServer`: an in-process Kubernetes API server emulator with the real server's semantics.
- :mod:`kreconcile.testing.kubeconfig`: read a kubeconfig into an aiohttp session (server URL, CA, token/cert).
- :mod:`kreconcile.testing.pytest_plugin`: the ``apiserver`` and ``kubeconfig`` fixtures.
"""

from .apiserver import APIError, APIServer, Faults

__all__ = ["APIError", "APIServer", "Faults"]
