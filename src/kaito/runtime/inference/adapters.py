"""peft LoRA adapters from the adapter directory, each with a strength, selectable per request.

Kaito mounts every adapter of a Workspace at ``/mnt/adapter/<name>`` and passes its strength as the environment
variable ``<name>=<float>`` (``spec.adapters[].strength``, "0.0".."1.0", default 1.0). Every sub-directory with an
``adapter_config.json`` is loaded with peft under its directory name. The strength multiplies the adapter's LoRA
scaling, so a request with ``model: "<name>"`` runs the base weights plus ``strength × ΔW`` of that adapter alone.

Requests for the base model name get what upstream Kaito's transformers runtime serves to every request: all
adapters together, each at its strength (peft ``add_weighted_adapter`` with ``combination_type="cat"``, which
is exact: the sum of the scaled low-rank updates). A server without adapters serves the plain base model.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kaito.runtime.inference.errors import StartupError

COMBINED = "kaito-all-adapters"
"""peft name of the adapter that sums all adapters at their strengths (served under the base model's name)."""

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass(frozen=True)
class AdapterSpec:
    """An adapter found on disk: API ``name`` (the directory name), ``path`` and ``strength``."""

    name: str
    path: Path
    strength: float


def discover_adapters(adapter_dir: Path, environ: Mapping[str, str] | None = None) -> list[AdapterSpec]:
    """List the adapters in ``adapter_dir`` (sorted by name); an absent directory means none.

    Raises:
        StartupError: a strength variable is not a finite number (naming the adapter and the variable), or a
            directory name cannot be a model name.
    """
    env = os.environ if environ is None else environ
    if not adapter_dir.is_dir():
        return []
    specs = []
    for path in sorted(adapter_dir.iterdir()):
        if not (path / "adapter_config.json").is_file():
            continue
        name = path.name
        if not _NAME.match(name):
            raise StartupError(f"adapter directory {path}: {name!r} is not a valid model name (letters, digits, ._-)")
        raw = env.get(name, "1.0")
        try:
            strength = float(raw)
        except ValueError:
            strength = math.nan
        if not math.isfinite(strength):
            raise StartupError(
                f"adapter {name!r}: strength from environment {name}={raw!r} is not a number; set e.g. {name}=0.5"
            )
        specs.append(AdapterSpec(name, path, strength))
    return specs


def attach_adapters(model: Any, specs: list[AdapterSpec], base_name: str) -> Any:
    """Load ``specs`` onto ``model`` and return the peft model (``model`` itself when ``specs`` is empty).

    The returned model takes ``adapter_names=[...]`` (one per batch row: an adapter name, :data:`COMBINED`, or
    ``"__base__"``) in its forward pass.

    Raises:
        StartupError: an adapter cannot be loaded (message starts with its name), is not LoRA, or is named like
            the base model.
    """
    if not specs:
        return model
    from peft import PeftModel
    from peft.tuners.lora import LoraLayer

    peft_model: Any = None
    for spec in specs:
        if spec.name in (base_name, COMBINED):
            raise StartupError(f"adapter {spec.name!r} has the base model's name; rename its directory")
        try:
            if peft_model is None:
                peft_model = PeftModel.from_pretrained(model, str(spec.path), adapter_name=spec.name)
            else:
                peft_model.load_adapter(str(spec.path), adapter_name=spec.name)
        except Exception as exc:  # peft raises many types (ValueError, KeyError, OSError, safetensors errors)
            raise StartupError(f"adapter {spec.name!r} in {spec.path} cannot be loaded: {exc}") from exc
        peft_type = str(getattr(peft_model.peft_config[spec.name], "peft_type", ""))
        if "LORA" not in peft_type.upper():
            raise StartupError(f"adapter {spec.name!r} is {peft_type}, only LoRA adapters are supported")
    for module in peft_model.modules():
        if isinstance(module, LoraLayer):
            for spec in specs:
                if spec.name in module.scaling:
                    module.scaling[spec.name] *= spec.strength
    try:
        peft_model.add_weighted_adapter(
            adapters=[s.name for s in specs],
            weights=[1.0] * len(specs),
            adapter_name=COMBINED,
            combination_type="cat",
        )
    except Exception as exc:
        raise StartupError(f"adapters {[s.name for s in specs]} cannot be combined: {exc}") from exc
    peft_model.eval()
    peft_model.requires_grad_(False)
    return peft_model
