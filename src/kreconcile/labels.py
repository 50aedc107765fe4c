"""Label selectors: matching, the ``metav1.LabelSelector`` dict form and the string form of ``?labelSelector=``.

Semantics follow apimachinery's ``pkg/labels`` and ``metav1.LabelSelectorAsSelector``:

* a requirement ``key In (v1, v2)`` matches when the label exists with one of the values; ``NotIn`` matches when the
  label is absent or has none of the values; ``Exists``/``DoesNotExist`` look only at the key; ``Gt``/``Lt`` (used by
  node affinity) compare the label's integer value;
* a selector matches when every requirement does, so the empty selector (``{}``) matches everything, while a
  missing selector (``None``) matches nothing (:data:`NOTHING`);
* the string form is a comma-separated list of ``k=v``, ``k==v``, ``k!=v``, ``k in (a,b)``, ``k notin (a,b)``,
  ``k`` (exists), ``!k`` (does not exist), ``k>1``, ``k<1``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt")
"""Operators of ``matchExpressions`` (``Gt``/``Lt`` only appear in node selector terms)."""

_NAME = r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"
_KEY_RE = re.compile(rf"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?{_NAME}$")
_VALUE_RE = re.compile(rf"^({_NAME})?$")


def _check_key(key: str, where: str) -> None:
    if not isinstance(key, str) or not _KEY_RE.match(key) or len(key.partition("/")[2] or key) > 63:
        raise ValueError(
            f"{where}: {key!r} is not a valid label key; use an optional DNS-subdomain prefix and '/' followed by "
            f"a name of at most 63 characters [A-Za-z0-9-_.] that starts and ends alphanumeric (e.g. 'app' or "
            f"'kaito.sh/workspace')"
        )


def _check_value(value: str, where: str) -> None:
    if not isinstance(value, str) or not _VALUE_RE.match(value):
        raise ValueError(
            f"{where}: {value!r} is not a valid label value; use at most 63 characters [A-Za-z0-9-_.] that start "
            f"and end alphanumeric (or the empty string)"
        )


@dataclass(frozen=True, slots=True)
class Requirement:
    """One ``key operator values`` clause; ``values`` is stored sorted and de-duplicated.

    Raises:
        ValueError: the key or a value is malformed, the operator is unknown, ``In``/``NotIn`` has no values,
            ``Exists``/``DoesNotExist`` has values, or ``Gt``/``Lt`` has other than one integer value.
    """

    key: str
    operator: str
    values: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        where = f"label selector requirement on {self.key!r}"
        if isinstance(self.values, str) or not all(isinstance(v, str) for v in self.values):
            raise ValueError(f"{where}: values must be a list of strings (quote numbers: '1'), got {self.values!r}")
        # values are a set upstream (sets.String): keep them sorted and unique so equal requirements compare equal
        object.__setattr__(self, "values", tuple(sorted(set(self.values))))
        _check_key(self.key, where)
        if self.operator not in OPERATORS:
            raise ValueError(f"{where}: operator {self.operator!r} is not one of {', '.join(OPERATORS)}")
        if self.operator in ("In", "NotIn") and not self.values:
            raise ValueError(f"{where}: operator {self.operator} needs at least one value")
        if self.operator in ("Exists", "DoesNotExist") and self.values:
            raise ValueError(f"{where}: operator {self.operator} takes no values; remove 'values'")
        if self.operator in ("Gt", "Lt"):
            if len(self.values) != 1 or not re.fullmatch(r"-?\d+", self.values[0]):
                raise ValueError(f"{where}: operator {self.operator} needs exactly one integer value")
        else:
            for v in self.values:
                _check_value(v, where)

    def matches(self, labels: Mapping[str, str]) -> bool:
        """True if ``labels`` satisfy this requirement."""
        op = self.operator
        if op == "Exists":
            return self.key in labels
        if op == "DoesNotExist":
            return self.key not in labels
        if op == "In":
            return self.key in labels and labels[self.key] in self.values
        if op == "NotIn":
            return self.key not in labels or labels[self.key] not in self.values
        if self.key not in labels:
            return False
        try:
            have = int(labels[self.key])
        except ValueError:
            return False
        want = int(self.values[0])
        return have > want if op == "Gt" else have < want

    def __str__(self) -> str:
        op = self.operator
        if op == "Exists":
            return self.key
        if op == "DoesNotExist":
            return f"!{self.key}"
        if op == "Gt":
            return f"{self.key}>{self.values[0]}"
        if op == "Lt":
            return f"{self.key}<{self.values[0]}"
        if op == "In" and len(self.values) == 1:
            return f"{self.key}={self.values[0]}"
        if op == "NotIn" and len(self.values) == 1:
            return f"{self.key}!={self.values[0]}"
        return f"{self.key} {op.lower()} ({','.join(sorted(self.values))})"


@dataclass(frozen=True, slots=True)
class Selector:
    """A conjunction of requirements; ``matches_nothing`` marks the selector of a missing (None) LabelSelector."""

    requirements: tuple[Requirement, ...] = ()
    matches_nothing: bool = False

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        """True if every requirement holds for ``labels`` (None means no labels)."""
        if self.matches_nothing:
            return False
        labels = labels or {}
        return all(r.matches(labels) for r in self.requirements)

    def matches_object(self, obj: Mapping[str, Any]) -> bool:
        """Match a wire-shape object's ``metadata.labels``."""
        return self.matches((obj.get("metadata") or {}).get("labels") or {})

    def empty(self) -> bool:
        """True for the match-everything selector."""
        return not self.requirements and not self.matches_nothing

    def __str__(self) -> str:
        """The ``?labelSelector=`` string form (requirements sorted by key, as apimachinery prints them)."""
        return ",".join(str(r) for r in sorted(self.requirements, key=lambda r: (r.key, r.operator)))


