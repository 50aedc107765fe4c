"""Loading a model directory and running its forward passes over the slot KV cache.

:func:`load_model` checks the directory first (config, tokenizer, every weight shard) so a missing or incomplete
download fails startup with the missing file's name instead of a stack trace from deep inside transformers. It
loads with ``local_files_only=True``: the server never reaches a model hub (``HF_HUB_OFFLINE=1`` is set as well).

:class:`ModelRunner` runs the two kinds of forward pass the engine needs: *prefill* (the prompts of newly admitted
requests, left-padded to a common length) and *decode* (one token for every running sequence). Both pass
explicit ``position_ids`` and a 4-D boolean mask, so each sequence sees exactly its own tokens whatever else is in
the batch.
"""

from __future__ import annotations

import inspect
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from kaito.runtime.inference.cpu_weights import fp16_weights_supported, pack_fp16_weights
from kaito.runtime.inference.errors import StartupError
from kaito.runtime.inference.kvcache import SlotKVCache
from kaito.runtime.inference.llama import LlamaForward, unsupported_reason

DTYPES: dict[str, torch.dtype] = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_device(flag: str) -> torch.device:
    """``auto`` → ``cuda`` when torch sees a GPU, else ``cpu``; ``cuda`` without a GPU is a :class:`StartupError`."""
    if flag == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if flag == "cuda" and not torch.cuda.is_available():
        raise StartupError("--device cuda was given but torch sees no CUDA GPU; use --device cpu or auto")
    if flag not in ("cpu", "cuda"):
        raise StartupError(f"--device {flag!r} is not one of auto, cpu, cuda")
    return torch.device(flag)


def cpu_has_fast_bf16() -> bool:
    """True when the CPU has native bf16 matrix instructions (AMX tiles or AVX-512 BF16).

    Without them torch emulates bf16 matmuls by converting to fp32, which measured slower than plain fp32 on this
    project's AVX2-only development machine (see docs/runtime.md, "dtype").
    """
    cpu = getattr(torch, "cpu", None)
    checks = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
    return any(bool(getattr(cpu, name, lambda: False)()) for name in checks)


def resolve_dtype(flag: str, device: torch.device) -> torch.dtype:
    """``auto``: bf16 on a GPU that supports it (else fp16); on CPU bf16 only with native bf16 instructions
    (:func:`cpu_has_fast_bf16`), else float32. Explicit names are taken as given."""
    if flag == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.bfloat16 if cpu_has_fast_bf16() else torch.float32
    if flag not in DTYPES:
        raise StartupError(f"--dtype {flag!r} is not one of auto, {', '.join(DTYPES)}")
    return DTYPES[flag]


def use_fp16_weights(flag: str, device: torch.device) -> bool:
    """Whether a CPU model runs float32 arithmetic on float16 weights (:mod:`kaito.runtime.inference.cpu_weights`).

    Yes on CPU for ``float16`` and for ``auto`` without native bf16, when fbgemm supports the CPU: CPUs have no fast
    float16 arithmetic, so ``float16`` on CPU means float16 *weights*; ``auto`` picks it because it is the fastest
    correct choice there (twice the decode speed of float32, finer than bfloat16). ``float32`` never.
    """
    if device.type != "cpu" or flag not in ("auto", "float16") or not fp16_weights_supported():
        return False
    return flag == "float16" or not cpu_has_fast_bf16()


