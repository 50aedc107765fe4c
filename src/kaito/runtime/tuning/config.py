"""``training_config.yaml``: the six sections of a Kaito tuning config, parsed into transformers/peft objects.

The file has one top-level key ``training_config`` (Kaito's ConfigMap layout; a file holding the sections at the top
level is accepted too) with up to six sections:

==================  ==========================================================================================
``ModelConfig``     keyword arguments of ``AutoModelForCausalLM.from_pretrained`` (see :data:`MODEL_KEYS`)
``QuantizationConfig``  ``transformers.BitsAndBytesConfig`` (present with ``load_in_4bit``/``load_in_8bit`` = QLoRA)
``LoraConfig``      ``peft.LoraConfig`` (``task_type`` is always ``CAUSAL_LM``)
``TrainingArguments``  ``transformers.TrainingArguments``
``DatasetConfig``   :class:`DatasetConfig` (files, columns, shuffle, train/test split)
``DataCollator``    ``transformers.DataCollatorForLanguageModeling`` fields (``mlm`` must be false: causal LM)
==================  ==========================================================================================

Any other section, and any key a section's target class does not have, is a :class:`ConfigError` that names the
section and key and suggests the closest valid key: a typo must never be silently ignored and train the wrong
thing for hours. The section names and the lora/qlora rule follow upstream Kaito's admission rules
(``reference/kaito-inventory.md``, rule 7).
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

if TYPE_CHECKING:  # pragma: no cover - typing only; the heavy imports happen in parse_config
    from peft import LoraConfig
    from transformers import BitsAndBytesConfig, TrainingArguments

SECTIONS = (
    "ModelConfig",
    "QuantizationConfig",
    "LoraConfig",
    "TrainingArguments",
    "DatasetConfig",
    "DataCollator",
)
"""The six section names, in Kaito's order (upstream ``training_config.yaml``)."""

MODEL_KEYS = frozenset(
    {
        "pretrained_model_name_or_path",
        "dtype",
        "torch_dtype",
        "device_map",
        "local_files_only",
        "trust_remote_code",
        "revision",
        "cache_dir",
        "attn_implementation",
        "low_cpu_mem_usage",
        "chat_template",
    }
)
"""Keys accepted in ``ModelConfig``. ``torch_dtype`` is the pre-5.0 spelling of ``dtype`` (Kaito's default configs
use it); ``chat_template`` is a Jinja template for tokenizers that ship none; the rest go to ``from_pretrained``."""

DTYPES = ("auto", "float32", "float16", "bfloat16")
"""Accepted values of ``ModelConfig.dtype`` and ``QuantizationConfig.bnb_4bit_compute_dtype``."""

# Keys of the collator dataclass we honour; the rest of its fields configure masked-LM masking, which a causal
# LM never uses, but we accept them so that upstream configs parse (mlm must still be false).
_COLLATOR_KEYS = frozenset(
    {
        "mlm",
        "whole_word_mask",
        "mlm_probability",
        "mask_replace_prob",
        "random_replace_prob",
        "pad_to_multiple_of",
        "return_tensors",
        "seed",
    }
)


class ConfigError(ValueError):
    """The tuning config is invalid; the message names the section, the key and the fix."""


