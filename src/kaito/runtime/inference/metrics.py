"""Prometheus metrics of the inference server, in their own registry (served on ``GET /metrics``).

Names follow Prometheus conventions (base units, ``_total`` counters) under the ``kaito_inference_`` prefix; the
set mirrors what vLLM exports so its dashboards translate directly: requests by endpoint and status, request
latency, time to first token, time per output token, prompt and generation token counters, running and waiting
requests, batch size and KV cache memory.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# seconds: from 5 ms (a cached tiny request on a GPU) to 10 minutes (the default request timeout)
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 40.0, 80.0, 160.0, 600.0)
# seconds per output token: 1 ms (GPU) .. 2.5 s (an overloaded CPU)
_TPOT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 2.5)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class EngineMetrics:
    """All instruments, registered on :attr:`registry` (a fresh one unless given)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "kaito_inference_requests_total",
            "HTTP requests by endpoint and status code",
            ["endpoint", "status"],
            registry=r,
        )
        self.request_latency = Histogram(
            "kaito_inference_request_duration_seconds",
            "Time from request arrival to the last byte of the answer",
            ["endpoint"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.ttft = Histogram(
            "kaito_inference_time_to_first_token_seconds",
            "Time from submission to the first generated token",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.tpot = Histogram(
            "kaito_inference_time_per_output_token_seconds",
            "Mean time between output tokens of a finished request (after the first)",
            buckets=_TPOT_BUCKETS,
            registry=r,
        )
        self.prompt_tokens = Counter(
            "kaito_inference_prompt_tokens_total", "Prompt tokens processed (prefill)", registry=r
        )
        self.generation_tokens = Counter(
            "kaito_inference_generation_tokens_total", "Tokens generated (including a final EOS)", registry=r
        )
        self.finished = Counter(
            "kaito_inference_sequences_finished_total",
            "Sequences that left the engine, by finish reason",
            ["reason"],
            registry=r,
        )
        self.running = Gauge("kaito_inference_requests_running", "Sequences in the running batch", registry=r)
        self.waiting = Gauge("kaito_inference_requests_waiting", "Requests queued for the batch", registry=r)
        self.batch_size = Histogram(
            "kaito_inference_batch_size", "Sequences per decode step", buckets=_BATCH_BUCKETS, registry=r
        )
        self.prefix_cache_hit_tokens = Counter(
            "kaito_inference_prefix_cache_hit_tokens_total",
            "Prompt tokens whose keys and values came from the prefix cache instead of a prefill",
            registry=r,
        )
        self.prefix_cache_bytes = Gauge(
            "kaito_inference_prefix_cache_bytes", "Bytes held by the prefix cache", registry=r
        )
        self.kv_cache_bytes = Gauge(
            "kaito_inference_kv_cache_bytes", "Bytes allocated for the KV cache of the running batch", registry=r
        )