def cpu_cores() -> int:
    """CPUs this process may run on (its affinity mask, which honours a container's cpuset), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def resolve_threads(flag: int | None, device: torch.device, cores: int | None = None) -> int | None:
    """The torch intra-op thread count to set, or None to leave torch's default.

    An explicit ``flag`` wins. On CPU the default is ``cores - 1`` (at least 1): one core stays free for the event
    loop (HTTP, JSON, streaming) and the rest of the process. With as many OpenMP threads as cores, every
    parallel matmul waits at its barrier whenever the event loop (or another process) holds one of the cores:
    on the shared 2-core development machine a ``[16, 576] x [576, 1536]`` matmul took a median 19.2 ms on 2
    threads against 5.4 ms on 1, and the engine served 39 against 27 tokens/s at 16 concurrent requests
    (docs/runtime.md, "CPU threads"). vLLM's CPU backend reserves a core for its HTTP server the same way. On GPU
    the CPU threads barely matter: None.
    """
    if flag is not None:
        return flag
    if device.type != "cpu":
        return None
    return max(1, (cores if cores is not None else cpu_cores()) - 1)


def check_model_dir(path: Path) -> None:
    """Fail with the missing file's name when ``path`` is not a complete model directory.

    Requires ``config.json``, a tokenizer (``tokenizer.json`` or ``tokenizer_config.json``) and the weights:
    ``model.safetensors``, or ``model.safetensors.index.json`` with every shard it lists (``.bin`` alike).

    Raises:
        StartupError: naming the directory and what is missing.
    """
    if not path.is_dir():
        raise StartupError(f"model directory {path} does not exist; pass --model-dir or --preset")
    missing = [name for name in ("config.json",) if not (path / name).is_file()]
    if not any((path / n).is_file() for n in ("tokenizer.json", "tokenizer_config.json", "tokenizer.model")):
        missing.append("tokenizer.json")
    single = [n for n in ("model.safetensors", "pytorch_model.bin") if (path / n).is_file()]
    index = [n for n in ("model.safetensors.index.json", "pytorch_model.bin.index.json") if (path / n).is_file()]
    if not single and not index:
        missing.append("model.safetensors (or model.safetensors.index.json and its shards)")
    for name in index:
        try:
            shards = set(json.loads((path / name).read_text())["weight_map"].values())
        except (ValueError, KeyError) as exc:
            raise StartupError(f"{path / name} is not a valid weight index ({exc}); re-download the model") from exc
        missing += sorted(s for s in shards if not (path / s).is_file())
    if missing:
        raise StartupError(f"model directory {path} is incomplete: missing {', '.join(missing)}")


@dataclass
class LoadedModel:
    """A loaded model with what the engine needs to know about it.

    Attributes:
        model: the transformers ``*ForCausalLM`` (or a peft ``PeftModel`` around it once adapters are attached).
        tokenizer: its tokenizer (chat template included when the directory has one).
        device, dtype: where and in which precision it runs.
        eos_ids: token ids that end generation (generation config and tokenizer).
        context_window: the model's ``max_position_embeddings``.
        weights: the precision the weights are stored in, when it differs from ``dtype`` (``"float16"``: packed
            float16 weights with float32 arithmetic on CPU, :func:`use_fp16_weights`); else ``dtype``'s name.
    """

    model: Any
    tokenizer: Any
    device: torch.device
    dtype: torch.dtype
    eos_ids: tuple[int, ...]
    context_window: int
    weights: str = ""


def load_model(model_dir: Path, *, device: str = "auto", dtype: str = "auto") -> LoadedModel:
    """Load ``model_dir`` for inference (eval mode, no gradients).

    On several GPUs the layers are spread over all of them (``device_map="auto"``). On CPU the linear layers may
    get packed float16 weights (:func:`use_fp16_weights`).

    Raises:
        StartupError: the directory is incomplete, or the device/dtype flags are invalid.
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    check_model_dir(model_dir)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dev = resolve_device(device)
    fp16_weights = use_fp16_weights(dtype, dev)
    dt = torch.float32 if fp16_weights else resolve_dtype(dtype, dev)
    kwargs: dict[str, Any] = {"dtype": dt, "local_files_only": True}
    if dev.type == "cuda" and torch.cuda.device_count() > 1:
        kwargs["device_map"] = "auto"
    try:
        tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
        model: Any = AutoModelForCausalLM.from_pretrained(model_dir, **kwargs)
    except (OSError, ValueError) as exc:
        raise StartupError(f"cannot load the model in {model_dir}: {exc}") from exc
    if "device_map" not in kwargs:
        model.to(dev)
    model.eval()
    model.requires_grad_(False)
    if fp16_weights:
        pack_fp16_weights(model)
    eos: set[int] = set()
    gen_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    for value in (gen_eos, tokenizer.eos_token_id):
        if isinstance(value, int):
            eos.add(value)
        elif isinstance(value, list):
            eos.update(int(v) for v in value)
    window = int(getattr(model.config, "max_position_embeddings", 2048) or 2048)
    weights = "float16" if fp16_weights else str(dt).removeprefix("torch.")
    return LoadedModel(model, tokenizer, dev, dt, tuple(sorted(eos)), window, weights)