EVERYTHING = Selector()
"""Matches every object (the empty selector ``{}``)."""
NOTHING = Selector(matches_nothing=True)
"""Matches no object (a missing selector)."""


def selector_from_dict(selector: Mapping[str, Any] | None) -> Selector:
    """Convert a ``metav1.LabelSelector`` dict (``matchLabels``, ``matchExpressions``) to a :class:`Selector`.

    None gives :data:`NOTHING`, ``{}`` gives :data:`EVERYTHING` (``metav1.LabelSelectorAsSelector``).

    Raises:
        ValueError: an unknown field, or a malformed key, value, operator or values list (the message names it).
    """
    if selector is None:
        return NOTHING
    if not isinstance(selector, Mapping):
        raise ValueError(f"label selector must be a mapping with matchLabels/matchExpressions, got {selector!r}")
    unknown = set(selector) - {"matchLabels", "matchExpressions"}
    if unknown:
        raise ValueError(
            f"label selector has unknown field(s) {sorted(unknown)}; only matchLabels and matchExpressions are allowed"
        )
    reqs: list[Requirement] = []
    match_labels = selector.get("matchLabels") or {}
    if not isinstance(match_labels, Mapping):
        raise ValueError("label selector matchLabels must be a mapping of label key to value")
    for key, value in match_labels.items():
        _check_value(value, f"label selector matchLabels[{key!r}]")
        reqs.append(Requirement(key, "In", (value,)))
    expressions = selector.get("matchExpressions") or []
    if not isinstance(expressions, list):
        raise ValueError("label selector matchExpressions must be a list of {key, operator, values}")
    for i, expr in enumerate(expressions):
        if not isinstance(expr, Mapping) or "key" not in expr or "operator" not in expr:
            raise ValueError(f"label selector matchExpressions[{i}] needs 'key' and 'operator', got {expr!r}")
        values = expr.get("values") or []
        if not isinstance(values, list):
            raise ValueError(f"label selector matchExpressions[{i}].values must be a list of strings")
        try:
            reqs.append(Requirement(expr["key"], expr["operator"], tuple(values)))
        except ValueError as exc:
            raise ValueError(f"label selector matchExpressions[{i}]: {exc}") from None
    return Selector(tuple(reqs))


def selector_from_labels(labels: Mapping[str, str]) -> Selector:
    """A selector requiring every ``key=value`` of ``labels`` (``labels.SelectorFromSet``).

    Raises:
        ValueError: a key or value is malformed.
    """
    return selector_from_dict({"matchLabels": dict(labels)})


def _split_top_level(text: str) -> Iterable[str]:
    depth, start = 0, 0
    for i, ch in enumerate(text):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "," and depth == 0:
            yield text[start:i]
            start = i + 1
    yield text[start:]


_SET_RE = re.compile(r"^\s*(?P<key>[^\s!=<>(),]+)\s+(?P<op>in|notin)\s*\((?P<vals>[^()]*)\)\s*$")
_CMP_RE = re.compile(r"^\s*(?P<key>[^\s!=<>(),]+)\s*(?P<op>==|=|!=|>|<)\s*(?P<val>[^\s!=<>(),]*)\s*$")
_EXISTS_RE = re.compile(r"^\s*(?P<neg>!)?\s*(?P<key>[^\s!=<>(),]+)\s*$")


def parse_selector(text: str) -> Selector:
    """Parse the string form (``"a=b,c!=d,e in (x,y),!f"``); "" gives :data:`EVERYTHING`.

    Raises:
        ValueError: a clause cannot be parsed (the message quotes it) or has a malformed key or value.
    """
    if not text.strip():
        return EVERYTHING
    if text.count("(") != text.count(")"):
        raise ValueError(f"label selector {text!r}: unbalanced parentheses")
    reqs: list[Requirement] = []
    for clause in _split_top_level(text):
        if m := _SET_RE.match(clause):
            vals = tuple(v.strip() for v in m["vals"].split(",") if v.strip())
            reqs.append(Requirement(m["key"], "In" if m["op"] == "in" else "NotIn", vals))
        elif m := _CMP_RE.match(clause):
            op = {"=": "In", "==": "In", "!=": "NotIn", ">": "Gt", "<": "Lt"}[m["op"]]
            reqs.append(Requirement(m["key"], op, (m["val"],)))
        elif m := _EXISTS_RE.match(clause):
            reqs.append(Requirement(m["key"], "DoesNotExist" if m["neg"] else "Exists"))
        else:
            raise ValueError(
                f"label selector {text!r}: cannot parse {clause.strip()!r}; use k=v, k!=v, k in (a,b), k notin (a,b), "
                f"k or !k"
            )
    return Selector(tuple(reqs))


def as_selector(selector: Selector | Mapping[str, Any] | str | None) -> Selector:
    """Accept a :class:`Selector`, a LabelSelector dict, a selector string, or None (matches nothing)."""
    if isinstance(selector, Selector):
        return selector
    if isinstance(selector, str):
        return parse_selector(selector)
    return selector_from_dict(selector)