@dataclass(frozen=True)
class DatasetConfig:
    """``DatasetConfig``: where the training data is and how rows become training examples.

    A row is used in the first of three shapes whose columns are present: chat (``messages_column``: a list of
    OpenAI-style ``{"role", "content"}`` dicts, rendered with the model's chat template), prompt/response
    (``context_column`` + ``response_column``, rendered as a one-turn chat), or plain text (``text_column``).
    """

    dataset_path: str | None = None
    """A file or directory, relative to the data dir (``--data-dir``, default ``/mnt/data``) or absolute; ``None``
    reads every ``.parquet``/``.jsonl``/``.json``/``.csv`` file in the data dir."""
    dataset_extension: str | None = None
    """Format override (``parquet``, ``jsonl``, ``json``, ``csv``) for files whose name has no such suffix, e.g. a
    downloaded URL; ``None`` infers the format from each file's suffix."""
    shuffle_dataset: bool = True
    """Shuffle rows before the split (upstream Kaito default)."""
    shuffle_seed: int = 42
    """Seed of the shuffle, so that a re-run trains on the same order (upstream Kaito default)."""
    train_test_split: float = 1.0
    """Fraction of rows used for training, in (0, 1]; the rest is the eval set. 1.0 (no eval set) because tuning
    datasets are often tiny; upstream's default templates set 0.8 explicitly when they want an eval set."""
    text_column: str = "text"
    """Column of plain-text rows: the whole text is trained on."""
    context_column: str = "prompt"
    """Column of the user's turn in prompt/response rows."""
    response_column: str = "response"
    """Column of the assistant's turn in prompt/response rows."""
    messages_column: str = "messages"
    """Column of OpenAI-format chat rows."""
    max_seq_length: int = 1024
    """Tokens per example; longer examples are truncated (SmolLM2 and Phi-3 mini both handle at least 2,048)."""
    loss_on_response_only: bool = True
    """Train only on the assistant's tokens of chat and prompt/response rows (the prompt is context, not a target);
    false trains on every token, as plain text rows always are."""

    def __post_init__(self) -> None:
        if not 0.0 < self.train_test_split <= 1.0:
            raise ConfigError(
                f"DatasetConfig.train_test_split: {self.train_test_split} is the fraction of rows used for training; "
                "set a number in (0, 1], e.g. 0.8 for an 80/20 split or 1 for no eval set"
            )
        if self.max_seq_length < 8:
            raise ConfigError(f"DatasetConfig.max_seq_length: {self.max_seq_length} is too small; use at least 8")
        if self.dataset_extension is not None and self.dataset_extension.lstrip(".") not in (
            "parquet",
            "jsonl",
            "json",
            "csv",
        ):
            raise ConfigError(
                f"DatasetConfig.dataset_extension: {self.dataset_extension!r} is not supported; "
                "use parquet, jsonl, json or csv"
            )


@dataclass(frozen=True)
class ModelConfig:
    """``ModelConfig``: which weights to load and how."""

    pretrained_model_name_or_path: str | None = None
    """A local model directory; the CLI's ``--model`` overrides it. ``None`` means "given on the command line"."""
    chat_template: str | None = None
    """Jinja chat template for tokenizers without one; ``None`` keeps the tokenizer's own."""
    from_pretrained: dict[str, Any] = field(default_factory=dict)
    """The remaining keyword arguments for ``from_pretrained`` (``dtype`` already mapped to a ``torch.dtype``)."""


@dataclass(frozen=True)
class CollatorConfig:
    """``DataCollator``: how examples are padded into batches."""

    pad_to_multiple_of: int | None = None
    """Pad each batch's length up to a multiple of this (8 helps tensor cores); ``None`` pads to the longest."""


@dataclass(frozen=True)
class TuningConfig:
    """The parsed config: one object per section, ready for the trainer."""

    model: ModelConfig
    quantization: BitsAndBytesConfig | None
    """``None`` for LoRA; a 4-bit or 8-bit ``BitsAndBytesConfig`` for QLoRA."""
    lora: LoraConfig
    training: TrainingArguments
    dataset: DatasetConfig
    collator: CollatorConfig

    @property
    def method(self) -> str:
        """``"qlora"`` when a quantization config is set, else ``"lora"`` (the Workspace's ``tuning.method``)."""
        return "qlora" if self.quantization is not None else "lora"


def load_config(path: str | Path, *, output_dir: str | None = None, method: str | None = None) -> TuningConfig:
    """Read and parse a ``training_config.yaml`` file; see :func:`parse_config`.

    Raises:
        ConfigError: the file is missing, is not YAML, or any section is invalid.
    """
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as e:
        raise ConfigError(f"--config {p}: cannot read the tuning config ({e.strerror})") from e
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"--config {p}: not valid YAML: {e}") from e
    return parse_config(doc if doc is not None else {}, output_dir=output_dir, method=method)


