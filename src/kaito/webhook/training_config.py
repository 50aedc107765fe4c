"""Rule 7 on the *content* of a tuning ConfigMap's ``training_config.yaml``.

Pure: the caller passes the parsed document (the webhook cannot read ConfigMaps without calling the API; the tuning
controller and ``kaito plan --tuning-config FILE`` call this). Accepts Kaito's layout (one top-level
``training_config`` key holding the sections) or the sections at the top level.
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping
from typing import Any

from kaito.webhook.verdict import FieldError

SECTIONS = ("ModelConfig", "QuantizationConfig", "LoraConfig", "TrainingArguments", "DatasetConfig", "DataCollator")
"""The only sections a training config may have (upstream Kaito)."""
PREFIX = "training_config.yaml"


def validate_training_config(doc: Any, method: str) -> list[FieldError]:
    """Errors of a training config for ``method`` ("lora" or "qlora"); empty when valid.

    Rules (upstream rule 7): only the six sections; lora forbids quantization; qlora requires ``load_in_4bit`` or
    ``load_in_8bit`` (exactly one); ``TrainingArguments.output_dir`` must be under ``/mnt``.
    """
    if not isinstance(doc, Mapping):
        return [FieldError(PREFIX, "must be a YAML mapping of sections (ModelConfig, LoraConfig, ...)")]
    body = doc.get("training_config", doc) if "training_config" in doc else doc
    base = f"{PREFIX}.training_config" if "training_config" in doc else PREFIX
    if not isinstance(body, Mapping):
        return [FieldError(base, "must be a mapping of sections (ModelConfig, LoraConfig, ...)")]
    errors: list[FieldError] = []
    for name in body:
        if name not in SECTIONS:
            errors.append(FieldError(f"{base}.{name}", f"unknown section; use only {', '.join(SECTIONS)}"))
    quant = body.get("QuantizationConfig") or {}
    if not isinstance(quant, Mapping):
        errors.append(FieldError(f"{base}.QuantizationConfig", "must be a mapping"))
        quant = {}
    four, eight = bool(quant.get("load_in_4bit")), bool(quant.get("load_in_8bit"))
    if method == "lora" and (four or eight):
        errors.append(
            FieldError(
                f"{base}.QuantizationConfig",
                "lora tunes full-precision weights; remove load_in_4bit/load_in_8bit or set tuning.method to qlora",
            )
        )
    if method == "qlora":
        if four and eight:
            errors.append(
                FieldError(f"{base}.QuantizationConfig", "set only one of load_in_4bit and load_in_8bit for qlora")
            )
        elif not (four or eight):
            errors.append(
                FieldError(
                    f"{base}.QuantizationConfig",
                    "qlora needs quantization; set load_in_4bit: true (or load_in_8bit: true)",
                )
            )
    args = body.get("TrainingArguments") or {}
    if isinstance(args, Mapping):
        out = args.get("output_dir")
        normal = posixpath.normpath(out) if isinstance(out, str) and out.startswith("/") else ""
        if out is not None and not normal.startswith("/mnt/"):
            errors.append(
                FieldError(
                    f"{base}.TrainingArguments.output_dir",
                    f"{out!r} is not under /mnt; the Job only keeps results under /mnt (e.g. /mnt/output)",
                )
            )
    else:
        errors.append(FieldError(f"{base}.TrainingArguments", "must be a mapping"))
    return errors
