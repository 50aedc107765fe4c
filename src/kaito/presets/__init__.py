"""Model presets, the GPU SKU catalog and the node/GPU estimator (local data only, no network)."""

from kaito.presets.catalog import (
    SKU,
    Catalog,
    DeprecatedPreset,
    ModelPreset,
    UnknownPresetError,
    UnknownSKUError,
    kaito_version,
    load_catalog,
)
from kaito.presets.estimator import Estimate, EstimateError, estimate, kv_bytes_per_token

__all__ = [
    "SKU",
    "Catalog",
    "DeprecatedPreset",
    "Estimate",
    "EstimateError",
    "ModelPreset",
    "UnknownPresetError",
    "UnknownSKUError",
    "estimate",
    "kaito_version",
    "kv_bytes_per_token",
    "load_catalog",
]
