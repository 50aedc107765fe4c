"""A Kubernetes API server emulator for tests and local development (our envtest).

``APIServer`` serves the REST API of the built-in kinds our controllers use plus any CRD, with the real server's
semantics (see ``docs/conformance.md`` for the per-rule table and the conformance suite that proves it).
"""

from .errors import APIError
from .faults import Faults
from .server import APIServer, PodLogProvider

__all__ = ["APIError", "APIServer", "Faults", "PodLogProvider"]
