"""One request's life inside the engine: its tokens, incremental detokenization and stop conditions.

Detokenization is incremental (the prefix-offset method of text-generation-inference): each step decodes only a
short window of recent tokens, and text ending in U+FFFD (an incomplete UTF-8 sequence) is held back until the
next token completes it. Stop strings are searched in the text as it grows; text that could still become a stop
string is held back from streaming, so a client never sees part of a stop string.
"""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass, field
from typing import Any

from kaito.runtime.inference.sampling import SamplerState, SamplingParams

_ids = itertools.count(1)


@dataclass(frozen=True)
class Delta:
    """What the engine tells a request after a step.

    Attributes:
        text: new output text since the previous delta (may be empty).
        finish_reason: None while running; ``stop`` (EOS or stop string), ``length`` (max_tokens or context
            window), ``timeout`` (per-request timeout), ``cancelled`` or ``error`` when it ended.
        prompt_tokens: tokens in the prompt.
        completion_tokens: tokens generated so far.
        error: the message when ``finish_reason`` is ``error``.
    """

    text: str
    finish_reason: str | None
    prompt_tokens: int
    completion_tokens: int
    error: str | None = None


@dataclass
class Sequence:
    """A request in the engine. Fields written by the worker thread are read by the event loop only through
    :class:`Delta` objects delivered with ``loop.call_soon_threadsafe``."""

    prompt_ids: list[int]
    params: SamplingParams
    adapter: str | None
    deadline: float
    arrival: float
    tokenizer: Any
    eos_ids: tuple[int, ...]
    max_positions: int
    loop: asyncio.AbstractEventLoop | None = None
    queue: asyncio.Queue[Delta] | None = None
    id: int = field(default_factory=lambda: next(_ids))
    cancelled: bool = False
    slot: int = -1
    first_token_at: float | None = None
    finish_reason: str | None = None
    sampler: SamplerState = field(init=False)
    _text: str = ""
    _sent: int = 0
    _prefix_offset: int = 0
    _read_offset: int = 0

    def __post_init__(self) -> None:
        self.sampler = SamplerState(self.params, self.prompt_ids)

    @property
    def output_ids(self) -> list[int]:
        """Generated token ids (EOS excluded)."""
        return self.sampler.output_ids

    @property
    def length(self) -> int:
        """Tokens in the KV cache after the next decode step: prompt plus generated."""
        return len(self.prompt_ids) + len(self.output_ids)

    def append(self, token: int) -> Delta:
        """Add a generated token, update the text and the stop state, and return the delta to deliver."""
        p = self.params
        if token in self.eos_ids and not p.ignore_eos:
            self.finish_reason = "stop"
            return self._flush()
        self.output_ids.append(token)
        self._detokenize()
        if self.finish_reason is None:
            if len(self.output_ids) >= p.max_tokens or self.length >= self.max_positions:
                self.finish_reason = "length"
        if self.finish_reason is not None:
            return self._flush()
        hold = self._stop_prefix_len()
        end = len(self._text) - hold
        text = self._text[self._sent : end] if end > self._sent else ""
        self._sent = max(self._sent, end)
        return Delta(text, None, len(self.prompt_ids), len(self.output_ids))

    def finish(self, reason: str, error: str | None = None) -> Delta:
        """End the sequence for a reason from outside the model (timeout, cancelled, error)."""
        self.finish_reason = reason
        delta = self._flush()
        return Delta(delta.text, reason, delta.prompt_tokens, delta.completion_tokens, error)

    @property
    def text(self) -> str:
        """The output text so far (after stop-string truncation)."""
        return self._text

    def _flush(self) -> Delta:
        text = self._text[self._sent :]
        self._sent = len(self._text)
        return Delta(text, self.finish_reason, len(self.prompt_ids), len(self.output_ids))

    def _detokenize(self) -> None:
        ids = self.output_ids
        decode = self.tokenizer.decode
        prefix = decode(ids[self._prefix_offset : self._read_offset], skip_special_tokens=True)
        full = decode(ids[self._prefix_offset :], skip_special_tokens=True)
        if len(full) <= len(prefix) or full.endswith("\ufffd"):
            return
        before = len(self._text)
        self._text += full[len(prefix) :]
        self._prefix_offset, self._read_offset = self._read_offset, len(ids)
        if self.params.stop:
            longest = max(len(s) for s in self.params.stop)
            start = max(0, before - longest + 1)
            hits = [i for s in self.params.stop if (i := self._text.find(s, start)) >= 0]
            if hits:
                self._text = self._text[: min(hits)]
                self._sent = min(self._sent, len(self._text))
                self.finish_reason = "stop"

    def _stop_prefix_len(self) -> int:
        """Length of the longest tail of the text that is a proper prefix of a stop string (held back)."""
        best = 0
        for s in self.params.stop:
            for k in range(min(len(s) - 1, len(self._text)), best, -1):
                if self._text.endswith(s[:k]):
                    best = k
                    break
        return best
