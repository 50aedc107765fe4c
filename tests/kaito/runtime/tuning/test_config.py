"""Parsing ``training_config.yaml``: six sections into transformers/peft objects, unknown keys rejected by name."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from kaito.runtime.tuning.config import ConfigError, load_config, parse_config
from kaito.runtime.tuning.defaults import default_config_path, default_config_text


def _doc(**sections: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"TrainingArguments": {"output_dir": "/mnt/results"}}
    base.update(sections)
    return {"training_config": base}


def test_sections_become_transformers_and_peft_objects() -> None:
    cfg = parse_config(
        _doc(
            ModelConfig={"torch_dtype": "bfloat16", "local_files_only": True},
            QuantizationConfig={
                "load_in_4bit": True,
                "bnb_4bit_quant_type": "nf4",
                "bnb_4bit_compute_dtype": "float16",
            },
            LoraConfig={"r": 16, "lora_alpha": 32, "target_modules": ["q_proj", "v_proj"]},
            TrainingArguments={"output_dir": "/mnt/results", "max_steps": 7, "learning_rate": 0.001},
            DatasetConfig={"train_test_split": 0.8, "context_column": "question"},
            DataCollator={"mlm": False, "pad_to_multiple_of": 8},
        )
    )

    assert cfg.method == "qlora"
    assert cfg.model.from_pretrained["dtype"] is torch.bfloat16
    assert cfg.quantization is not None and cfg.quantization.load_in_4bit
    assert cfg.quantization.bnb_4bit_quant_type == "nf4"
    assert cfg.quantization.bnb_4bit_compute_dtype is torch.float16
    assert (cfg.lora.r, cfg.lora.lora_alpha, set(cfg.lora.target_modules)) == (16, 32, {"q_proj", "v_proj"})
    assert str(cfg.lora.task_type) in ("CAUSAL_LM", "TaskType.CAUSAL_LM")
    assert (cfg.training.max_steps, cfg.training.learning_rate) == (7, 0.001)
    assert (cfg.dataset.train_test_split, cfg.dataset.context_column) == (0.8, "question")
    assert cfg.collator.pad_to_multiple_of == 8


def test_lora_defaults_are_kaitos_and_no_quantization_means_lora() -> None:
    cfg = parse_config(_doc())
    assert cfg.method == "lora"
    assert (cfg.lora.r, cfg.lora.lora_alpha, cfg.lora.lora_dropout) == (8, 8, 0.0)
    assert cfg.training.report_to in ([], "none", ["none"])


@pytest.mark.parametrize(
    ("sections", "message"),
    [
        ({"LoraConfig": {"lora_alpah": 8}},
         "training_config.LoraConfig: unknown key(s) 'lora_alpah' (did you mean 'lora_alpha'?)"),
        ({"TrainingArguments": {"output_dir": "/x", "max_step": 3}}, "'max_step' (did you mean 'max_steps'?)"),
        ({"ModelConfig": {"torch_dtyp": "float32"}}, "training_config.ModelConfig: unknown key(s) 'torch_dtyp'"),
        ({"QuantizationConfig": {"load_in_3bit": True}},
         "training_config.QuantizationConfig: unknown key(s) 'load_in_3bit'"),
        ({"DatasetConfig": {"shuffle": True}}, "training_config.DatasetConfig: unknown key(s) 'shuffle'"),
        ({"DataCollator": {"padding": True}}, "training_config.DataCollator: unknown key(s) 'padding'"),
        ({"Optimizer": {}}, "training_config: unknown section(s) 'Optimizer'"),
    ],
)  # fmt: skip
def test_unknown_keys_and_sections_are_rejected_by_name(sections: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(_doc(**sections))
    assert message in str(err.value)


@pytest.mark.parametrize(
    ("sections", "method", "message"),
    [
        ({"QuantizationConfig": {"load_in_4bit": True}}, "lora", "method lora trains full-precision weights"),
        ({}, "qlora", "method qlora needs load_in_4bit"),
        ({"QuantizationConfig": {"load_in_4bit": True, "load_in_8bit": True}}, None, "both true; choose one"),
        ({"QuantizationConfig": {"bnb_4bit_quant_type": "nf4"}}, None, "neither load_in_4bit nor load_in_8bit"),
        ({"DataCollator": {"mlm": True}}, None, "DataCollator.mlm: true selects masked-language modelling"),
        ({"DatasetConfig": {"train_test_split": 1.5}}, None, "DatasetConfig.train_test_split: 1.5"),
        ({"DatasetConfig": {"shuffle_dataset": "yes"}}, None, "DatasetConfig.shuffle_dataset: 'yes' is a str"),
        ({"ModelConfig": {"dtype": "float64"}}, None, "ModelConfig.dtype: 'float64' is not a supported dtype"),
        ({"LoraConfig": {"task_type": "SEQ_CLS"}}, None, "LoraConfig.task_type"),
        ({"TrainingArguments": {}}, None, "TrainingArguments.output_dir: required"),
    ],
)
def test_invalid_values_name_the_field_and_fix(sections: dict[str, Any], method: str | None, message: str) -> None:
    with pytest.raises(ConfigError, match=None) as err:
        parse_config(_doc(**sections), method=method)
    assert message in str(err.value)


def test_output_dir_flag_overrides_the_config() -> None:
    cfg = parse_config(_doc(), output_dir="/tmp/elsewhere")
    assert cfg.training.output_dir == "/tmp/elsewhere"


def test_sections_at_top_level_are_accepted() -> None:
    cfg = parse_config({"TrainingArguments": {"output_dir": "/o", "max_steps": 2}})
    assert cfg.training.max_steps == 2


def test_unreadable_and_non_yaml_files_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("training_config: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


@pytest.mark.parametrize("method", ["lora", "qlora"])
def test_default_configs_parse_and_match_their_method(method: str) -> None:
    cfg = load_config(default_config_path(method), method=method)
    assert cfg.method == method
    assert cfg.training.output_dir == "/mnt/results"
    assert cfg.collator.pad_to_multiple_of is None
    doc = yaml.safe_load(default_config_text(method))
    assert set(doc["training_config"]) <= {
        "ModelConfig", "QuantizationConfig", "LoraConfig", "TrainingArguments", "DatasetConfig", "DataCollator"
    }  # fmt: skip


def test_unknown_method_has_no_default() -> None:
    with pytest.raises(ValueError, match="use lora or qlora"):
        default_config_path("full")
