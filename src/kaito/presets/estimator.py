"""How many GPUs and nodes a model needs on a SKU, and how the runtime splits it (tensor/pipeline parallelism).

The formula is upstream Kaito's vLLM estimator (``shared/reference/kaito-inventory.md`` "Presets and
estimator"), all sizes in GiB:

- ``bytes_per_token = 2 (K and V) × kv_heads × head_dim × layers × dtype_bytes``
- ``reserve = 2.3 + max_model_len × bytes_per_token / 2^30 / gpus_per_node`` (runtime overhead + KV cache for one
  full-length sequence, sharded over the node's GPUs)
- ``weights_per_gpu = (per_gpu_memory × 0.84 − reserve) / 1.05`` (vLLM's 0.84 memory utilisation, 5 % slack)
- ``min_gpus = floor(weights_size × 1.02 / weights_per_gpu) + 1``; ``nodes = ceil(min_gpus / gpus_per_node)``

``max_model_len`` defaults to ``min(token_limit, 8192)``: reserving KV cache for a 128k context would make
phi-3-mini-128k (which upstream serves on a 16 GiB V100) not fit; the runtime is started with the same limit.
The runtime uses every GPU of each node: tensor parallelism = GPUs per node, pipeline parallelism = nodes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from kaito.presets.catalog import SKU, ModelPreset

GPU_MEMORY_UTILIZATION = 0.84
"""Share of each GPU's memory the runtime may use (upstream estimator)."""
RUNTIME_OVERHEAD_GIB = 2.3
"""GiB per GPU reserved for CUDA context, activations and the runtime (upstream estimator)."""
WEIGHTS_SLACK = 1.05
"""Divisor leaving 5 % of the usable memory free (upstream estimator)."""
WEIGHTS_FACTOR = 1.02
"""Multiplier on the weights size for non-weight tensors (upstream estimator)."""
DEFAULT_MAX_MODEL_LEN = 8192
"""Context length the KV reserve is sized for when the caller gives none (capped at the model's token limit)."""
GIB = 1024**3


class EstimateError(ValueError):
    """The model cannot run on the SKU at all (no GPUs, or a single GPU too small for the KV reserve)."""


@dataclass(frozen=True)
class Estimate:
    """The estimator's answer for one (preset, SKU, max_model_len).

    Attributes:
        min_gpus: GPUs needed in total (0 for CPU presets).
        node_count: nodes of the SKU needed (>= 1).
        gpus_per_node: the SKU's GPU count.
        tensor_parallel_size: GPUs each replica shard spans inside a node (= gpus_per_node, 1 on CPU).
        pipeline_parallel_size: nodes the model is split across (= node_count).
        max_model_len: tokens of context the KV reserve was sized for.
        kv_bytes_per_token: KV-cache bytes one token needs (all layers).
        reserve_gib_per_gpu: overhead + KV reserve per GPU, GiB.
        weights_gib_per_gpu: model weights one GPU can hold, GiB.
    """

    min_gpus: int
    node_count: int
    gpus_per_node: int
    tensor_parallel_size: int
    pipeline_parallel_size: int
    max_model_len: int
    kv_bytes_per_token: int
    reserve_gib_per_gpu: float
    weights_gib_per_gpu: float


def kv_bytes_per_token(preset: ModelPreset) -> int:
    """KV-cache bytes per token: 2 × kv_heads × head_dim × layers × dtype bytes."""
    return 2 * preset.kv_heads * preset.attention_head_dim * preset.layers * preset.dtype_bytes


def estimate(preset: ModelPreset, sku: SKU, max_model_len: int | None = None) -> Estimate:
    """Nodes, GPUs and parallelism for serving ``preset`` on ``sku`` (see the module docstring for the formula).

    Args:
        preset: the model.
        sku: the node type.
        max_model_len: context length to reserve KV cache for; default ``min(token_limit, 8192)``; must be >= 1.

    Raises:
        EstimateError: the SKU has no GPU but the preset needs one, or one GPU cannot even hold the reserve.
        ValueError: ``max_model_len`` < 1.
    """
    if max_model_len is None:
        max_model_len = min(preset.token_limit, DEFAULT_MAX_MODEL_LEN)
    if max_model_len < 1:
        raise ValueError(f"max_model_len must be >= 1, got {max_model_len}")
    per_token = kv_bytes_per_token(preset)
    if not preset.requires_gpu:
        return Estimate(0, 1, sku.gpu_count, 1, 1, max_model_len, per_token, 0.0, 0.0)
    if sku.gpu_count == 0:
        raise EstimateError(f"{preset.name} needs NVIDIA GPUs and instance type {sku.name} has none")
    reserve = RUNTIME_OVERHEAD_GIB + max_model_len * per_token / GIB / sku.gpu_count
    weights_per_gpu = (sku.per_gpu_memory_gib * GPU_MEMORY_UTILIZATION - reserve) / WEIGHTS_SLACK
    if weights_per_gpu <= 0:
        raise EstimateError(
            f"one {sku.gpu_model} GPU of {sku.name} ({sku.per_gpu_memory_gib:g} GiB) cannot hold the "
            f"{reserve:.1f} GiB runtime and KV-cache reserve of {preset.name} at {max_model_len} tokens"
        )
    min_gpus = math.floor(preset.weights_size_gib * WEIGHTS_FACTOR / weights_per_gpu) + 1
    nodes = math.ceil(min_gpus / sku.gpu_count)
    return Estimate(
        min_gpus=min_gpus,
        node_count=nodes,
        gpus_per_node=sku.gpu_count,
        tensor_parallel_size=sku.gpu_count,
        pipeline_parallel_size=nodes,
        max_model_len=max_model_len,
        kv_bytes_per_token=per_token,
        reserve_gib_per_gpu=reserve,
        weights_gib_per_gpu=weights_per_gpu,
    )
