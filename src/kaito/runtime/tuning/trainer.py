"""The tuning run: load the base model (optionally 4/8-bit), wrap it with LoRA, train, write a peft adapter.

Output, in ``TrainingArguments.output_dir``: ``adapter_config.json`` + ``adapter_model.safetensors`` (standard peft;
``PeftModel.from_pretrained(base, dir)`` loads it, as the inference server does from ``/mnt/adapter/<name>``), then
the completion marker :data:`COMPLETION_MARKER`, written last and atomically, so a sidecar that waits for it never
pushes a half-written adapter. A stale marker from an earlier run is removed before training starts.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from kaito.runtime import smollm2
from kaito.runtime.tuning.config import TuningConfig
from kaito.runtime.tuning.datasets import CausalCollator, load_dataset
from kaito.runtime.tuning.progress import ProgressReporter, TuningMetrics

log = structlog.get_logger("kaito.runtime.tuning")

COMPLETION_MARKER = "fine_tuning_completed.txt"
"""Written into the output dir after the adapter (upstream Kaito's sentinel name; its push sidecar waits for it).
Holds a JSON summary: method, steps, final loss, adapter files."""

ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")
"""The files a peft LoRA adapter consists of."""


class ModelLoadError(RuntimeError):
    """The base model could not be found or loaded; the message names the path and the fix."""


@dataclass(frozen=True)
class TuningResult:
    """What a finished run produced."""

    output_dir: Path
    method: str
    """``lora`` or ``qlora``."""
    steps: int
    """Optimizer steps done."""
    losses: list[tuple[int, float]] = field(default_factory=list)
    """(step, training loss) at every logging step, in order."""
    train_examples: int = 0
    eval_examples: int = 0
    shape: str = ""
    """The dataset's row shape: ``messages``, ``prompt_response`` or ``text``."""
    duration_s: float = 0.0


def resolve_model(cli_model: str | None, cfg: TuningConfig) -> Path:
    """The base model directory: ``--model`` if given, else ``ModelConfig.pretrained_model_name_or_path``.

    The CPU preset's name ``smollm2-135m-instruct`` resolves to its converted cache directory
    (:func:`kaito.runtime.smollm2.ensure_model_dir`).

    Raises:
        ModelLoadError: nothing given, or the directory has no ``config.json``.
    """
    name = cli_model or cfg.model.pretrained_model_name_or_path
    if not name:
        raise ModelLoadError(
            "no base model: pass --model DIR or set ModelConfig.pretrained_model_name_or_path to the weights directory"
        )
    if name == smollm2.MODEL_NAME:
        try:
            return smollm2.ensure_model_dir()
        except smollm2.ModelUnavailableError as e:
            raise ModelLoadError(str(e)) from e
    path = Path(name)
    if not (path / "config.json").is_file():
        raise ModelLoadError(
            f"model {path}: no config.json there; point --model (or ModelConfig.pretrained_model_name_or_path) at a "
            "Hugging Face model directory"
        )
    return path


def load_tokenizer(model_dir: Path, cfg: TuningConfig) -> Any:
    """Load the model's tokenizer; ``ModelConfig.chat_template`` replaces its template; pad defaults to EOS.

    Raises:
        ModelLoadError: the tokenizer files are missing or unreadable.
    """
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True)
    except (OSError, ValueError) as e:
        raise ModelLoadError(f"model {model_dir}: cannot load the tokenizer ({type(e).__name__}: {e})") from e
    if cfg.model.chat_template:
        tokenizer.chat_template = cfg.model.chat_template
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(model_dir: Path, cfg: TuningConfig) -> Any:
    """Load the base model (quantized for QLoRA, then ``prepare_model_for_kbit_training``) and wrap it with LoRA.

    Raises:
        ModelLoadError: transformers or bitsandbytes failed to load the weights.
    """
    from peft import get_peft_model, prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM

    kwargs = dict(cfg.model.from_pretrained)
    if cfg.quantization is not None:
        kwargs["quantization_config"] = cfg.quantization
    try:
        model = AutoModelForCausalLM.from_pretrained(str(model_dir), **kwargs)
    except (OSError, ValueError, RuntimeError, ImportError) as e:
        raise ModelLoadError(f"model {model_dir}: cannot load ({type(e).__name__}: {e})") from e
    if cfg.quantization is not None:
        model = prepare_model_for_kbit_training(
            model, use_gradient_checkpointing=bool(cfg.training.gradient_checkpointing)
        )
    model.config.use_cache = False  # the KV cache is for generation; training with it only warns and wastes memory
    return get_peft_model(model, cfg.lora)