def parse_config(doc: Mapping[str, Any], *, output_dir: str | None = None, method: str | None = None) -> TuningConfig:
    """Parse the six sections of a tuning config into transformers/peft objects.

    Args:
        doc: the YAML document: ``{"training_config": {<section>: {...}}}`` or the sections at the top level.
        output_dir: overrides ``TrainingArguments.output_dir`` (the CLI's ``--output-dir``).
        method: ``"lora"`` or ``"qlora"`` to enforce Kaito's rule (lora forbids quantization, qlora requires 4- or
            8-bit); ``None`` infers the method from ``QuantizationConfig``.

    Raises:
        ConfigError: an unknown section or key (named, with the closest valid key), a value of the wrong type, or a
            method/quantization mismatch.
    """
    if not isinstance(doc, Mapping):
        raise ConfigError(f"training_config: expected a mapping of sections, got {type(doc).__name__}")
    sections: Any = doc.get("training_config", doc) if "training_config" in doc else doc
    if sections is None:
        sections = {}
    if not isinstance(sections, Mapping):
        raise ConfigError(f"training_config: expected a mapping of sections, got {type(sections).__name__}")
    unknown = [k for k in sections if k not in SECTIONS]
    if unknown:
        raise ConfigError(_unknown_message("training_config", "section", unknown, SECTIONS))
    raw = {name: _section(sections, name) for name in SECTIONS}

    model = _model_config(raw["ModelConfig"])
    quantization = _quantization_config(raw["QuantizationConfig"])
    if method is not None:
        _check_method(method, quantization)
    lora = _lora_config(raw["LoraConfig"])
    training = _training_arguments(raw["TrainingArguments"], output_dir)
    dataset = _dataclass_section("DatasetConfig", DatasetConfig, raw["DatasetConfig"])
    collator = _collator_config(raw["DataCollator"])
    return TuningConfig(model, quantization, lora, training, dataset, collator)


def _section(sections: Mapping[str, Any], name: str) -> dict[str, Any]:
    value = sections.get(name)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(f"training_config.{name}: expected a mapping of keys, got {type(value).__name__}")
    return dict(value)


def _unknown_message(where: str, kind: str, unknown: list[str], allowed: Any) -> str:
    allowed_sorted = sorted(allowed)
    parts = []
    for key in unknown:
        close = difflib.get_close_matches(str(key), allowed_sorted, n=1)
        parts.append(f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    shown = ", ".join(allowed_sorted) if len(allowed_sorted) <= 20 else "see docs/tuning.md"
    return f"{where}: unknown {kind}(s) {', '.join(parts)}; valid {kind}s: {shown}"


def _check_keys(section: str, values: Mapping[str, Any], allowed: Any) -> None:
    unknown = [k for k in values if k not in allowed]
    if unknown:
        raise ConfigError(_unknown_message(f"training_config.{section}", "key", unknown, allowed))


def _dtype(where: str, value: Any) -> Any:
    import torch

    if value is None or value == "auto":
        return value
    if isinstance(value, str) and value in DTYPES:
        return getattr(torch, value)
    raise ConfigError(f"{where}: {value!r} is not a supported dtype; use one of {', '.join(DTYPES)}")


def _model_config(values: dict[str, Any]) -> ModelConfig:
    _check_keys("ModelConfig", values, MODEL_KEYS)
    if "torch_dtype" in values and "dtype" in values:
        raise ConfigError("training_config.ModelConfig: set either dtype or torch_dtype (its old name), not both")
    kwargs = dict(values)
    path = kwargs.pop("pretrained_model_name_or_path", None)
    template = kwargs.pop("chat_template", None)
    if "torch_dtype" in kwargs:
        kwargs["dtype"] = kwargs.pop("torch_dtype")
    if "dtype" in kwargs:
        kwargs["dtype"] = _dtype("training_config.ModelConfig.dtype", kwargs["dtype"])
    # Pods have no route to a model hub; the weights are local (upstream's templates set this too).
    kwargs.setdefault("local_files_only", True)
    return ModelConfig(pretrained_model_name_or_path=path, chat_template=template, from_pretrained=kwargs)


def _quantization_config(values: dict[str, Any]) -> BitsAndBytesConfig | None:
    from transformers import BitsAndBytesConfig

    allowed = [p for p in inspect.signature(BitsAndBytesConfig.__init__).parameters if p not in ("self", "kwargs")]
    _check_keys("QuantizationConfig", values, allowed)
    four, eight = bool(values.get("load_in_4bit")), bool(values.get("load_in_8bit"))
    if four and eight:
        raise ConfigError(
            "training_config.QuantizationConfig: load_in_4bit and load_in_8bit are both true; choose one "
            "(4-bit nf4 is QLoRA's usual choice)"
        )
    if not four and not eight:
        if any(k.startswith("bnb_4bit") or k.startswith("llm_int8") for k in values):
            raise ConfigError(
                "training_config.QuantizationConfig: quantization options are set but neither load_in_4bit nor "
                "load_in_8bit is true; set one of them for QLoRA, or remove the section for LoRA"
            )
        return None
    kwargs = dict(values)
    if "bnb_4bit_compute_dtype" in kwargs:
        kwargs["bnb_4bit_compute_dtype"] = _dtype(
            "training_config.QuantizationConfig.bnb_4bit_compute_dtype", kwargs["bnb_4bit_compute_dtype"]
        )
    try:
        return BitsAndBytesConfig(**kwargs)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"training_config.QuantizationConfig: {e}") from e


