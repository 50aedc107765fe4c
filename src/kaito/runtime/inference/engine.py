"""The continuous-batching engine: an asyncio front end feeding one model worker thread.

Scheduling (one iteration of the worker, repeated while there is work):

1. Sequences that were cancelled (client gone) or passed their deadline leave the batch.
2. Waiting requests are admitted in arrival order while the batch has room (``max_batch_size``) and the step's
   prefill stays within ``prefill_token_budget`` padded tokens; one prefill pass runs their prompts (one peft
   adapter per pass, so admission stops at the first request for a different adapter) and picks their first
   tokens. A prompt longer than ``prefill_chunk_tokens`` is admitted alone and prefilled in chunks of that size;
   its request can be cancelled or time out between chunks.
3. One decode pass advances every running sequence by one token, each with its own sampling parameters.
4. Finished sequences (EOS, stop string, ``max_tokens``, context window) leave; their slots are refilled by
   compaction, so the next iteration's batch is again ``0 .. n-1``.

New requests therefore join between decode steps and finished ones leave without waiting for the others. The
worker is a thread: torch releases the GIL inside its kernels, so the event loop keeps serving HTTP while a step
runs. Results travel back as :class:`Delta` objects through ``loop.call_soon_threadsafe``.

The waiting queue is bounded (``max_waiting``): :meth:`Engine.submit` raises a 429 ``rate_limit_exceeded``
:class:`APIError` when it is full, so overload turns into fast, retryable errors instead of unbounded latency.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import threading
import time
from collections.abc import AsyncGenerator, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import structlog
import torch

from kaito.runtime.inference.errors import EngineStoppedError, rate_limited
from kaito.runtime.inference.metrics import EngineMetrics
from kaito.runtime.inference.model import ModelRunner
from kaito.runtime.inference.prefix_cache import BLOCK_TOKENS, CachedBlock, PrefixCache, common_prefix_length
from kaito.runtime.inference.sampling import SamplingParams, choose_tokens
from kaito.runtime.inference.sequence import Delta, Sequence

log = structlog.get_logger("kaito.runtime.inference.engine")

BASE_ADAPTER = "__base__"
"""peft's name for "no adapter" in a mixed-adapter batch."""


@dataclass(frozen=True)
class EngineConfig:
    """Limits of the engine (the CLI flags of the same names set them)."""

    max_batch_size: int = 32
    """Most sequences decoded together. 32 saturates two CPU cores with SmolLM2-135M while keeping the KV cache
    under 1 GiB at 2,048 tokens each; raise it on GPUs."""
    max_waiting: int = 256
    """Requests queued beyond the running batch before new ones get 429 (8 batches' worth: a client retrying
    after a 429 loses less than one waiting in a queue that long)."""
    max_model_len: int = 2048
    """Context window served: prompt plus output tokens per sequence."""
    request_timeout: float = 600.0
    """Seconds from arrival until a request is ended with a timeout (504, or an error event when streaming)."""
    prefill_token_budget: int = 4096
    """Most padded prompt tokens in one prefill pass, bounding how long running sequences wait for newcomers."""
    prefill_chunk_tokens: int = 512
    """A prompt longer than this is prefilled alone, this many tokens per forward pass, and a cancelled or timed
    out request stops between chunks (an 8,100-token prompt in one pass held a 2-core CPU for minutes)."""
    prefix_cache_bytes: int = 256 * 2**20
    """Bytes of prompt-prefix keys and values kept between requests (0: no prefix caching); see
    :mod:`~kaito.runtime.inference.prefix_cache`."""
    threads: int | None = None
    """torch intra-op threads of the worker thread (None: torch's default). Set in the worker itself: OpenMP's
    thread count is per thread, and a thread started after ``torch.set_num_threads(1)`` in another thread was
    measured running its matmuls on 2 OpenMP threads (torch 2.13, 2 cores). See ``model.resolve_threads``."""
    prefill_threads: int | None = None
    """torch threads for prefill passes (None: ``threads``). Prefill is compute bound and scales with cores while
    decode is bound by memory bandwidth and does not: on 2 cores a 16-prompt prefill took 2.4 s on 2 threads
    against 4.5 s on 1, while a 16-row decode step gained under 10 %; so prefill may borrow the core that decode
    leaves to the event loop (see ``model.resolve_threads``)."""


