"""Fixtures for the tuning job's tests: the CPU preset's model and tokenizer (the fact dataset is in facts.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest


@pytest.fixture(scope="session")
def model_dir() -> Path:
    from kaito.runtime.smollm2 import ensure_model_dir

    return ensure_model_dir()


@pytest.fixture(scope="session")
def tokenizer(model_dir: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(model_dir))


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Train with one intra-op thread: on a shared 2-core machine two threads oversubscribe and run ~5x slower."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