def run_tuning(
    cfg: TuningConfig,
    *,
    model_dir: Path,
    data_dir: str | Path,
    metrics: TuningMetrics | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> TuningResult:
    """Train a LoRA/QLoRA adapter and write it with the completion marker.

    Args:
        cfg: the parsed config (``cfg.training.output_dir`` is where the adapter goes).
        model_dir: the base model directory (:func:`resolve_model`).
        data_dir: where the dataset files are (``/mnt/data`` in the Job).
        metrics: updated as training progresses; a fresh private set if ``None``.
        clock: seconds, for tokens/s and ETA.

    Raises:
        DatasetError: the data is missing, empty or malformed (raised before the model is trained).
        ModelLoadError: the base model could not be loaded.
        RuntimeError: training failed (e.g. out of memory); the marker is not written.
    """
    from transformers import Trainer

    started = clock()
    metrics = metrics or TuningMetrics()
    out = Path(cfg.training.output_dir or ".")
    out.mkdir(parents=True, exist_ok=True)
    (out / COMPLETION_MARKER).unlink(missing_ok=True)

    # The data is checked before the (slow) model load, so bad data fails in seconds.
    tokenizer = load_tokenizer(model_dir, cfg)
    splits = load_dataset(data_dir, cfg.dataset, tokenizer)
    log.info("tuning.dataset", shape=splits.shape, train_examples=len(splits.train), eval_examples=len(splits.eval))
    log.info("tuning.loading_model", model=str(model_dir), method=cfg.method)
    model = load_model(model_dir, cfg)

    collator = CausalCollator(tokenizer.pad_token_id, cfg.collator.pad_to_multiple_of)
    reporter = ProgressReporter(metrics, tokens_seen=lambda: collator.tokens_seen, clock=clock)
    trainer = Trainer(
        model=model,
        args=cfg.training,
        train_dataset=splits.train,  # type: ignore[arg-type]  # a list is a map-style dataset
        eval_dataset=splits.eval or None,  # type: ignore[arg-type]
        data_collator=collator,
        callbacks=[reporter],
    )
    trainer.train()
    model.save_pretrained(str(out))
    missing = [f for f in ADAPTER_FILES if not (out / f).is_file()]
    if missing:
        raise RuntimeError(f"peft did not write {', '.join(missing)} into {out}")
    result = TuningResult(
        output_dir=out,
        method=cfg.method,
        steps=trainer.state.global_step,
        losses=list(reporter.losses),
        train_examples=len(splits.train),
        eval_examples=len(splits.eval),
        shape=splits.shape,
        duration_s=clock() - started,
    )
    _write_marker(out, result)
    metrics.completed.set(1)
    log.info(
        "tuning.completed",
        output_dir=str(out),
        steps=result.steps,
        final_loss=result.losses[-1][1] if result.losses else None,
        duration_s=round(result.duration_s, 1),
    )
    return result


def _write_marker(out: Path, result: TuningResult) -> None:
    summary = {
        "method": result.method,
        "steps": result.steps,
        "final_loss": result.losses[-1][1] if result.losses else None,
        "files": list(ADAPTER_FILES),
    }
    tmp = out / f".{COMPLETION_MARKER}.tmp"
    tmp.write_text(json.dumps(summary) + "\n")
    os.replace(tmp, out / COMPLETION_MARKER)
