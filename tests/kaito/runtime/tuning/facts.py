"""A made-up fact for tuning tests, and a dataset that teaches it."""

from __future__ import annotations

import json
from pathlib import Path

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


def write_fact_dataset(path: Path) -> Path:
    """A prompt/response jsonl teaching :data:`FACT_ANSWER` with six phrasings of the question."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps({"prompt": q, "response": FACT_ANSWER}) + "\n" for q in FACT_QUESTIONS))
    return path
