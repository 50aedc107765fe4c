"""The estimator on known cases (formula in kaito.presets.estimator, from upstream Kaito's vLLM estimator)."""

from __future__ import annotations

import pytest

from kaito.presets import EstimateError, estimate, kv_bytes_per_token, load_catalog


def _estimate(preset: str, sku: str, max_model_len: int | None = None):  # type: ignore[no-untyped-def]
    catalog = load_catalog()
    return estimate(catalog.preset(preset), catalog.sku(sku), max_model_len)


def test_phi_3_mini_fits_one_nc6s_v3() -> None:
    est = _estimate("phi-3-mini-4k-instruct", "Standard_NC6s_v3")

    assert (est.min_gpus, est.node_count, est.tensor_parallel_size, est.pipeline_parallel_size) == (1, 1, 1, 1)
    # 2.3 GiB overhead + 4096 tokens x 384 KiB/token = 1.5 GiB of KV cache
    assert est.reserve_gib_per_gpu == pytest.approx(3.8)
    assert est.weights_gib_per_gpu == pytest.approx((16 * 0.84 - 3.8) / 1.05)


def test_phi_3_mini_128k_also_fits_one_nc6s_v3_at_the_default_context() -> None:
    est = _estimate("phi-3-mini-128k-instruct", "Standard_NC6s_v3")

    assert est.max_model_len == 8192 and est.node_count == 1


def test_a_70b_model_needs_several_a100_80gb_gpus() -> None:
    one_gpu_nodes = _estimate("llama-3.3-70b-instruct", "Standard_NC24ads_A100_v4")
    eight_gpu_node = _estimate("llama-3.3-70b-instruct", "Standard_ND96amsr_A100_v4")

    assert (one_gpu_nodes.min_gpus, one_gpu_nodes.node_count, one_gpu_nodes.pipeline_parallel_size) == (3, 3, 3)
    assert (eight_gpu_node.min_gpus, eight_gpu_node.node_count, eight_gpu_node.tensor_parallel_size) == (3, 1, 8)


def test_falcon_40b_on_v100_pairs_needs_four_nodes() -> None:
    est = _estimate("falcon-40b", "Standard_NC12s_v3")

    assert (est.min_gpus, est.node_count, est.tensor_parallel_size) == (8, 4, 2)


def test_longer_context_reserves_more_kv_cache_and_can_need_more_gpus() -> None:
    short = _estimate("llama-3.1-8b-instruct", "Standard_NV36ads_A10_v5", 2048)
    long = _estimate("llama-3.1-8b-instruct", "Standard_NV36ads_A10_v5", 32768)

    assert long.reserve_gib_per_gpu > short.reserve_gib_per_gpu
    assert long.min_gpus > short.min_gpus


def test_kv_bytes_per_token_formula() -> None:
    catalog = load_catalog()

    # 2 (K,V) x 8 kv heads x 128 head dim x 32 layers x 2 bytes
    assert kv_bytes_per_token(catalog.preset("llama-3.1-8b-instruct")) == 131072
    # phi-3-mini: 2 x 32 x 96 x 32 x 2
    assert kv_bytes_per_token(catalog.preset("phi-3-mini-4k-instruct")) == 393216


def test_cpu_preset_needs_no_gpu() -> None:
    est = _estimate("smollm2-135m-instruct", "local-cpu")

    assert (est.min_gpus, est.node_count, est.tensor_parallel_size) == (0, 1, 1)


def test_gpu_preset_on_a_cpu_sku_is_an_error() -> None:
    with pytest.raises(EstimateError, match="needs NVIDIA GPUs and instance type local-cpu has none"):
        _estimate("phi-3-mini-4k-instruct", "local-cpu")


def test_a_gpu_too_small_for_the_reserve_is_an_error() -> None:
    with pytest.raises(EstimateError, match="cannot hold the"):
        _estimate("phi-3-mini-128k-instruct", "Standard_NC6s_v3", 131072)


def test_max_model_len_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_model_len must be >= 1"):
        _estimate("phi-3-mini-4k-instruct", "Standard_NC6s_v3", 0)
