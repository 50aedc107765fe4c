"""The ``Provider`` protocol: how the machine controller turns a NodeClaim into a cloud machine and a Node.

One machine per NodeClaim, named after it (upstream's gpu-provisioner makes one AKS agent pool per NodeClaim).
Providers are idempotent by that name: ``create`` for a machine that exists returns it, ``delete`` for one that
is gone succeeds, so a restarted operator with a stale cache never launches a second machine.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class Machine:
    """A provider's machine behind one NodeClaim.

    Attributes:
        name: the NodeClaim's name (the provider's key).
        provider_id: the Node's ``spec.providerID`` once known (e.g. ``azure:///subscriptions/.../0``).
        instance_type: the VM size / SKU.
        state: ``"Creating"``, ``"Running"``, ``"Deleting"`` or ``"Failed"``.
        node_name: the Node that registered for it (None until it joined).
        capacity: the Node's capacity as Kubernetes quantities (``{"nvidia.com/gpu": "1", "cpu": "6"}``).
        message: the provider's words for ``Failed`` (or progress); empty otherwise.
    """

    name: str
    provider_id: str
    instance_type: str
    state: str
    node_name: str | None = None
    capacity: Mapping[str, str] = field(default_factory=dict)
    message: str = ""


class ProviderError(Exception):
    """A cloud error the controller surfaces in the NodeClaim's conditions.

    Attributes:
        reason: CamelCase condition reason (``QuotaExceeded``, ``InstanceTypeUnavailable``, ``Throttled``...).
        retry_after: seconds to wait before trying again (None: the controller's back-off decides).
        retryable: False when retrying cannot help until the NodeClaim changes (e.g. an unknown instance type).
    """

    reason = "ProviderError"
    retryable = True

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class QuotaExceededError(ProviderError):
    """The subscription/account has no quota left for this VM family (retried every minute)."""

    reason = "QuotaExceeded"


class InstanceTypeUnavailableError(ProviderError):
    """The instance type does not exist in this region/cloud; retrying cannot help."""

    reason = "InstanceTypeUnavailable"
    retryable = False


class ThrottledError(ProviderError):
    """The cloud API asked us to slow down (HTTP 429); ``retry_after`` carries its Retry-After."""

    reason = "Throttled"


class MachineNotFoundError(ProviderError):
    """The provider has no machine by that name."""

    reason = "MachineNotFound"


class Provider(Protocol):
    """Creates, reads, lists and deletes machines, one per NodeClaim."""

    name: str
    """Short provider name used in logs and metrics (``"azure"``, ``"local"``)."""

    async def create(self, nodeclaim: Mapping[str, Any]) -> Machine:
        """Start (or return the existing) machine for ``nodeclaim``. Returns before the node has joined.

        Raises:
            ProviderError: quota, unknown instance type, throttling or any other cloud failure.
        """
        ...

    async def get(self, name: str) -> Machine:
        """The machine named ``name``.

        Raises:
            MachineNotFoundError: there is none.
            ProviderError: the cloud could not be asked.
        """
        ...

    async def delete(self, name: str) -> None:
        """Delete the machine ``name`` (and deregister its Node); succeeds if it is already gone.

        Raises:
            ProviderError: the cloud refused or failed.
        """
        ...

    async def list(self) -> list[Machine]:
        """Every machine this provider manages (for the orphan sweep)."""
        ...
