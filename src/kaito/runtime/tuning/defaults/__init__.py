"""Default ``training_config.yaml`` files per tuning method, shipped as package data.

The operator copies them into the tuning Job's ConfigMap when a Workspace's ``tuning.config`` is empty (the
manifests under ``manifests/`` may embed the same text). ``lora.yaml``: full-precision base + LoRA r=8, alpha=8,
dropout 0 (upstream Kaito's defaults); ``qlora.yaml``: the same plus 4-bit nf4 with double quantization and
bfloat16 compute (upstream's QLoRA template).
"""

from __future__ import annotations

from pathlib import Path

METHODS = ("lora", "qlora")
"""Tuning methods with a default config (the Workspace's ``tuning.method``)."""


def default_config_path(method: str) -> Path:
    """Path of the default config for ``method``.

    Raises:
        ValueError: ``method`` is not lora or qlora.
    """
    if method not in METHODS:
        raise ValueError(f"tuning.method: {method!r} has no default config; use lora or qlora")
    return Path(__file__).with_name(f"{method}.yaml")


def default_config_text(method: str) -> str:
    """The default ``training_config.yaml`` text for ``method`` (see :func:`default_config_path`)."""
    return default_config_path(method).read_text()
