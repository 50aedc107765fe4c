"""Group/version/kind and group/version/resource names, the keys every other module is indexed by."""

from __future__ import annotations

from typing import NamedTuple


class GVK(NamedTuple):
    """A GroupVersionKind. The core group is the empty string (``GVK("", "v1", "Pod")``)."""

    group: str
    version: str
    kind: str

    @property
    def api_version(self) -> str:
        """``"v1"`` for the core group, else ``"group/version"`` (the object's ``apiVersion`` field)."""
        return f"{self.group}/{self.version}" if self.group else self.version

    @classmethod
    def from_api_version(cls, api_version: str, kind: str) -> GVK:
        """Split an ``apiVersion`` such as ``"apps/v1"`` or ``"v1"`` and pair it with ``kind``."""
        group, _, version = api_version.rpartition("/")
        return cls(group, version, kind)

    @classmethod
    def of(cls, obj: dict[str, object]) -> GVK:
        """The GVK named by an object's ``apiVersion`` and ``kind``.

        Raises:
            ValueError: either field is missing or not a string.
        """
        api_version, kind = obj.get("apiVersion"), obj.get("kind")
        if not isinstance(api_version, str) or not isinstance(kind, str):
            raise ValueError("object has no apiVersion/kind; set both (e.g. apiVersion: v1, kind: ConfigMap)")
        return cls.from_api_version(api_version, kind)

    def __str__(self) -> str:
        return f"{self.api_version}, Kind={self.kind}"


class GVR(NamedTuple):
    """A GroupVersionResource: the plural lower-case resource name used in REST paths."""

    group: str
    version: str
    resource: str

    @property
    def api_version(self) -> str:
        """``"v1"`` for the core group, else ``"group/version"``."""
        return f"{self.group}/{self.version}" if self.group else self.version

    def __str__(self) -> str:
        return f"{self.api_version}/{self.resource}"
