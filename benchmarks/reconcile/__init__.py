"""Operator processes for ``benchmarks/reconcile_throughput.py``: kreconcile, kopf and a bare aiohttp client.

Each runs as its own subprocess (so RSS and CPU are measured per process) and talks to the benchmark over a line
protocol: it prints ``ready`` once started, then answers ``stats`` on stdin with one JSON line
(``{"reconciles": int, "requests": {"GET": int, ...}}``) and exits on ``quit`` or EOF.
"""
