"""Rule 7 on training_config.yaml content: sections, lora vs qlora quantisation, output_dir under /mnt."""

from __future__ import annotations

from typing import Any

import pytest

from kaito.webhook import validate_training_config
from kaito.workloads import default_training_config


@pytest.mark.parametrize("method", ["lora", "qlora"])
def test_the_default_configs_are_valid(method: str) -> None:
    assert validate_training_config(default_training_config(method), method) == []


@pytest.mark.parametrize(
    ("doc", "method", "path", "message"),
    [
        (
            {"training_config": {"Optimizer": {}}},
            "lora",
            "training_config.yaml.training_config.Optimizer",
            "unknown section; use only ModelConfig, QuantizationConfig, LoraConfig, TrainingArguments, "
            "DatasetConfig, DataCollator",
        ),
        (
            {"QuantizationConfig": {"load_in_4bit": True}},
            "lora",
            "training_config.yaml.QuantizationConfig",
            "lora tunes full-precision weights; remove load_in_4bit/load_in_8bit or set tuning.method to qlora",
        ),
        (
            {"QuantizationConfig": {}},
            "qlora",
            "training_config.yaml.QuantizationConfig",
            "qlora needs quantization; set load_in_4bit: true (or load_in_8bit: true)",
        ),
        (
            {"QuantizationConfig": {"load_in_4bit": True, "load_in_8bit": True}},
            "qlora",
            "training_config.yaml.QuantizationConfig",
            "set only one of load_in_4bit and load_in_8bit for qlora",
        ),
        (
            {"QuantizationConfig": {"load_in_8bit": True}, "TrainingArguments": {"output_dir": "/tmp/out"}},
            "qlora",
            "training_config.yaml.TrainingArguments.output_dir",
            "'/tmp/out' is not under /mnt; the Job only keeps results under /mnt (e.g. /mnt/output)",
        ),
        (
            {"TrainingArguments": {"output_dir": "/mnt/../etc"}},
            "lora",
            "training_config.yaml.TrainingArguments.output_dir",
            "'/mnt/../etc' is not under /mnt; the Job only keeps results under /mnt (e.g. /mnt/output)",
        ),
        (
            ["not", "a", "mapping"],
            "lora",
            "training_config.yaml",
            "must be a YAML mapping of sections (ModelConfig, LoraConfig, ...)",
        ),
    ],
)
def test_invalid_training_configs_name_the_section_and_fix(doc: Any, method: str, path: str, message: str) -> None:
    assert [(e.path, e.message) for e in validate_training_config(doc, method)] == [(path, message)]
