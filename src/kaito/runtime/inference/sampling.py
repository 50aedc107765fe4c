"""Per-request sampling parameters and the batched next-token chooser.

The semantics follow transformers' logits processors (the seed's ``generate_kwargs``) and the OpenAI API:
repetition penalty first (CTRL paper: divide positive logits, multiply negative ones, over prompt and output
tokens), then OpenAI's frequency/presence penalties (``logit -= count * frequency + (count > 0) * presence``, over
output tokens), then temperature, top-k, top-p (nucleus: keep the smallest set whose probability reaches ``top_p``,
always at least one token). ``temperature == 0`` or ``do_sample=False`` means greedy (argmax), which depends on
nothing but the logits, so a greedy request's output does not depend on the other requests in its batch.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import torch

MAX_STOP_STRINGS = 16
"""Stop strings per request (OpenAI allows 4; a few more cost nothing)."""


@dataclass(frozen=True)
class SamplingParams:
    """How one request chooses its tokens and when it stops.

    Attributes:
        max_tokens: most tokens to generate (>= 1); generation also stops at the model's context window.
        temperature: 0 means greedy; > 0 divides the logits before sampling (OpenAI range 0..2).
        top_p: nucleus probability mass in (0, 1]; 1 disables it.
        top_k: keep only the k most likely tokens; 0 disables it.
        repetition_penalty: > 0; 1 disables it (transformers' ``RepetitionPenaltyLogitsProcessor``).
        frequency_penalty / presence_penalty: OpenAI's penalties in [-2, 2]; 0 disables them.
        stop: strings that end generation; the returned text stops before the first one.
        seed: seeds this request's own random generator, so a sampled request is reproducible.
        ignore_eos: keep generating past the end-of-sequence token (benchmarks use it).
        min_tokens: the EOS token is masked until this many tokens were generated (transformers' ``min_length``
            counted in new tokens).
    """

    max_tokens: int = 16
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    repetition_penalty: float = 1.0
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    stop: tuple[str, ...] = ()
    seed: int | None = None
    ignore_eos: bool = False
    min_tokens: int = 0

    @property
    def greedy(self) -> bool:
        """True when the next token is the argmax of the logits (temperature 0)."""
        return self.temperature == 0.0

    @property
    def needs_processing(self) -> bool:
        """True when the logits need more than argmax/softmax (penalties, top-k/p)."""
        return (
            self.repetition_penalty != 1.0
            or self.frequency_penalty != 0.0
            or self.presence_penalty != 0.0
            or self.min_tokens > 0
        )


@dataclass
class SamplerState:
    """The per-sequence state the sampler needs: its generator and the tokens seen so far."""

    params: SamplingParams
    prompt_ids: list[int]
    output_ids: list[int] = field(default_factory=list)
    generator: torch.Generator | None = None

    def __post_init__(self) -> None:
        if not self.params.greedy:
            self.generator = torch.Generator()
            seed = self.params.seed if self.params.seed is not None else random.getrandbits(63)
            self.generator.manual_seed(seed % 2**64)  # any JSON integer is a valid seed; torch takes 64 bits


def _process_row(logits: torch.Tensor, state: SamplerState, eos_ids: tuple[int, ...]) -> torch.Tensor:
    """Apply penalties to one row of float32 logits ``[vocab]`` (returns a new tensor)."""
    p = state.params
    logits = logits.clone()
    if p.repetition_penalty != 1.0:
        seen = torch.tensor(sorted(set(state.prompt_ids) | set(state.output_ids)), dtype=torch.long)
        if seen.numel():
            seen = seen[seen < logits.shape[0]]
            vals = logits[seen]
            logits[seen] = torch.where(vals > 0, vals / p.repetition_penalty, vals * p.repetition_penalty)
    if (p.frequency_penalty != 0.0 or p.presence_penalty != 0.0) and state.output_ids:
        ids, counts = torch.tensor(state.output_ids, dtype=torch.long).unique(return_counts=True)
        logits[ids] -= counts.to(logits.dtype) * p.frequency_penalty + p.presence_penalty
    if p.min_tokens > len(state.output_ids) and not p.ignore_eos:
        for eos in eos_ids:
            if 0 <= eos < logits.shape[0]:
                logits[eos] = float("-inf")
    return logits


def _sample_row(logits: torch.Tensor, state: SamplerState) -> int:
    """Sample one token from one processed row ``[vocab]`` with temperature, top-k and top-p."""
    p = state.params
    logits = logits / p.temperature
    if 0 < p.top_k < logits.shape[0]:
        kth = torch.topk(logits, p.top_k).values[-1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if p.top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True)
        cum = sorted_logits.softmax(-1).cumsum(-1)
        # drop a token when the mass before it already reaches top_p; the first token always stays
        drop = (cum - sorted_logits.softmax(-1)) >= p.top_p
        drop[0] = False
        logits = logits.masked_fill(torch.zeros_like(drop).scatter(0, order, drop), float("-inf"))
    probs = logits.softmax(-1)
    return int(torch.multinomial(probs, 1, generator=state.generator).item())


def choose_tokens(logits: torch.Tensor, states: list[SamplerState], eos_ids: tuple[int, ...]) -> list[int]:
    """Pick the next token of every sequence in a batch.

    Args:
        logits: ``[batch, vocab]`` next-token logits (any float dtype), row ``i`` belonging to ``states[i]``.
        states: one :class:`SamplerState` per row; not modified (the caller appends the chosen token).
        eos_ids: end-of-sequence token ids (masked while ``min_tokens`` is not reached).

    Returns:
        One token id per row. Greedy rows without penalties are one vectorised argmax over the batch.
    """
    if logits.shape[0] != len(states):
        raise ValueError(f"logits has {logits.shape[0]} rows for {len(states)} sequences")
    logits = logits.float()
    out = logits.argmax(-1).tolist()
    for i, state in enumerate(states):
        if state.params.greedy and not state.params.needs_processing:
            continue
        row = _process_row(logits[i], state, eos_ids) if state.params.needs_processing else logits[i]
        out[i] = int(row.argmax().item()) if state.params.greedy else _sample_row(row, state)
    return [int(t) for t in out]
