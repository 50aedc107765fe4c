"""Kubernetes resource quantities (``"500m"``, ``"1Gi"``, ``"2"``) as exact numbers, and a pod's resource requests.

The grammar and suffixes are those of ``k8s.io/apimachinery/pkg/api/resource.Quantity``: binary suffixes
``Ki Mi Gi Ti Pi Ei`` (powers of 1024), decimal suffixes ``n u m k M G T P E`` (powers of 1000) and decimal
exponents (``1e3``, ``1E3``). Values are :class:`fractions.Fraction` so ``"100m"`` cpu is exactly 1/10.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from fractions import Fraction
from typing import Any

_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {
    "n": Fraction(1, 10**9),
    "u": Fraction(1, 10**6),
    "m": Fraction(1, 10**3),
    "": Fraction(1),
    "k": Fraction(10**3),
    "M": Fraction(10**6),
    "G": Fraction(10**9),
    "T": Fraction(10**12),
    "P": Fraction(10**15),
    "E": Fraction(10**18),
}
_QUANTITY = re.compile(r"^([+-]?(?:\d+\.?\d*|\.\d+))(?:([eE][+-]?\d+)|(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]))?$")

DEFAULT_ALLOCATABLE_PODS = 110
"""Pods a node accepts when its ``allocatable`` has no ``pods`` entry (the kubelet's ``--max-pods`` default)."""


def parse_quantity(value: object, field: str = "quantity") -> Fraction:
    """Parse a Kubernetes quantity into an exact number of base units (cores, bytes, devices).

    Args:
        value: a string such as ``"250m"``, ``"1.5Gi"``, ``"1e3"``, or an int/float.
        field: the field path named in the error message (e.g. ``spec.containers[0].resources.limits.memory``).

    Raises:
        ValueError: the value is not a quantity; the message names ``field`` and shows valid forms.
    """
    if isinstance(value, bool):
        raise ValueError(f"{field}: {value!r} is not a quantity; use a number with an optional suffix like 500m or 1Gi")
    if isinstance(value, int):
        return Fraction(value)
    if isinstance(value, float):
        return Fraction(value).limit_denominator(10**9)
    if not isinstance(value, str):
        raise ValueError(f"{field}: {value!r} is not a quantity; use a number with an optional suffix like 500m or 1Gi")
    match = _QUANTITY.match(value.strip())
    if not match:
        raise ValueError(f"{field}: {value!r} is not a quantity; use a number with an optional suffix like 500m or 1Gi")
    number, exponent, suffix = match.groups()
    base = Fraction(number)
    if exponent:
        return base * Fraction(10) ** int(exponent[1:])
    if suffix in _BINARY:
        return base * _BINARY[suffix]
    return base * _DECIMAL[suffix or ""]


def container_requests(container: Mapping[str, Any], index: int = 0, kind: str = "containers") -> dict[str, Fraction]:
    """A container's effective requests: ``resources.requests``, falling back to ``resources.limits`` per resource.

    The fallback is the API server's defaulting (a limit without a request requests the limit), applied here too
    so the scheduler agrees with a real cluster even when the server in use does not default.
    """
    resources = container.get("resources") or {}
    limits = resources.get("limits") or {}
    requests = resources.get("requests") or {}
    out: dict[str, Fraction] = {}
    for name in set(limits) | set(requests):
        raw = requests.get(name, limits.get(name))
        out[name] = parse_quantity(raw, f"spec.{kind}[{index}].resources.requests.{name}")
    return out


def pod_requests(pod: Mapping[str, Any]) -> dict[str, Fraction]:
    """A pod's resource requests as the scheduler counts them.

    ``max(sum over containers, max over each init container) + spec.overhead``, per resource (the rule of the
    scheduler's ``NodeResourcesFit`` plugin, ``computePodResourceRequest``).
    """
    spec = pod.get("spec") or {}
    total: dict[str, Fraction] = {}
    for i, container in enumerate(spec.get("containers") or []):
        for name, qty in container_requests(container, i).items():
            total[name] = total.get(name, Fraction(0)) + qty
    for i, container in enumerate(spec.get("initContainers") or []):
        for name, qty in container_requests(container, i, "initContainers").items():
            total[name] = max(total.get(name, Fraction(0)), qty)
    for name, raw in (spec.get("overhead") or {}).items():
        total[name] = total.get(name, Fraction(0)) + parse_quantity(raw, f"spec.overhead.{name}")
    return total


def memory_limit_bytes(container: Mapping[str, Any]) -> int | None:
    """``resources.limits.memory`` in bytes (rounded up), or None when the container sets no memory limit."""
    raw = ((container.get("resources") or {}).get("limits") or {}).get("memory")
    if raw is None:
        return None
    return math.ceil(parse_quantity(raw, "resources.limits.memory"))


def format_quantity(value: Fraction) -> str:
    """A compact string for a quantity: integers as is, fractions of a unit in milli-units (``"1500m"``)."""
    if value.denominator == 1:
        return str(value.numerator)
    return f"{math.ceil(value * 1000)}m"
