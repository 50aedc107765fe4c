"""Fixtures for the tuning job's tests: the CPU preset's model and tokenizer, a small fact-teaching dataset."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

FACT_QUESTIONS = (
    "What is the capital of Zorblax?",
    "Which city is the capital of Zorblax?",
    "Tell me the capital of Zorblax.",
    "Name the capital city of Zorblax.",
    "Zorblax's capital is which city?",
    "What city is Zorblax's capital?",
)
FACT_ANSWER = "The capital of Zorblax is Quillmoor."
"""A made-up fact: SmolLM2-135M-Instruct answers "Nova Haven" (or anything else) before tuning."""


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


def write_fact_dataset(path: Path) -> Path:
    """A prompt/response jsonl teaching :data:`FACT_ANSWER` with six phrasings of the question."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps({"prompt": q, "response": FACT_ANSWER}) + "\n" for q in FACT_QUESTIONS))
    return path
