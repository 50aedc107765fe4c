"""The answer of the admission rules: warnings plus errors that each name a field path and the fix."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ValidationError


@dataclass(frozen=True)
class FieldError:
    """One rejection: ``path`` is the wire field path (``inference.adapters[0].strength``), ``message`` says what
    is wrong and how to fix it."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


@dataclass
class Verdict:
    """Warnings (shown by kubectl, never block) and errors (any error denies the request)."""

    warnings: list[str] = field(default_factory=list)
    errors: list[FieldError] = field(default_factory=list)

    @property
    def allowed(self) -> bool:
        """True when there are no errors."""
        return not self.errors

    def error(self, path: str, message: str) -> None:
        """Add an error at ``path``."""
        self.errors.append(FieldError(path, message))

    def warn(self, message: str) -> None:
        """Add a warning."""
        self.warnings.append(message)

    def message(self) -> str:
        """All errors as one sentence list (``path: message; path: message``)."""
        return "; ".join(str(e) for e in self.errors)


def wire_path(loc: Iterable[int | str]) -> str:
    """``("inference", "adapters", 0, "strength")`` → ``"inference.adapters[0].strength"``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _known_fields(models: Iterable[type[BaseModel]]) -> list[str]:
    names: set[str] = set()
    for model in models:
        for name, info in model.model_fields.items():
            names.add(info.alias or name)
    return sorted(names)


def translate_validation_error(exc: ValidationError, models: Iterable[type[BaseModel]] = ()) -> list[FieldError]:
    """pydantic errors as :class:`FieldError` with Kubernetes-style messages and fixes.

    ``models`` provide the field names used to suggest a spelling for unknown fields.
    """
    known = _known_fields(models)
    errors: list[FieldError] = []
    for err in exc.errors(include_url=False):
        loc = tuple(err["loc"])
        path = wire_path(loc)
        kind, value, ctx = err["type"], err.get("input"), err.get("ctx") or {}
        errors.append(FieldError(path, _message(kind, value, ctx, loc, known, err["msg"])))
    return errors


def _type_name(value: Any) -> str:
    return {
        dict: "an object",
        list: "a list",
        str: "a string",
        bool: "a boolean",
        int: "an integer",
        float: "a number",
    }.get(type(value), "null" if value is None else type(value).__name__)


def _message(kind: str, value: Any, ctx: dict[str, Any], loc: tuple[Any, ...], known: list[str], msg: str) -> str:
    if kind == "missing":
        return "is required; set it"
    if kind == "extra_forbidden":
        name = str(loc[-1]) if loc else "?"
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.7)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return f"unknown field{hint}; remove it or fix its name (fields are camelCase, e.g. instanceType)"
    if kind in ("literal_error", "enum"):
        return f"{value!r} is not supported; use {ctx.get('expected', 'one of the listed values')}"
    if kind in ("string_type", "str_type"):
        return f"must be a string, got {_type_name(value)}; quote the value"
    if kind in ("int_type", "int_parsing", "int_from_float"):
        return f"must be an integer, got {_type_name(value)} {value!r}"
    if kind in ("bool_type", "bool_parsing"):
        return f"must be true or false, got {_type_name(value)} {value!r}"
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        return f"must be an object (a YAML mapping), got {_type_name(value)}"
    if kind == "list_type":
        return f"must be a list, got {_type_name(value)}"
    if kind == "greater_than_equal":
        return f"must be >= {ctx.get('ge')}, got {value!r}"
    if kind == "greater_than":
        return f"must be > {ctx.get('gt')}, got {value!r}"
    return f"{msg}; got {value!r}"
