"""The preset and SKU catalogs: every model and instance type the issue names, each number with its source."""

from __future__ import annotations

import pytest

from kaito.presets import UnknownPresetError, UnknownSKUError, load_catalog

REQUIRED_PRESETS = [
    "phi-3-mini-4k-instruct",
    "phi-3-mini-128k-instruct",
    "phi-3-medium-4k-instruct",
    "phi-3-medium-128k-instruct",
    "phi-3.5-mini-instruct",
    "phi-4",
    "phi-4-mini-instruct",
    "llama-3.1-8b-instruct",
    "mistral-7b",
    "mistral-7b-instruct",
    "falcon-7b",
    "falcon-7b-instruct",
    "falcon-40b",
    "falcon-40b-instruct",
    "qwen2.5-coder-7b-instruct",
    "deepseek-r1-distill-qwen-14b",
    "smollm2-135m-instruct",
]

# (name, GPUs, total GPU GiB) from the inventory's SKU table.
INVENTORY_SKUS = [
    ("Standard_NC6s_v3", 1, 16),
    ("Standard_NC12s_v3", 2, 32),
    ("Standard_NC24s_v3", 4, 64),
    ("Standard_NC24ads_A100_v4", 1, 80),
    ("Standard_NC48ads_A100_v4", 2, 160),
    ("Standard_NC96ads_A100_v4", 4, 320),
    ("Standard_ND96asr_A100_v4", 8, 320),
    ("Standard_ND96amsr_A100_v4", 8, 640),
    ("Standard_NV36ads_A10_v5", 1, 24),
    ("Standard_NV72ads_A10_v5", 2, 48),
    ("Standard_NC40ads_H100_v5", 1, 94),
    ("Standard_NC80adis_H100_v5", 2, 188),
    ("Standard_ND96isr_H100_v5", 8, 640),
    ("Standard_ND96isr_H200_v5", 8, 1128),
    ("g5.xlarge", 1, 24),
    ("g6.xlarge", 1, 24),
    ("p4d.24xlarge", 8, 320),
    ("p4de.24xlarge", 8, 640),
    ("p5.48xlarge", 8, 640),
    ("p5e.48xlarge", 8, 1128),
]


@pytest.mark.parametrize("name", REQUIRED_PRESETS)
def test_required_presets_exist_with_sourced_architecture(name: str) -> None:
    preset = load_catalog().preset(name)

    assert preset.source.startswith("https://huggingface.co/") and preset.source.endswith("config.json")
    assert preset.weights_size_gib > 0 and preset.token_limit > 0
    assert preset.hidden_size % preset.attention_heads == 0 or preset.head_dim
    assert preset.attention_heads % preset.kv_heads == 0


@pytest.mark.parametrize(("name", "gpus", "memory"), INVENTORY_SKUS)
def test_inventory_skus_have_the_documented_gpus(name: str, gpus: int, memory: int) -> None:
    sku = load_catalog().sku(name)

    assert (sku.gpu_count, sku.gpu_memory_gib) == (gpus, memory)
    assert sku.source


def test_seed_sku_is_a_single_v100() -> None:
    sku = load_catalog().sku("Standard_NC6s_v3")

    assert (sku.cloud, sku.gpu_model, sku.per_gpu_memory_gib) == ("azure", "NVIDIA V100", 16)


def test_every_sku_and_preset_cites_a_source() -> None:
    catalog = load_catalog()

    assert all(s.source for s in catalog.skus.values())
    assert all(p.source for p in catalog.presets.values())


def test_local_instance_types_cover_cpu_and_simulated_gpus() -> None:
    catalog = load_catalog()
    local = {s.name: s for s in catalog.skus.values() if s.cloud == "local"}

    assert local["local-cpu"].gpu_count == 0
    assert local["local-gpu-small"].gpu_count == 1 and local["local-gpu-large"].gpu_count == 8


def test_cpu_preset_runs_the_local_runtime_command() -> None:
    preset = load_catalog().preset("smollm2-135m-instruct")

    assert not preset.requires_gpu
    assert preset.image_for("1.2.3") == "kaito-py/runtime-cpu:1.2.3"
    assert preset.command == (
        "python", "-m", "kaito.runtime.inference", "--preset", "smollm2-135m-instruct", "--port", "5000",
    )  # fmt: skip


def test_tuning_support_matches_upstream_families() -> None:
    catalog = load_catalog()
    tunable = {p.family for p in catalog.presets.values() if p.tuning}

    assert tunable == {"phi-3", "phi-4", "mistral", "qwen2.5", "smollm2"}


def test_deprecated_preset_is_rejected_by_name_with_replacement() -> None:
    with pytest.raises(UnknownPresetError, match=r"deprecated and no longer supported; use 'llama-3\.1-8b-instruct'"):
        load_catalog().preset("llama-2-7b")


def test_unknown_names_suggest_close_ones() -> None:
    with pytest.raises(UnknownPresetError, match="did you mean 'phi-4'"):
        load_catalog().preset("phi-5")
    with pytest.raises(UnknownSKUError, match="did you mean 'Standard_NC6s_v3'\\? \\(names are case-sensitive\\)"):
        load_catalog().sku("STANDARD_NC6S_V3")
    # a typo suggests the one close name, not every preset that merely shares "-instruct"
    with pytest.raises(UnknownPresetError, match=r"did you mean 'smollm2-135m-instruct'\?$"):
        load_catalog().preset("smollm2-135m-instruc")


def test_suggest_skus_returns_smallest_fitting_first() -> None:
    names = [s.name for s in load_catalog().suggest_skus(100, cloud="azure")]

    assert names == ["Standard_NC48ads_A100_v4", "Standard_NC80adis_H100_v5", "Standard_ND40rs_v2"]  # 160, 188, 256 GiB


def test_node_labels_follow_gpu_feature_discovery() -> None:
    catalog = load_catalog()

    assert catalog.sku("Standard_NC12s_v3").node_labels() == {
        "node.kubernetes.io/instance-type": "Standard_NC12s_v3",
        "accelerator": "nvidia",
        "nvidia.com/gpu.product": "NVIDIA-V100",
        "nvidia.com/gpu.count": "2",
        "nvidia.com/gpu.memory": "16384",
    }
    assert catalog.sku("local-cpu").node_labels() == {"node.kubernetes.io/instance-type": "local-cpu"}


def test_byo_nodes_labelled_like_a_sku_pass_the_same_gpu_memory_rule() -> None:
    from kaito.webhook import validate_workspace
    from tests.kaito.api.builders import inference_ws

    labels = {"apps": "test", **load_catalog().sku("Standard_NC12s_v3").node_labels()}
    ws = inference_ws(preset="phi-3-medium-4k-instruct", instance_type=None)  # 26 GiB > 16, < 32

    verdict = validate_workspace(ws, nodes=[{"metadata": {"name": "n", "labels": labels}}], auto_provisioning=False)

    assert verdict.allowed, verdict.message()