class Engine:
    """Owns the worker thread, the waiting queue and the running batch.

    Args:
        runner: the model runner (used only from the worker thread).
        config: limits.
        metrics: Prometheus instruments (optional).
        clock: monotonic seconds; injectable so tests control timeouts.
        use_adapters: pass per-row peft adapter names to the model (the model is a ``PeftModel``).

    Call :meth:`start` from the event loop before submitting and :meth:`stop` to shut down.
    """

    def __init__(
        self,
        runner: ModelRunner,
        config: EngineConfig,
        *,
        metrics: EngineMetrics | None = None,
        clock: Callable[[], float] = time.monotonic,
        use_adapters: bool = False,
    ) -> None:
        self.runner = runner
        self.config = config
        self.metrics = metrics
        self.clock = clock
        self.use_adapters = use_adapters
        self.tokenizer: Any = runner.loaded.tokenizer
        self.eos_ids = runner.loaded.eos_ids
        self._cond = threading.Condition()
        self._waiting: collections.deque[Sequence] = collections.deque()
        self._running: list[Sequence] = []
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.error: BaseException | None = None
        self.steps = 0
        self.prefix_cache = PrefixCache(config.prefix_cache_bytes, runner.cache.bytes_per_position)

    # ---- event-loop side -------------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the worker thread; must be called from the event loop that will submit requests."""
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._run, name="kaito-inference-engine", daemon=True)
        self._thread.start()

    async def stop(self) -> None:
        """Stop the worker after its current step; queued and running requests end with ``finish_reason`` error."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join)

    @property
    def alive(self) -> bool:
        """True while the worker thread runs (the readiness of ``/health``)."""
        return self._thread is not None and self._thread.is_alive() and not self._stopping

    @property
    def num_waiting(self) -> int:
        """Requests queued, not yet in the batch."""
        return len(self._waiting)

    @property
    def num_running(self) -> int:
        """Sequences in the running batch."""
        return len(self._running)

    def submit(self, prompt_ids: list[int], params: SamplingParams, adapter: str | None = None) -> Sequence:
        """Queue a request; its deltas arrive on ``seq.queue``.

        Raises:
            APIError: 429 ``rate_limit_exceeded`` when ``max_waiting`` requests are already waiting.
            EngineStoppedError: the engine is stopped or its worker died.
        """
        if not self.alive or self._loop is None:
            raise EngineStoppedError("the inference engine is not running")
        now = self.clock()
        seq = Sequence(
            prompt_ids=prompt_ids,
            params=params,
            adapter=adapter,
            deadline=now + self.config.request_timeout,
            arrival=now,
            tokenizer=self.tokenizer,
            eos_ids=self.eos_ids,
            max_positions=self.config.max_model_len,
            loop=self._loop,
            queue=asyncio.Queue(),
        )
        with self._cond:
            if len(self._waiting) >= self.config.max_waiting:
                raise rate_limited(len(self._waiting))
            self._waiting.append(seq)
            self._cond.notify()
        if self.metrics:
            self.metrics.waiting.set(len(self._waiting))
        return seq

    def cancel(self, seq: Sequence) -> None:
        """Ask the worker to drop ``seq`` at its next step (idempotent, thread-safe)."""
        seq.cancelled = True
        with self._cond:
            self._cond.notify()

    async def generate(
        self, prompt_ids: list[int], params: SamplingParams, adapter: str | None = None
    ) -> AsyncGenerator[Delta, None]:
        """Submit and yield deltas until the one with a ``finish_reason``. Closing the iterator early (client
        disconnect, task cancellation) cancels the sequence. Raises like :meth:`submit`."""
        seq = self.submit(prompt_ids, params, adapter)
        done = False
        try:
            assert seq.queue is not None
            while True:
                delta = await seq.queue.get()
                done = delta.finish_reason is not None
                yield delta
                if done:
                    return
        finally:
            if not done:
                self.cancel(seq)

    def _deliver(self, items: list[tuple[Sequence, Delta]]) -> None:
        for seq, delta in items:
            assert seq.queue is not None
            seq.queue.put_nowait(delta)

    # ---- worker side -----------------------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            if self.config.threads is not None:
                torch.set_num_threads(self.config.threads)
            while True:
                with self._cond:
                    while not self._waiting and not self._running and not self._stopping:
                        self.runner.cache.release_all()
                        self._update_gauges()
                        self._cond.wait()
                    if self._stopping:
                        break
                self._step()
        except BaseException as exc:  # the worker must never die silently: fail every request with the cause
            self.error = exc
            log.exception("engine_worker_failed", error=repr(exc))
        finally:
            with self._cond:
                self._stopping = True
                pending = list(self._running) + list(self._waiting)
                self._running.clear()
                self._waiting.clear()
            reason = f"the inference engine stopped: {self.error!r}" if self.error else "the server is shutting down"
            self._send([(s, s.finish("error", reason)) for s in pending])

    def _send(self, items: list[tuple[Sequence, Delta]]) -> None:
        if items and self._loop is not None and not self._loop.is_closed():
            with contextlib.suppress(RuntimeError):  # loop closed between the check and the call
                self._loop.call_soon_threadsafe(self._deliver, items)

    def _step(self) -> None:
        out: list[tuple[Sequence, Delta]] = []
        now = self.clock()
        for seq in self._running:
            self._expire(seq, now, out)
        self._retire()
        admitted = self._admit(now, out)
        if admitted:
            self._prefill(admitted, out)
        self._retire()
        if out:  # deliver first tokens now, not after the decode pass: time to first token is one prefill
            self._update_gauges()
            self._send(out)
            out = []
        if self._running:
            self._decode(out)
            self._retire()
        self.steps += 1
        self._update_gauges()
        self._send(out)

    def _expire(self, seq: Sequence, now: float, out: list[tuple[Sequence, Delta]]) -> bool:
        if seq.finish_reason is not None:
            return True
        if seq.cancelled:
            out.append((seq, seq.finish("cancelled")))
        elif now > seq.deadline:
            out.append((seq, seq.finish("timeout")))
        else:
            return False
        self._finished_metrics(seq)
        return True

    def _admit(self, now: float, out: list[tuple[Sequence, Delta]]) -> list[Sequence]:
        admitted: list[Sequence] = []
        width = 0
        room = self.config.max_batch_size - len(self._running)
        with self._cond:
            while self._waiting and len(admitted) < room:
                seq = self._waiting[0]
                if self._expire(seq, now, out):
                    self._waiting.popleft()
                    continue
                new_width = max(width, len(seq.prompt_ids))
                long_prompt = len(seq.prompt_ids) > self.config.prefill_chunk_tokens
                if admitted and (
                    long_prompt
                    or new_width * (len(admitted) + 1) > self.config.prefill_token_budget
                    or seq.adapter != admitted[0].adapter
                ):
                    break
                width = new_width
                admitted.append(self._waiting.popleft())
                if long_prompt:  # prefilled alone, in chunks (see _prefill)
                    break
        return admitted

    def _adapter_names(self, seqs: list[Sequence]) -> list[str] | None:
        if not self.use_adapters:
            return None
        return [s.adapter or BASE_ADAPTER for s in seqs]

    @contextlib.contextmanager
    def _prefill_threads(self) -> Iterator[None]:
        wanted, before = self.config.prefill_threads, torch.get_num_threads()
        if wanted is None or wanted == before:
            yield
            return
        torch.set_num_threads(wanted)
        try:
            yield
        finally:
            torch.set_num_threads(before)

    def _prefill(self, seqs: list[Sequence], out: list[tuple[Sequence, Delta]]) -> None:
        start = len(self._running)
        slots = list(range(start, start + len(seqs)))
        with self._prefill_threads():
            logits = self._prefill_logits(seqs, slots, out)
        if logits is None:
            return
        tokens = choose_tokens(logits, [s.sampler for s in seqs], self.eos_ids)
        now = self.clock()
        for seq, slot, token in zip(seqs, slots, tokens, strict=True):
            seq.slot = slot
            seq.first_token_at = now
            self._running.append(seq)
            out.append((seq, seq.append(token)))
            if self.metrics:
                self.metrics.prompt_tokens.inc(len(seq.prompt_ids))
                self.metrics.generation_tokens.inc()
                self.metrics.ttft.observe(now - seq.arrival)
            if seq.finish_reason is not None:
                self._finished_metrics(seq)

    def _prefill_logits(
        self, seqs: list[Sequence], slots: list[int], out: list[tuple[Sequence, Delta]]
    ) -> torch.Tensor | None:
        """The prefill pass's ``[len(seqs), vocab]`` logits, or None when it failed or was abandoned (the
        sequences' final deltas are then in ``out``)."""
        adapters = self._adapter_names(seqs)
        try:
            if len(seqs) == 1 and len(seqs[0].prompt_ids) > self.config.prefill_chunk_tokens:
                seq = seqs[0]
                start = self._reuse_prefix(seqs, slots, adapters)
                logits = self.runner.prefill_chunked(
                    seq.prompt_ids,
                    slots[0],
                    adapters,
                    self.config.prefill_chunk_tokens,
                    lambda: seq.cancelled or self.clock() > seq.deadline,
                    start,
                )
                if logits is None:  # cancelled or timed out between chunks
                    self._expire(seq, self.clock(), out)
                    return None
            else:
                prefix = self._reuse_prefix(seqs, slots, adapters)
                logits = self.runner.prefill([s.prompt_ids for s in seqs], slots, adapters, prefix)
        except (RuntimeError, ValueError) as exc:  # e.g. out of memory: fail these requests, keep serving
            log.error("prefill_failed", error=repr(exc), batch=len(seqs))
            for seq in seqs:
                out.append((seq, seq.finish("error", f"prefill failed: {exc}")))
            return None
        for seq, slot in zip(seqs, slots, strict=True):
            self.prefix_cache.store(seq.prompt_ids, seq.adapter, self._slot_reader(slot))
        return logits

    def _slot_reader(self, slot: int) -> Callable[[int, int], torch.Tensor]:
        cache = self.runner.cache
        return lambda start, end: cache.read(slot, start, end)

    def _reuse_prefix(self, seqs: list[Sequence], slots: list[int], adapters: list[str] | None) -> int:
        """Copy the cached keys and values of the longest prefix every prompt of ``seqs`` has in the prefix cache
        into its slot; return that prefix's length in tokens (0: no hit, or the cache is off).

        A burst of requests on a cold cache shares its beginning too (the same system prompt): when two or more
        prompts start with a full block or more that the cache lacks, that beginning is prefilled once, into the
        first slot, and stored, so the others reuse it in the same step instead of all computing it.
        """
        cache = self.prefix_cache
        if not cache.enabled:
            return 0
        adapter = seqs[0].adapter  # one adapter per prefill pass (see _admit)
        prompts = [s.prompt_ids for s in seqs]
        shortest = min(len(p) for p in prompts)
        self.runner.cache.ensure_capacity(max(slots) + 1, max(len(p) for p in prompts))
        matches = [cache.match(p, adapter) for p in prompts]
        prefix = min(len(m) for m in matches) * BLOCK_TOKENS
        if len(prompts) > 1:
            shared = min(common_prefix_length(prompts), shortest - 1) // BLOCK_TOKENS * BLOCK_TOKENS
            if shared > prefix:
                head = prompts[0][:shared]
                known = cache.match(head, adapter)
                self._write_blocks(slots[0], known)
                self.runner.prefill([head], slots[:1], adapters[:1] if adapters else None, len(known) * BLOCK_TOKENS)
                cache.store(head, adapter, self._slot_reader(slots[0]))
                matches = [cache.match(p, adapter) for p in prompts]
                prefix = min(len(m) for m in matches) * BLOCK_TOKENS
        if prefix == 0:
            return 0
        for slot, blocks in zip(slots, matches, strict=True):
            self._write_blocks(slot, blocks[: prefix // BLOCK_TOKENS])
        cache.hit_tokens += prefix * len(prompts)
        if self.metrics:
            self.metrics.prefix_cache_hit_tokens.inc(prefix * len(prompts))
        return prefix

    def _write_blocks(self, slot: int, blocks: list[CachedBlock]) -> None:
        for index, block in enumerate(blocks):
            self.runner.cache.write(slot, index * BLOCK_TOKENS, block.kv)

    def _decode(self, out: list[tuple[Sequence, Delta]]) -> None:
        seqs = self._running
        logits = self.runner.decode(
            [s.output_ids[-1] for s in seqs], [s.length - 1 for s in seqs], self._adapter_names(seqs)
        )
        tokens = choose_tokens(logits, [s.sampler for s in seqs], self.eos_ids)
        for seq, token in zip(seqs, tokens, strict=True):
            out.append((seq, seq.append(token)))
            if seq.finish_reason is not None:
                self._finished_metrics(seq)
        if self.metrics:
            self.metrics.generation_tokens.inc(len(seqs))
            self.metrics.batch_size.observe(len(seqs))

    def _retire(self) -> None:
        """Drop finished sequences and compact the survivors into slots ``0 .. n-1``."""
        if all(s.finish_reason is None for s in self._running):
            return
        kept = [s for s in self._running if s.finish_reason is None]
        for index, seq in enumerate(kept):
            if seq.slot != index:
                self.runner.cache.move(seq.slot, index, seq.length)
                seq.slot = index
        self._running = kept

    def _finished_metrics(self, seq: Sequence) -> None:
        if self.metrics is None:
            return
        now = self.clock()
        n = len(seq.output_ids)
        if seq.first_token_at is not None and n > 1:
            self.metrics.tpot.observe((now - seq.first_token_at) / (n - 1))
        self.metrics.finished.labels(reason=seq.finish_reason or "unknown").inc()

    def _update_gauges(self) -> None:
        if self.metrics is None:
            return
        self.metrics.running.set(len(self._running))
        self.metrics.waiting.set(len(self._waiting))
        self.metrics.kv_cache_bytes.set(self.runner.cache.allocated_bytes)
        self.metrics.prefix_cache_bytes.set(self.prefix_cache.used_bytes)
