"""Custom resource validation against the CRD's structural ``openAPIV3Schema`` (reference item 9).

Order as in the real apiextensions-apiserver: prune unknown fields (kept under
``x-kubernetes-preserve-unknown-fields: true`` or a map's ``additionalProperties``), apply ``default`` values,
then validate with the ``jsonschema`` library (Draft 4, the dialect OpenAPI v3.0 schemas follow), mapping each
error to a ``details.causes[]`` entry whose ``field`` is the path (``spec.replicas``, ``spec.items[0].name``).
``fieldValidation=Strict`` turns pruned fields into a 400 BadRequest (``strict decoding error: unknown field``);
``Warn`` (the default) reports them as ``Warning`` headers.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import jsonschema

from .errors import APIError, bad_request, cause, invalid
from .resources import ResourceType

_META_FIELDS = {"apiVersion", "kind", "metadata"}


def to_json_schema(schema: Any) -> Any:
    """Translate OpenAPI v3.0 extensions to JSON Schema: ``nullable`` adds ``null``; ``x-kubernetes-int-or-
    string`` becomes ``anyOf [integer, string]``; other ``x-kubernetes-*`` keys are dropped."""
    if isinstance(schema, list):
        return [to_json_schema(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for k, v in schema.items():
        if k.startswith("x-kubernetes-") or k in ("default", "example", "description", "nullable", "format"):
            continue
        if k == "properties":
            out[k] = {name: to_json_schema(s) for name, s in v.items()}
        elif k in ("items", "additionalProperties", "not", "anyOf", "allOf", "oneOf"):
            out[k] = to_json_schema(v) if not isinstance(v, bool) else v
        else:
            out[k] = v
    if schema.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out = {"anyOf": [{"type": "integer"}, {"type": "string"}], **out}
    if schema.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
    return out


def _prune(value: Any, schema: dict[str, Any] | None, path: str, root: bool, pruned: list[str]) -> Any:
    if not isinstance(schema, dict):
        return value
    if isinstance(value, dict):
        if schema.get("x-kubernetes-preserve-unknown-fields") and "properties" not in schema:
            return value
        props = schema.get("properties")
        addl = schema.get("additionalProperties")
        for key in list(value):
            if root and key in _META_FIELDS:
                continue
            sub_path = f"{path}.{key}" if path else key
            if props is not None and key in props:
                value[key] = _prune(value[key], props[key], sub_path, False, pruned)
            elif isinstance(addl, dict):
                value[key] = _prune(value[key], addl, sub_path, False, pruned)
            elif addl is True or schema.get("x-kubernetes-preserve-unknown-fields"):
                continue
            else:
                pruned.append(sub_path)
                del value[key]
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            value[i] = _prune(item, schema["items"], f"{path}[{i}]", False, pruned)
    return value


def _default(value: Any, schema: dict[str, Any] | None) -> None:
    if not isinstance(schema, dict):
        return
    if isinstance(value, dict):
        props = schema.get("properties") or {}
        for key, sub in props.items():
            if key not in value and isinstance(sub, dict) and "default" in sub:
                value[key] = copy.deepcopy(sub["default"])
            if key in value:
                _default(value[key], sub)
        addl = schema.get("additionalProperties")
        if isinstance(addl, dict):
            for key, item in value.items():
                if key not in props:
                    _default(item, addl)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for item in value:
            _default(item, schema["items"])


def _path(error: jsonschema.ValidationError) -> str:
    out = ""
    for part in error.absolute_path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _render(value: Any) -> str:
    return json.dumps(value) if not isinstance(value, dict | list) else "{...}" if isinstance(value, dict) else "[...]"


def _cause_of(error: jsonschema.ValidationError) -> dict[str, str]:
    field = _path(error)
    v = error.validator
    shown = field or "<root>"
    if v == "required":
        missing = str(error.message).split("'")[1] if "'" in error.message else ""
        return cause(f"{field}.{missing}" if field else missing, "Required value", "FieldValueRequired")
    if v == "enum":
        allowed = ", ".join(json.dumps(x) for x in error.validator_value)
        return cause(field, f"Unsupported value: {_render(error.instance)}: supported values: {allowed}",
                     "FieldValueNotSupported")
    if v == "type":
        t = error.validator_value
        t = t[0] if isinstance(t, list) else t
        return cause(field, f"Invalid value: \"{type(error.instance).__name__}\": {shown} in body must be of type "
                     f"{t}: {_render(error.instance)}", "FieldValueTypeInvalid")
    messages = {
        "minimum": f"should be greater than or equal to {error.validator_value}",
        "maximum": f"should be less than or equal to {error.validator_value}",
        "minLength": f"should be at least {error.validator_value} chars long",
        "maxLength": f"may not be more than {error.validator_value} bytes",
        "pattern": f"should match '{error.validator_value}'",
        "minItems": f"should have at least {error.validator_value} items",
        "maxItems": f"must have at most {error.validator_value} items",
        "multipleOf": f"should be a multiple of {error.validator_value}",
    }
    text = messages.get(str(v), str(error.message))
    reason = "FieldValueTooLong" if v in ("maxLength", "maxItems") else "FieldValueInvalid"
    return cause(field, f"Invalid value: {_render(error.instance)}: {shown} in body {text}", reason)


def report_unknown_fields(pruned: list[str], field_validation: str | None, warnings: list[str] | None) -> None:
    """Apply ``fieldValidation`` to pruned fields: Strict → 400, Warn (default) → warnings, Ignore → nothing.

    Raises:
        APIError: 400 BadRequest ``strict decoding error: unknown field "<path>"`` under Strict.
    """
    if not pruned:
        return
    mode = (field_validation or "Warn").capitalize()
    if mode == "Strict":
        detail = ", ".join(f'unknown field "{p}"' for p in pruned)
        raise bad_request(f"strict decoding error: {detail}")
    if mode == "Warn" and warnings is not None:
        warnings.extend(f'unknown field "{p}"' for p in pruned)


def validate_custom_resource(rt: ResourceType, obj: dict[str, Any], field_validation: str | None,
                             warnings: list[str] | None) -> None:
    """Prune, default and validate ``obj`` in place against ``rt.schema``.

    Raises:
        APIError: 422 Invalid with ``details.causes`` per violation; 400 BadRequest for unknown fields under
        ``fieldValidation=Strict``.
    """
    schema = rt.schema
    if not isinstance(schema, dict):
        return
    pruned: list[str] = []
    _prune(obj, schema, "", True, pruned)
    report_unknown_fields(pruned, field_validation, warnings)
    _default(obj, schema)
    body = {k: v for k, v in obj.items() if k != "metadata"}
    top = dict(schema)
    top["properties"] = {k: v for k, v in (schema.get("properties") or {}).items() if k not in _META_FIELDS}
    required = [r for r in top.get("required") or [] if r not in _META_FIELDS]
    if required:
        top["required"] = required
    else:
        top.pop("required", None)
    schema_json = to_json_schema(top)
    validator = jsonschema.Draft4Validator(schema_json)
    errors = sorted(validator.iter_errors(body), key=lambda e: [str(p) for p in e.absolute_path])
    causes = []
    for error in errors:
        if error.validator in ("anyOf", "oneOf") and error.context:
            best = jsonschema.exceptions.best_match(error.context)
            causes.append(_cause_of(best))
        else:
            causes.append(_cause_of(error))
    if causes:
        raise invalid(rt.kind, rt.group, obj.get("metadata", {}).get("name", ""), causes)


def check_schema(schema: Any) -> None:
    """Raise 422 if a CRD's schema is not usable by the validator (bad regex, wrong keyword types)."""
    try:
        jsonschema.Draft4Validator.check_schema(to_json_schema(schema))
    except jsonschema.SchemaError as e:
        raise APIError(422, "Invalid", f"openAPIV3Schema is invalid: {e.message}") from e
