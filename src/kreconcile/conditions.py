"""``metav1.Condition`` lists in ``status.conditions``, with apimachinery's ``meta.SetStatusCondition`` semantics.

A condition is a dict ``{"type", "status", "observedGeneration", "lastTransitionTime", "reason", "message"}``.
:func:`set_condition` changes ``lastTransitionTime`` only when ``status`` flips (True/False/Unknown), and always
updates ``reason``, ``message`` and ``observedGeneration``; it reports whether anything changed so callers write
status only when needed. Times are RFC 3339 in UTC with second precision (``2026-01-01T00:00:00Z``), as
``metav1.Time`` serialises them. Validation follows the CRD schema of ``metav1.Condition``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

STATUSES = ("True", "False", "Unknown")
"""Allowed values of ``status``."""

_TYPE_RE = re.compile(
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$"
)
_REASON_RE = re.compile(r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$")


def format_time(now: float | datetime) -> str:
    """RFC 3339 UTC, whole seconds: ``now`` is epoch seconds (e.g. ``clock.wall()``) or a datetime (naive = UTC)."""
    if isinstance(now, datetime):
        dt = now if now.tzinfo else now.replace(tzinfo=UTC)
    else:
        dt = datetime.fromtimestamp(now, UTC)
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _validate(type_: str, status: str, reason: str, message: str, observed_generation: int | None) -> None:
    if not isinstance(type_, str) or len(type_) > 316 or not _TYPE_RE.match(type_):
        raise ValueError(
            f"condition type {type_!r} is invalid; use a CamelCase name such as 'Ready' or 'kaito.sh/ResourceReady' "
            f"(at most 316 characters)"
        )
    if status not in STATUSES:
        raise ValueError(f"condition {type_}: status {status!r} must be one of 'True', 'False', 'Unknown'")
    if not isinstance(reason, str) or len(reason) > 1024 or not _REASON_RE.match(reason):
        raise ValueError(
            f"condition {type_}: reason {reason!r} must be a non-empty CamelCase identifier (letters, digits, '_', "
            f"',' or ':', starting with a letter, at most 1024 characters), e.g. 'NodeClaimQuotaExceeded'"
        )
    if not isinstance(message, str) or len(message) > 32768:
        raise ValueError(f"condition {type_}: message must be a string of at most 32768 characters")
    if observed_generation is not None and (not isinstance(observed_generation, int) or observed_generation < 0):
        raise ValueError(f"condition {type_}: observed_generation must be an integer >= 0 (metadata.generation)")


def set_condition(
    conditions: list[dict[str, Any]],
    type: str,
    status: str,
    reason: str,
    message: str = "",
    observed_generation: int | None = None,
    now: float | datetime | None = None,
) -> bool:
    """Add or update the condition ``type`` in ``conditions`` (in place); return True if anything changed.

    ``lastTransitionTime`` is set to ``now`` for a new condition or when ``status`` differs from the stored one,
    and kept otherwise. ``reason``, ``message`` and ``observedGeneration`` are always written. ``now`` is epoch
    seconds or a datetime (default: the current time); pass ``clock.wall()`` for testable timestamps.

    Raises:
        ValueError: malformed type, status not True/False/Unknown, reason not CamelCase, message too long, or
            negative observed_generation.
    """
    _validate(type, status, reason, message, observed_generation)
    stamp = format_time(now if now is not None else datetime.now(UTC))
    existing = get_condition(conditions, type)
    if existing is None:
        cond: dict[str, Any] = {"type": type, "status": status}
        if observed_generation is not None:
            cond["observedGeneration"] = observed_generation
        cond.update({"lastTransitionTime": stamp, "reason": reason, "message": message})
        conditions.append(cond)
        return True
    changed = False
    if existing.get("status") != status:
        existing["status"] = status
        existing["lastTransitionTime"] = stamp
        changed = True
    elif not existing.get("lastTransitionTime"):
        existing["lastTransitionTime"] = stamp
        changed = True
    for key, value in (("reason", reason), ("message", message)):
        if existing.get(key) != value:
            existing[key] = value
            changed = True
    if observed_generation is not None and existing.get("observedGeneration") != observed_generation:
        existing["observedGeneration"] = observed_generation
        changed = True
    return changed


def get_condition(conditions: list[dict[str, Any]] | None, type: str) -> dict[str, Any] | None:
    """The condition of ``type`` (the stored dict itself), or None."""
    for cond in conditions or ():
        if isinstance(cond, Mapping) and cond.get("type") == type:
            return cond
    return None


def is_true(conditions: list[dict[str, Any]] | None, type: str) -> bool:
    """True if condition ``type`` exists with status "True"."""
    cond = get_condition(conditions, type)
    return cond is not None and cond.get("status") == "True"


def is_false(conditions: list[dict[str, Any]] | None, type: str) -> bool:
    """True if condition ``type`` exists with status "False" (missing is neither true nor false)."""
    cond = get_condition(conditions, type)
    return cond is not None and cond.get("status") == "False"


def is_current(conditions: list[dict[str, Any]] | None, type: str, generation: int) -> bool:
    """True if condition ``type`` exists and was computed for ``generation`` (its observedGeneration)."""
    cond = get_condition(conditions, type)
    return cond is not None and cond.get("observedGeneration") == generation


def remove_condition(conditions: list[dict[str, Any]], type: str) -> bool:
    """Remove condition ``type`` in place; True if it was there."""
    for i, cond in enumerate(conditions):
        if isinstance(cond, Mapping) and cond.get("type") == type:
            del conditions[i]
            return True
    return False
