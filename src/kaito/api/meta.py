"""Kubernetes meta types the kaito API builds on: the model base class, ``ObjectMeta``, ``LabelSelector`` (with
matching) and ``metav1.Condition``.

Wire names are Kubernetes camelCase (``matchLabels``); Python attributes are snake_case (``match_labels``).
Serialise with :meth:`KubeModel.to_wire` to get the dict a user would write.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel


class KubeModel(BaseModel):
    """Base of every kaito API model: camelCase aliases, unknown fields rejected (kubectl --validate=strict).

    Construct from wire dicts with ``Model.model_validate(d)``; both camelCase and snake_case names are accepted.
    """

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    def to_wire(self) -> dict[str, Any]:
        """The object as the API server stores it: camelCase keys, unset (None) fields left out."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


class ObjectMeta(KubeModel):
    """Standard object metadata. Only the fields kaito reads are typed; server-set fields pass through."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="allow")

    name: str | None = None
    generate_name: str | None = None
    namespace: str | None = None
    uid: str | None = None
    resource_version: str | None = None
    generation: int | None = None
    labels: dict[str, str] | None = None
    annotations: dict[str, str] | None = None
    finalizers: list[str] | None = None
    deletion_timestamp: str | None = None
    creation_timestamp: str | None = None


class LabelSelectorRequirement(KubeModel):
    """One ``matchExpressions`` entry: ``key`` ``operator`` ``values``."""

    key: str = Field(description="The label key the selector applies to.")
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"] = Field(description="In, NotIn, Exists or DoesNotExist.")
    values: list[str] | None = Field(
        default=None, description="Values for In/NotIn (non-empty); must be empty for Exists/DoesNotExist."
    )


class LabelSelector(KubeModel):
    """A label query over nodes; ``matchLabels`` and ``matchExpressions`` are ANDed (metav1.LabelSelector)."""

    match_labels: dict[str, str] | None = Field(
        default=None, description="Labels a node must carry with exactly these values."
    )
    match_expressions: list[LabelSelectorRequirement] | None = Field(
        default=None, description="Label requirements a node must satisfy, all of them."
    )

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        """Whether ``labels`` satisfy this selector (an empty selector matches everything, as in Kubernetes)."""
        return selector_matches(self.to_wire(), labels)


def selector_matches(selector: Mapping[str, Any] | None, labels: Mapping[str, str] | None) -> bool:
    """Whether ``labels`` satisfy the wire-form ``selector`` (``{"matchLabels": ..., "matchExpressions": ...}``).

    ``None`` or ``{}`` matches everything. Operators follow metav1.LabelSelector semantics: ``In`` needs the key
    with one of ``values``; ``NotIn`` matches when the key is absent or its value is not listed; ``Exists`` /
    ``DoesNotExist`` test only the key. Unknown operators never match.
    """
    labels = labels or {}
    if not selector:
        return True
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr.get("key"), expr.get("operator"), list(expr.get("values") or [])
        present = key in labels
        if op == "In":
            ok = present and labels[key] in values
        elif op == "NotIn":
            ok = not present or labels[key] not in values
        elif op == "Exists":
            ok = present
        elif op == "DoesNotExist":
            ok = not present
        else:
            ok = False
        if not ok:
            return False
    return True


class Condition(KubeModel):
    """``metav1.Condition``: the latest observation of one aspect of an object's state."""

    type: str = Field(description="Condition type in CamelCase, e.g. ResourceReady.")
    status: Literal["True", "False", "Unknown"] = Field(description="True, False or Unknown.")
    reason: str | None = Field(default=None, description="CamelCase reason for the last transition.")
    message: str | None = Field(default=None, description="Human-readable details of the last transition.")
    last_transition_time: str | None = Field(default=None, description="RFC 3339 time the status last changed.")
    observed_generation: int | None = Field(
        default=None, description="metadata.generation the condition was computed from."
    )
