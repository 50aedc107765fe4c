"""Kaito's inference runtime: an aiohttp server with the OpenAI API and the seed's ``/chat`` over a
continuously batched transformers model, with peft adapters selectable per request.

Run it with ``python -m kaito.runtime.inference --preset smollm2-135m-instruct`` (or ``--model-dir DIR``);
docs/runtime.md documents the flags, endpoints and metrics. Modules, one concept each:

- :mod:`~kaito.runtime.inference.config`: flags, environment, multi-node rank check
- :mod:`~kaito.runtime.inference.model`: model directory checks, loading, the forward passes
- :mod:`~kaito.runtime.inference.kvcache`: the per-slot KV cache
- :mod:`~kaito.runtime.inference.sampling`: sampling parameters and the batched token chooser
- :mod:`~kaito.runtime.inference.sequence`: a request's tokens, detokenization and stop conditions
- :mod:`~kaito.runtime.inference.engine`: the continuous-batching scheduler and its worker thread
- :mod:`~kaito.runtime.inference.adapters`: peft adapters and strengths
- :mod:`~kaito.runtime.inference.protocol` and :mod:`~kaito.runtime.inference.serving`: request validation and
  conversion
- :mod:`~kaito.runtime.inference.api`: HTTP routes; :mod:`~kaito.runtime.inference.metrics`: Prometheus
- :mod:`~kaito.runtime.inference.server`: assembly and ``main``

Importing this package does not import torch; the modules that need it do.
"""

from kaito.runtime.inference.errors import APIError, StartupError

__all__ = ["APIError", "StartupError"]