def _check_method(method: str, quantization: BitsAndBytesConfig | None) -> None:
    if method == "lora" and quantization is not None:
        raise ConfigError(
            "training_config.QuantizationConfig: method lora trains full-precision weights; remove "
            "load_in_4bit/load_in_8bit or use method qlora"
        )
    if method == "qlora" and quantization is None:
        raise ConfigError(
            "training_config.QuantizationConfig: method qlora needs load_in_4bit: true (or load_in_8bit: true)"
        )
    if method not in ("lora", "qlora"):
        raise ConfigError(f"method: {method!r} is not supported; use lora or qlora")


def _lora_config(values: dict[str, Any]) -> LoraConfig:
    from peft import LoraConfig, TaskType

    allowed = {f.name for f in dataclasses.fields(LoraConfig) if f.init} - {"peft_type", "auto_mapping"}
    _check_keys("LoraConfig", values, allowed)
    task = values.pop("task_type", "CAUSAL_LM")
    if str(task).upper() != "CAUSAL_LM":
        raise ConfigError(f"training_config.LoraConfig.task_type: {task!r}; the tuning job trains CAUSAL_LM only")
    # Kaito's defaults (r=8, alpha=8, dropout 0; reference/kaito-inventory.md) where the config leaves them out.
    kwargs: dict[str, Any] = {"r": 8, "lora_alpha": 8, "lora_dropout": 0.0, **values}
    try:
        return LoraConfig(task_type=TaskType.CAUSAL_LM, **kwargs)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"training_config.LoraConfig: {e}") from e


def _training_arguments(values: dict[str, Any], output_dir: str | None) -> TrainingArguments:
    from transformers import TrainingArguments

    allowed = {f.name for f in dataclasses.fields(TrainingArguments) if f.init}
    _check_keys("TrainingArguments", values, allowed)
    kwargs = dict(values)
    if output_dir is not None:
        kwargs["output_dir"] = output_dir
    if not kwargs.get("output_dir"):
        raise ConfigError(
            "training_config.TrainingArguments.output_dir: required (where the adapter is written, e.g. "
            "/mnt/results), or pass --output-dir"
        )
    # No experiment trackers inside a pod unless asked for; intermediate checkpoints only when asked for (the
    # final adapter is always written).
    kwargs.setdefault("report_to", "none")
    kwargs.setdefault("save_strategy", "no")
    # Progress every 10 steps, not transformers' 500: a small tuning job would otherwise log nothing.
    kwargs.setdefault("logging_steps", 10)
    # tqdm bars are carriage-return noise in `kubectl logs`; the tuning.progress events carry the same numbers.
    kwargs.setdefault("disable_tqdm", True)
    try:
        return TrainingArguments(**kwargs)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"training_config.TrainingArguments: {e}") from e


def _dataclass_section(section: str, cls: type[DatasetConfig], values: dict[str, Any]) -> DatasetConfig:
    allowed = {f.name for f in dataclasses.fields(cls)}
    _check_keys(section, values, allowed)
    for f in dataclasses.fields(cls):
        if f.name in values and values[f.name] is not None:
            _check_type(section, f.name, values[f.name], str(f.type))
    return cls(**values)


def _check_type(section: str, key: str, value: Any, annotation: str) -> None:
    expected: tuple[type, ...]
    if annotation.startswith("bool"):
        expected = (bool,)
    elif annotation.startswith("int"):
        expected = (int,)
    elif annotation.startswith("float"):
        expected = (int, float)
    else:
        expected = (str,)
    if not isinstance(value, expected) or (expected != (bool,) and isinstance(value, bool)):
        raise ConfigError(
            f"training_config.{section}.{key}: {value!r} is a {type(value).__name__}; expected "
            f"{annotation.split(' ')[0]}"
        )


def _collator_config(values: dict[str, Any]) -> CollatorConfig:
    _check_keys("DataCollator", values, _COLLATOR_KEYS)
    if values.get("mlm"):
        raise ConfigError(
            "training_config.DataCollator.mlm: true selects masked-language modelling, which causal language "
            "models do not do; set mlm: false (or remove it)"
        )
    pad = values.get("pad_to_multiple_of")
    if pad is not None and (not isinstance(pad, int) or isinstance(pad, bool) or pad < 1):
        raise ConfigError(f"training_config.DataCollator.pad_to_multiple_of: {pad!r}; expected a positive integer")
    return CollatorConfig(pad_to_multiple_of=pad)