def _kv_geometry(config: Any) -> tuple[int, int, int]:
    layers = int(config.num_hidden_layers)
    heads = int(config.num_attention_heads)
    kv_heads = int(getattr(config, "num_key_value_heads", None) or heads)
    head_dim = int(getattr(config, "head_dim", None) or config.hidden_size // heads)
    return layers, kv_heads, head_dim


def _layer_devices(model: Any, layers: int, default: torch.device) -> list[torch.device]:
    """The device of each decoder layer (``...layers.<i>`` modules); ``default`` for layers not found."""
    devices = [default] * layers
    if not getattr(model, "hf_device_map", None) and not hasattr(model, "get_base_model"):
        return devices
    for name, module in model.named_modules():
        head, _, index = name.rpartition(".")
        if head.endswith("layers") and index.isdigit() and int(index) < layers:
            param = next(module.parameters(), None)
            if param is not None:
                devices[int(index)] = param.device
    return devices


class ModelRunner:
    """Runs prefill and decode forward passes of one model over a :class:`SlotKVCache`.

    Not thread-safe: only the engine's worker thread calls it.

    Args:
        loaded: the model.
        max_slots: most concurrent sequences.
        max_positions: context window served (``--max-model-len``).
        fast_path: run Llama-architecture models without adapters through :class:`~kaito.runtime.inference.llama.
            LlamaForward` (``fast_path_reason`` says why not when it is not used). It fuses the model's packed
            float16 q/k/v and gate/up projections into its own matrices and frees theirs, so the model's own
            forward then runs those layers in float32.
    """

    def __init__(self, loaded: LoadedModel, *, max_slots: int, max_positions: int, fast_path: bool = True) -> None:
        self.loaded = loaded
        self.model = loaded.model
        config = getattr(self.model, "config", None)
        layers, kv_heads, head_dim = _kv_geometry(config)
        self.cache = SlotKVCache(
            num_layers=layers,
            num_kv_heads=kv_heads,
            head_dim=head_dim,
            max_slots=max_slots,
            max_positions=max_positions,
            dtype=loaded.dtype,
            device=loaded.device,
            layer_devices=_layer_devices(self.model, layers, loaded.device),
        )
        base = self.model.get_base_model() if hasattr(self.model, "get_base_model") else self.model
        params = inspect.signature(base.forward).parameters
        self._cache_kw = "cache" if "cache" in params else "past_key_values"
        self.device = loaded.device
        first = next(self.model.parameters(), None)
        if first is not None and first.device.type != "meta":
            self.device = first.device  # the embedding's device when layers are spread over GPUs
        self.fast_path_reason = unsupported_reason(self.model) if fast_path else "disabled"
        self.fast = LlamaForward(self.model) if self.fast_path_reason is None else None

    def _forward(
        self, input_ids: torch.Tensor, positions: torch.Tensor, mask: torch.Tensor, adapters: list[str] | None
    ) -> torch.Tensor:
        kwargs: dict[str, Any] = {
            "input_ids": input_ids,
            "position_ids": positions,
            "attention_mask": mask,
            self._cache_kw: self.cache,
            "use_cache": True,
            "logits_to_keep": 1,
        }
        if adapters is not None:
            kwargs["adapter_names"] = adapters
        with torch.inference_mode():
            if self.fast is not None and adapters is None:
                return self.fast(input_ids, positions, mask, self.cache)
            out = self.model(**kwargs)
        return out.logits[:, -1, :]

    def prefill(
        self, prompts: list[list[int]], slots: list[int], adapters: list[str] | None, prefix: int = 0
    ) -> torch.Tensor:
        """Run the prompts, each written into its slot; return ``[len(prompts), vocab]`` logits for the token
        after each prompt. ``adapters`` names the peft adapter of each row (None: no peft). With ``prefix`` > 0
        the slots already hold the keys and values of every prompt's first ``prefix`` tokens (from the prefix
        cache): only the rest is computed, attending to them."""
        tails = [p[prefix:] for p in prompts]
        n, width = len(tails), max(len(t) for t in tails)
        self.cache.ensure_capacity(max(slots) + 1, prefix + width)
        ids = torch.zeros((n, width), dtype=torch.long)
        pos = torch.zeros((n, width), dtype=torch.long)
        valid = torch.zeros((n, width), dtype=torch.bool)
        for row, tail in enumerate(tails):
            pad = width - len(tail)
            ids[row, pad:] = torch.tensor(tail, dtype=torch.long)
            pos[row, pad:] = torch.arange(prefix, prefix + len(tail))
            valid[row, pad:] = True
        causal = torch.ones((width, width), dtype=torch.bool).tril()
        mask = (causal[None] & valid[:, None, :]) | torch.eye(width, dtype=torch.bool)[None]
        if prefix:
            mask = torch.cat((torch.ones((n, width, prefix), dtype=torch.bool), mask), dim=2)
        self.cache.begin_prefill(slots, width, prefix)
        logits = self._forward(ids.to(self.device), pos.to(self.device), mask[:, None].to(self.device), adapters)
        self._realign(tails, slots, width, prefix)
        return logits

    def prefill_chunked(
        self,
        prompt: list[int],
        slot: int,
        adapters: list[str] | None,
        chunk: int,
        should_stop: Callable[[], bool],
        start: int = 0,
    ) -> torch.Tensor | None:
        """Run one long prompt into ``slot`` in chunks of ``chunk`` tokens, each attending to the earlier chunks
        through the cache; return ``[1, vocab]`` logits for the token after the prompt. Positions before
        ``start`` are already in the slot (a prefix-cache hit).

        ``should_stop`` is asked before every chunk but the first; True abandons the prompt and returns None (the
        client went away or the request timed out). Chunking bounds the attention mask at ``chunk x len(prompt)``
        instead of ``len(prompt)**2`` and gives a cancelled request a way out of a minutes-long pass on a CPU.
        """
        n = len(prompt)
        self.cache.ensure_capacity(slot + 1, n)
        logits: torch.Tensor | None = None
        for begin in range(start, n, chunk):
            if begin > start and should_stop():
                return None
            end = min(n, begin + chunk)
            pos = torch.arange(begin, end)
            mask = torch.arange(end)[None, :] <= pos[:, None]
            self.cache.begin_extend(slot, begin, end)
            logits = self._forward(
                torch.tensor([prompt[begin:end]], dtype=torch.long, device=self.device),
                pos[None].to(self.device),
                mask[None, None].to(self.device),
                adapters,
            )
        return logits

    def _realign(self, tails: list[list[int]], slots: list[int], width: int, prefix: int) -> None:
        # left padding wrote tail j at positions [prefix + pad_j, prefix + width) of its slot; move it to start at
        # position prefix, right after the cached part
        for tail, slot in zip(tails, slots, strict=True):
            pad = width - len(tail)
            if pad == 0:
                continue
            for store in (self.cache.keys, self.cache.values):
                for t in store:
                    t[slot, :, prefix : prefix + len(tail)] = t[slot, :, prefix + pad : prefix + width].clone()

    def decode(self, tokens: list[int], positions: list[int], adapters: list[str] | None) -> torch.Tensor:
        """One token per running sequence (slot ``i`` holds row ``i``) at the given positions; returns
        ``[len(tokens), vocab]`` logits."""
        b = len(tokens)
        self.cache.ensure_capacity(b, max(positions) + 1)
        read = max(positions) + 1
        pos = torch.tensor(positions, dtype=torch.long)
        mask = torch.arange(read)[None, :] <= pos[:, None]
        self.cache.begin_decode(positions)
        return self._forward(
            torch.tensor(tokens, dtype=torch.long, device=self.device)[:, None],
            pos[:, None].to(self.device),
            mask[:, None, None, :].to(self.device),
            adapters,
        )
