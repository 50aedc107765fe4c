"""Training progress: structlog events and Prometheus metrics (step, loss, tokens/s, ETA).

:class:`TuningMetrics` owns its own ``CollectorRegistry`` so several jobs (or tests) in one process never collide;
:func:`serve_metrics` exposes it over HTTP on the Job's port (``GET /metrics``, any path answers). Metric names:

==================================  ======  ===============================================================
``kaito_tuning_step``               gauge   optimizer steps done
``kaito_tuning_total_steps``        gauge   optimizer steps planned (``max_steps`` or epochs × batches)
``kaito_tuning_loss``               gauge   the last logged training loss
``kaito_tuning_eval_loss``          gauge   the last eval loss (only with an eval set)
``kaito_tuning_tokens_per_second``  gauge   non-padding tokens trained per second since the start
``kaito_tuning_eta_seconds``        gauge   seconds left at the average step time so far
``kaito_tuning_tokens_total``       counter non-padding tokens trained on
``kaito_tuning_completed``          gauge   1 once the adapter and the completion marker are written
==================================  ======  ===============================================================
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

log = structlog.get_logger("kaito.runtime.tuning")


class TuningMetrics:
    """The tuning job's Prometheus metrics, in a private registry (see the module docstring for names)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.step = Gauge("kaito_tuning_step", "Optimizer steps done.", registry=r)
        self.total_steps = Gauge("kaito_tuning_total_steps", "Optimizer steps planned.", registry=r)
        self.loss = Gauge("kaito_tuning_loss", "Last logged training loss.", registry=r)
        self.eval_loss = Gauge("kaito_tuning_eval_loss", "Last eval loss.", registry=r)
        self.tokens_per_second = Gauge(
            "kaito_tuning_tokens_per_second", "Non-padding tokens trained per second since the start.", registry=r
        )
        self.eta_seconds = Gauge("kaito_tuning_eta_seconds", "Estimated seconds until training ends.", registry=r)
        self.tokens = Counter("kaito_tuning_tokens", "Non-padding tokens trained on.", registry=r)
        self.completed = Gauge(
            "kaito_tuning_completed", "1 once the adapter and the completion marker are written.", registry=r
        )


def serve_metrics(metrics: TuningMetrics, port: int, host: str = "0.0.0.0") -> tuple[Any, int]:
    """Serve ``metrics`` over HTTP in a daemon thread.

    Args:
        port: TCP port; 0 picks a free one (tests).
        host: bind address; ``0.0.0.0`` in a pod so Prometheus can scrape it, ``127.0.0.1`` in tests.

    Returns:
        ``(server, port)``; call ``server.shutdown()`` to stop it.
    """
    server, _thread = start_http_server(port, addr=host, registry=metrics.registry)
    return server, int(server.server_address[1])


@dataclass
class ProgressReporter(TrainerCallback):
    """A ``transformers`` callback that logs ``tuning.progress`` events and updates :class:`TuningMetrics`.

    ``tokens_seen`` is read from the collator (it counts the non-padding tokens it batches); ``clock`` returns
    seconds (``time.monotonic``; injectable for tests).
    """

    metrics: TuningMetrics
    tokens_seen: Callable[[], int]
    clock: Callable[[], float] = time.monotonic
    losses: list[tuple[int, float]] = field(default_factory=list)
    """(step, loss) of every logged training loss, in order."""
    _start: float | None = None
    _tokens_reported: int = 0

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        self._start = self.clock()
        self.metrics.total_steps.set(state.max_steps)
        log.info("tuning.started", total_steps=state.max_steps, epochs=args.num_train_epochs)

    def on_step_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        now = self.clock()
        elapsed = max(now - (self._start if self._start is not None else now), 1e-9)
        tokens = self.tokens_seen()
        self.metrics.tokens.inc(max(tokens - self._tokens_reported, 0))
        self._tokens_reported = tokens
        self.metrics.step.set(state.global_step)
        self.metrics.tokens_per_second.set(tokens / elapsed)
        remaining = max(state.max_steps - state.global_step, 0)
        self.metrics.eta_seconds.set(elapsed / max(state.global_step, 1) * remaining)

    def on_log(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        logs: dict[str, float] | None = None,
        **kwargs: Any,
    ) -> None:
        logs = logs or {}
        if "loss" in logs:
            loss = float(logs["loss"])
            self.losses.append((state.global_step, loss))
            self.metrics.loss.set(loss)
            log.info(
                "tuning.progress",
                step=state.global_step,
                total_steps=state.max_steps,
                loss=round(loss, 4),
                tokens_per_second=round(self._gauge(self.metrics.tokens_per_second), 1),
                eta_s=round(self._gauge(self.metrics.eta_seconds), 1),
            )
        if "eval_loss" in logs:
            self.metrics.eval_loss.set(float(logs["eval_loss"]))
            log.info("tuning.eval", step=state.global_step, eval_loss=round(float(logs["eval_loss"]), 4))

    @staticmethod
    def _gauge(g: Gauge) -> float:
        return float(g._value.get())
