"""Prefix caching: the keys and values of prompt prefixes that requests share, kept between requests.

Chat requests repeat their beginning: SmolLM2's chat template alone puts a 24-token system prompt in front of every
user message (the benchmark's prompts are 58-63 tokens, so 40 % of each prefill is that prefix), and applications
add their own system prompts and few-shot examples. A token's keys and values depend only on the tokens up to it,
so once a prefix has been prefilled its KV can be copied into the next request's slot and only the rest of the
prompt needs computing.

Prompts are cut into blocks of :data:`BLOCK_TOKENS` tokens. A block is identified by a digest chained over every
token before it and the adapter it was computed with (LoRA on ``v_proj`` changes the values), so a block is only
reused after exactly the same tokens under the same adapter. Full blocks are stored after every prefill; a lookup
returns the longest chain of stored blocks at the start of a prompt, never covering its last token (the prefill
must run at least that one to produce the next token's logits). Blocks are evicted least recently used once their
bytes pass the capacity. The same design as vLLM's automatic prefix caching, over our dense slot cache: a hit is a
copy into the slot, not shared memory.
"""

from __future__ import annotations

import array
import collections
import hashlib
from collections.abc import Callable
from dataclasses import dataclass

import torch

BLOCK_TOKENS = 16
"""Tokens per cached block: vLLM's default block size, small enough that a system prompt wastes under one block."""


@dataclass
class CachedBlock:
    """The keys and values of one block: ``kv[layer, 0 (keys) | 1 (values), kv_head, position, head_dim]``."""

    kv: torch.Tensor


def block_digests(prompt: list[int], adapter: str | None, limit: int) -> list[bytes]:
    """The chained digests of the full blocks within the first ``limit`` tokens of ``prompt``."""
    digest = hashlib.blake2b(f"adapter={adapter or ''}".encode(), digest_size=16).digest()
    out: list[bytes] = []
    for start in range(0, limit - BLOCK_TOKENS + 1, BLOCK_TOKENS):
        block = array.array("q", prompt[start : start + BLOCK_TOKENS]).tobytes()
        digest = hashlib.blake2b(digest + block, digest_size=16).digest()
        out.append(digest)
    return out


def common_prefix_length(prompts: list[list[int]]) -> int:
    """Number of leading tokens all ``prompts`` share."""
    first = prompts[0]
    for index in range(min(len(p) for p in prompts)):
        if any(p[index] != first[index] for p in prompts):
            return index
    return min(len(p) for p in prompts)


class PrefixCache:
    """LRU store of prompt-prefix KV blocks.

    Args:
        capacity_bytes: most bytes of keys and values kept (``--prefix-cache-mib``); 0 disables the cache.
        bytes_per_token: KV bytes of one token over all layers (``SlotKVCache.bytes_per_position``).

    Not thread-safe: only the engine's worker thread uses it.
    """

    def __init__(self, capacity_bytes: int, bytes_per_token: int) -> None:
        self.capacity_bytes = capacity_bytes
        self.block_bytes = bytes_per_token * BLOCK_TOKENS
        self._blocks: collections.OrderedDict[bytes, CachedBlock] = collections.OrderedDict()
        self.hit_tokens = 0
        """Prompt tokens served from the cache since start."""

    @property
    def enabled(self) -> bool:
        """False when the capacity holds not even one block."""
        return self.capacity_bytes >= self.block_bytes

    @property
    def used_bytes(self) -> int:
        """Bytes of the blocks held now."""
        return len(self._blocks) * self.block_bytes

    def match(self, prompt: list[int], adapter: str | None) -> list[CachedBlock]:
        """The stored blocks that start ``prompt``, in order (at most ``len(prompt) - 1`` tokens' worth)."""
        if not self.enabled:
            return []
        found: list[CachedBlock] = []
        for digest in block_digests(prompt, adapter, len(prompt) - 1):
            block = self._blocks.get(digest)
            if block is None:
                break
            self._blocks.move_to_end(digest)
            found.append(block)
        return found

    def store(self, prompt: list[int], adapter: str | None, read: Callable[[int, int], torch.Tensor]) -> int:
        """Store the full blocks of ``prompt`` not yet held, right after its prefill; ``read(start, end)`` returns
        their KV from the slot as ``[layer, 2, kv_head, end - start, head_dim]`` (a copy). Returns the number of
        blocks added (those already held only become most recently used)."""
        if not self.enabled:
            return 0
        added = 0
        for index, digest in enumerate(block_digests(prompt, adapter, len(prompt))):
            if digest in self._blocks:
                self._blocks.move_to_end(digest)
                continue
            start = index * BLOCK_TOKENS
            self._blocks[digest] = CachedBlock(read(start, start + BLOCK_TOKENS))
            added += 1
        while self.used_bytes > self.capacity_bytes:
            self._blocks.popitem(last=False)
        return added
