"""Node provisioning: the ``Provider`` protocol and its implementations (``local``; ``azure`` for AKS)."""

from kaito.provisioner.base import (
    InstanceTypeUnavailableError,
    Machine,
    MachineNotFoundError,
    Provider,
    ProviderError,
    QuotaExceededError,
    ThrottledError,
)
from kaito.provisioner.local import LocalProvider

__all__ = [
    "InstanceTypeUnavailableError",
    "LocalProvider",
    "Machine",
    "MachineNotFoundError",
    "Provider",
    "ProviderError",
    "QuotaExceededError",
    "ThrottledError",
]
