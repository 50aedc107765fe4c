"""Typed access to the model preset and GPU SKU catalogs (``data/models.yaml``, ``data/skus.yaml``).

The catalog is local data only: nothing here calls a model hub or a cloud API. :func:`load_catalog` reads the
packaged YAML once and caches it; tests may build a :class:`Catalog` from their own lists.
"""

from __future__ import annotations

import difflib
import functools
from collections.abc import Mapping
from importlib import metadata, resources
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field


class _Data(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelPreset(_Data):
    """One model preset: what it is, how big, how to run it.

    Sizes are GiB (2^30 bytes); ``token_limit`` is the model's max_position_embeddings. ``source`` is the URL the
    architecture numbers were copied from.
    """

    name: str
    family: str
    huggingface: str
    source: str
    weights_size_gib: float = Field(gt=0)
    token_limit: int = Field(gt=0)
    layers: int = Field(gt=0)
    hidden_size: int = Field(gt=0)
    attention_heads: int = Field(gt=0)
    kv_heads: int = Field(gt=0)
    head_dim: int | None = Field(default=None, gt=0)
    dtype: Literal["bfloat16", "float16", "float32"]
    runtime: Literal["vllm", "transformers"]
    device: Literal["gpu", "cpu"] = "gpu"
    tuning: bool
    image: str
    command: tuple[str, ...] | None = None

    @property
    def requires_gpu(self) -> bool:
        """False only for CPU presets (they run on any node, including ``local-cpu``)."""
        return self.device == "gpu"

    @property
    def attention_head_dim(self) -> int:
        """``head_dim`` if the config gives one, else hidden_size / attention_heads."""
        return self.head_dim or self.hidden_size // self.attention_heads

    @property
    def dtype_bytes(self) -> int:
        """Bytes per parameter/KV element of ``dtype`` (2 for bf16/fp16, 4 for fp32)."""
        return 4 if self.dtype == "float32" else 2

    def image_for(self, version: str) -> str:
        """The preset's image with ``{version}`` replaced by the kaito-py version (CPU preset)."""
        return self.image.replace("{version}", version)


class DeprecatedPreset(_Data):
    """A preset name that is no longer supported, with the preset to use instead."""

    name: str
    replacement: str


class SKU(_Data):
    """A node type: ``gpu_count`` GPUs of ``gpu_model`` with ``gpu_memory_gib`` GiB in total (all GPUs)."""

    name: str
    cloud: Literal["azure", "aws", "local"]
    gpu_count: int = Field(ge=0)
    gpu_model: str
    gpu_memory_gib: float = Field(ge=0)
    nvme_gb: int | None = None
    source: str

    @property
    def per_gpu_memory_gib(self) -> float:
        """GPU memory of one GPU in GiB (0 for CPU-only types)."""
        return self.gpu_memory_gib / self.gpu_count if self.gpu_count else 0.0

    def node_labels(self) -> dict[str, str]:
        """Labels a Node of this type carries: ``node.kubernetes.io/instance-type`` always; for GPU types also
        ``accelerator=nvidia`` and NVIDIA GPU feature discovery's ``nvidia.com/gpu.product`` (spaces as ``-``),
        ``nvidia.com/gpu.count`` and ``nvidia.com/gpu.memory`` (MiB per GPU) — what the local provider registers
        and what the webhook's bring-your-own check reads."""
        labels = {"node.kubernetes.io/instance-type": self.name}
        if self.gpu_count:
            labels.update(
                {
                    "accelerator": "nvidia",
                    "nvidia.com/gpu.product": self.gpu_model.replace(" ", "-"),
                    "nvidia.com/gpu.count": str(self.gpu_count),
                    "nvidia.com/gpu.memory": str(round(self.per_gpu_memory_gib * 1024)),
                }
            )
        return labels


class UnknownPresetError(KeyError):
    """A preset name that is not in the catalog (the message lists close names)."""

    def __str__(self) -> str:
        return str(self.args[0])


class UnknownSKUError(KeyError):
    """An instance type that is not in the catalog (the message lists close names)."""

    def __str__(self) -> str:
        return str(self.args[0])


class Catalog:
    """The model presets, deprecated preset names and SKUs, indexed by name."""

    def __init__(
        self, presets: list[ModelPreset], skus: list[SKU], deprecated: list[DeprecatedPreset] | None = None
    ) -> None:
        self.presets: dict[str, ModelPreset] = {p.name: p for p in presets}
        self.skus: dict[str, SKU] = {s.name: s for s in skus}
        self.deprecated: dict[str, DeprecatedPreset] = {d.name: d for d in deprecated or []}

    def preset(self, name: str) -> ModelPreset:
        """The preset called ``name``.

        Raises:
            UnknownPresetError: no such preset; says if it is deprecated or which names are close.
        """
        found = self.presets.get(name)
        if found is not None:
            return found
        if name in self.deprecated:
            raise UnknownPresetError(self.deprecated_message(name))
        raise UnknownPresetError(f"preset {name!r} is not supported{_suggest(name, self.presets)}")

    def deprecated_message(self, name: str) -> str:
        """The rejection sentence for a deprecated preset (contains "deprecated and no longer supported")."""
        replacement = self.deprecated[name].replacement
        return f"preset {name!r} is deprecated and no longer supported; use {replacement!r} instead"

    def sku(self, name: str) -> SKU:
        """The instance type called ``name`` (exact, case-sensitive like the cloud APIs).

        Raises:
            UnknownSKUError: no such SKU; names close ones.
        """
        found = self.skus.get(name)
        if found is not None:
            return found
        raise UnknownSKUError(f"instance type {name!r} is not in the SKU catalog{_suggest(name, self.skus)}")

    def find_sku(self, name: str | None) -> SKU | None:
        """The SKU called ``name``, or None."""
        return self.skus.get(name) if name else None

    def suggest_skus(self, needed_gib: float, cloud: str | None = None, limit: int = 3) -> list[SKU]:
        """Up to ``limit`` single-node SKUs with at least ``needed_gib`` GiB GPU memory, smallest first."""
        fits = [
            s
            for s in self.skus.values()
            if s.gpu_count and s.gpu_memory_gib >= needed_gib and (cloud is None or s.cloud == cloud)
        ]
        return sorted(fits, key=lambda s: (s.gpu_memory_gib, s.gpu_count, s.name))[:limit]


def _suggest(name: str, names: Mapping[str, object]) -> str:
    lowered = {n.lower(): n for n in names}
    if name.lower() in lowered:
        return f"; did you mean {lowered[name.lower()]!r}? (names are case-sensitive)"
    close = difflib.get_close_matches(name, list(names), n=3, cutoff=0.6)
    if close:  # keep only the matches about as close as the best (a shared "-instruct" suffix is not a match)
        best = difflib.SequenceMatcher(None, name, close[0]).ratio()
        close = [n for n in close if difflib.SequenceMatcher(None, name, n).ratio() >= best - 0.1]
    return f"; did you mean {', '.join(repr(n) for n in close)}?" if close else ""


def kaito_version() -> str:
    """The installed kaito-py version (used in the CPU runtime image tag); ``"0.1.0"`` when not installed."""
    try:
        return metadata.version("kaito-py")
    except metadata.PackageNotFoundError:
        return "0.1.0"


@functools.lru_cache(maxsize=1)
def load_catalog() -> Catalog:
    """The packaged catalog (parsed once per process).

    Raises:
        pydantic.ValidationError: a data file entry is malformed (names the entry and field).
    """
    data = resources.files("kaito.presets") / "data"
    models = yaml.safe_load((data / "models.yaml").read_text(encoding="utf-8"))
    skus = yaml.safe_load((data / "skus.yaml").read_text(encoding="utf-8"))
    return Catalog(
        presets=[ModelPreset.model_validate(p) for p in models["presets"]],
        skus=[SKU.model_validate(s) for s in skus["skus"]],
        deprecated=[DeprecatedPreset.model_validate(d) for d in models.get("deprecated", [])],
    )
