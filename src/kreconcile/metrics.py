"""Prometheus metrics with controller-runtime's and client-go's exact names and labels.

All kreconcile metrics live in :data:`REGISTRY` (not the prometheus-client global registry), which the manager
serves on ``/metrics``; applications may register their own collectors on it too. Names, labels and histogram
buckets follow controller-runtime (``pkg/internal/controller/metrics``, ``pkg/metrics/workqueue.go``) so existing
dashboards and alerts work unchanged. Per-controller series are pre-initialized to 0 by
:func:`init_controller_metrics` so that ``rate()`` works from the first scrape.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)
"""The registry the manager's ``/metrics`` endpoint serves."""

RECONCILE_RESULTS: tuple[str, ...] = ("success", "error", "requeue", "requeue_after")
"""Values of the ``result`` label of ``controller_runtime_reconcile_total``."""

# controller-runtime's reconcile-time buckets (seconds)
_RECONCILE_BUCKETS = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0,
    1.25, 1.5, 1.75, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5, 6, 7, 8, 9, 10, 15, 20, 25, 30, 40, 50, 60,
)
# workqueue buckets: 10^-8 .. 10^1 seconds, one per decade (client-go's ExponentialBuckets(1e-8, 10, 10))
_QUEUE_BUCKETS = tuple(10.0**e for e in range(-8, 2))

reconcile_total = Counter(
    "controller_runtime_reconcile_total",
    "Total number of reconciliations per controller",
    ["controller", "result"],
    registry=REGISTRY,
)
reconcile_errors_total = Counter(
    "controller_runtime_reconcile_errors_total",
    "Total number of reconciliation errors per controller",
    ["controller"],
    registry=REGISTRY,
)
terminal_reconcile_errors_total = Counter(
    "controller_runtime_terminal_reconcile_errors_total",
    "Total number of terminal reconciliation errors per controller",
    ["controller"],
    registry=REGISTRY,
)
reconcile_panics_total = Counter(
    "controller_runtime_reconcile_panics_total",
    "Total number of reconciliation panics (unexpected exceptions) per controller",
    ["controller"],
    registry=REGISTRY,
)
reconcile_time_seconds = Histogram(
    "controller_runtime_reconcile_time_seconds",
    "Length of time per reconciliation per controller",
    ["controller"],
    buckets=_RECONCILE_BUCKETS,
    registry=REGISTRY,
)
max_concurrent_reconciles = Gauge(
    "controller_runtime_max_concurrent_reconciles",
    "Maximum number of concurrent reconciles per controller",
    ["controller"],
    registry=REGISTRY,
)
active_workers = Gauge(
    "controller_runtime_active_workers",
    "Number of currently used workers per controller",
    ["controller"],
    registry=REGISTRY,
)

workqueue_depth = Gauge("workqueue_depth", "Current depth of workqueue", ["name", "controller"], registry=REGISTRY)
workqueue_adds_total = Counter(
    "workqueue_adds_total", "Total number of adds handled by workqueue", ["name", "controller"], registry=REGISTRY
)
workqueue_queue_duration_seconds = Histogram(
    "workqueue_queue_duration_seconds",
    "How long in seconds an item stays in workqueue before being requested",
    ["name", "controller"],
    buckets=_QUEUE_BUCKETS,
    registry=REGISTRY,
)
workqueue_work_duration_seconds = Histogram(
    "workqueue_work_duration_seconds",
    "How long in seconds processing an item from workqueue takes",
    ["name", "controller"],
    buckets=_QUEUE_BUCKETS,
    registry=REGISTRY,
)
workqueue_unfinished_work_seconds = Gauge(
    "workqueue_unfinished_work_seconds",
    "How many seconds of work has been done that is in progress and hasn't been observed by work_duration. "
    "Large values indicate stuck threads.",
    ["name", "controller"],
    registry=REGISTRY,
)
workqueue_longest_running_processor_seconds = Gauge(
    "workqueue_longest_running_processor_seconds",
    "How many seconds has the longest running processor for workqueue been running.",
    ["name", "controller"],
    registry=REGISTRY,
)
workqueue_retries_total = Counter(
    "workqueue_retries_total", "Total number of retries handled by workqueue", ["name", "controller"], registry=REGISTRY
)

rest_client_requests_total = Counter(
    "rest_client_requests_total",
    "Number of HTTP requests, partitioned by status code, method, and host.",
    ["code", "method", "host"],
    registry=REGISTRY,
)
leader_election_master_status = Gauge(
    "leader_election_master_status",
    "Gauge of if the reporting system is master of the relevant lease, 0 indicates backup, 1 indicates master. "
    "'name' is the string used to identify the lease.",
    ["name"],
    registry=REGISTRY,
)


def init_controller_metrics(controller: str, max_workers: int) -> None:
    """Create every per-controller series at 0 (controller-runtime does the same at controller start)."""
    for result in RECONCILE_RESULTS:
        reconcile_total.labels(controller=controller, result=result)
    reconcile_errors_total.labels(controller=controller)
    terminal_reconcile_errors_total.labels(controller=controller)
    reconcile_panics_total.labels(controller=controller)
    reconcile_time_seconds.labels(controller=controller)
    max_concurrent_reconciles.labels(controller=controller).set(max_workers)
    active_workers.labels(controller=controller).set(0)


def init_workqueue_metrics(name: str, controller: str) -> None:
    """Create every workqueue series for ``name`` at 0."""
    for metric in (
        workqueue_depth,
        workqueue_adds_total,
        workqueue_queue_duration_seconds,
        workqueue_work_duration_seconds,
        workqueue_unfinished_work_seconds,
        workqueue_longest_running_processor_seconds,
        workqueue_retries_total,
    ):
        metric.labels(name=name, controller=controller)
