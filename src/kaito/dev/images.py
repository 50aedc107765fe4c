"""The image → local command map of ``kaito dev``: which of kaito's images run as local processes.

- ``kaito-py/runtime-cpu`` (kaito-py's runtime and tools image; the CPU preset ``smollm2-135m-instruct``, the
  tuning Job and its init containers use it) → this Python interpreter, so ``python -m kaito.runtime.inference``
  runs the real server from the installed package. The trainer (``python -m kaito.runtime.tuning``) gets
  ``OMP_NUM_THREADS`` = :data:`TRAINER_THREADS` unless the container sets it. The inference server gets
  ``KAITO_ADAPTER_DIR`` = the local directory of its ``/mnt/adapter`` volume: the local kubelet rewrites mount
  paths only where they appear in command, args and env, and the server's ``--adapter-dir`` default
  ``/mnt/adapter`` appears in none of them (on a real node the mount is at that path). It also listens on
  :data:`LOCAL_HOST` only and logs without tqdm bars (:data:`QUIET_PROGRESS_ENV`).
- ``mcr.microsoft.com/aks/kaito/`` (upstream's GPU preset images with baked-in weights: phi-3, llama, ...) →
  not runnable locally: the container prints :data:`NOT_RUNNABLE_MESSAGE` and exits 1, so the pod stays in
  ``CrashLoopBackOff`` with that message in ``kubectl logs`` and the Workspace's InferenceReady stays False.
- ``python``, ``busybox``, ... from :meth:`ImageMap.with_defaults` (inference templates in tests and examples).
"""

from __future__ import annotations

import os
import sys
from dataclasses import replace

from kaito.api.constants import ADAPTER_DIR
from kaito.workloads.common import RUNTIME_IMAGE
from kreconcile.testing.kubelet import ImageMap, ImageSpec
from kreconcile.testing.kubelet.images import LaunchContext, LaunchSpec

RUNTIME_IMAGE_PREFIX = RUNTIME_IMAGE.split(":", 1)[0]
"""``kaito-py/runtime-cpu``: every tag maps to the local interpreter."""
UPSTREAM_PREFIX = "mcr.microsoft.com/aks/kaito/"
"""Upstream Kaito's preset images (GPU, weights inside)."""
NOT_RUNNABLE_MESSAGE = (
    "image {image} is not runnable locally: it is a GPU preset image with model weights that kaito dev does not "
    "have. Under kaito dev use the CPU preset smollm2-135m-instruct (examples/inference/smollm2-local.yaml)."
)
"""What a container of an upstream preset image prints before exiting 1 under ``kaito dev``."""
TRAINER_THREADS = max(1, (os.cpu_count() or 2) // 2)
"""torch threads of a tuning job under ``kaito dev``: half the cores (1 on a 2-core machine). Everything shares one
machine there (API server, operator, inference servers, the trainer), and a trainer with more threads than free
cores makes torch's OpenMP threads wait on each other. Measured on a loaded 2-core machine (load ~7): LoRA on
SmolLM2-135M at 2 threads ~10 s per training example, at 1 thread ~2.5 s (``docs/tuning.md``)."""
LOCAL_HOST = "127.0.0.1"
"""The inference server's listen address under ``kaito dev`` (``--host``; the runtime's default is 0.0.0.0): the
Service proxy and probes reach it on 127.0.0.1, and an unauthenticated model must not be exposed on a shared
machine's network."""
QUIET_PROGRESS_ENV = {"HF_HUB_DISABLE_PROGRESS_BARS": "1", "TQDM_DISABLE": "1"}
"""No tqdm bars from model loading in the inference server's log of JSON lines (container env wins)."""


def _python(launch: LaunchSpec, ctx: LaunchContext) -> LaunchSpec:
    argv = launch.argv
    if argv and argv[0].rsplit("/", 1)[-1] in ("python", "python3"):
        argv = (sys.executable, *argv[1:])
    env = launch.env
    module = tuple(argv[1:3])
    if module == ("-m", "kaito.runtime.tuning") and "OMP_NUM_THREADS" not in env:
        env = {**env, "OMP_NUM_THREADS": str(TRAINER_THREADS)}
    adapters = ctx.paths.get(ADAPTER_DIR)
    if module == ("-m", "kaito.runtime.inference") and adapters and "--adapter-dir" not in argv and (
            "KAITO_ADAPTER_DIR" not in env):
        env = {**env, "KAITO_ADAPTER_DIR": adapters}
    if module == ("-m", "kaito.runtime.inference"):
        env = {**QUIET_PROGRESS_ENV, **env}
        if "--host" not in argv and not any(a.startswith("--host=") for a in argv) and "KAITO_HOST" not in env:
            argv = (*argv, "--host", LOCAL_HOST)
    return replace(launch, argv=tuple(argv), env=env)


def _not_runnable() -> ImageSpec:
    def transform(launch: LaunchSpec, ctx: LaunchContext) -> LaunchSpec:
        message = NOT_RUNNABLE_MESSAGE.format(image=ctx.container.get("image", UPSTREAM_PREFIX))
        # also the termination message, so the Workspace condition leads with it (the kubelet maps the path)
        path = ctx.paths.get(ctx.container.get("terminationMessagePath") or "/dev/termination-log")
        code = (f"import sys; print({message!r}, file=sys.stderr, flush=True); "
                f"path = {path!r}; path and open(path, 'w').write({message!r}); sys.exit(1)")
        return replace(launch, argv=(sys.executable, "-c", code))

    return ImageSpec(transform=transform)


def dev_image_map() -> ImageMap:
    """The :class:`ImageMap` ``kaito dev`` gives its LocalCluster (see the module docstring)."""
    images = ImageMap.with_defaults()
    images.register(RUNTIME_IMAGE_PREFIX, ImageSpec(cmd=(sys.executable,), env={"PYTHONUNBUFFERED": "1"},
                                                    transform=_python))
    images.register(UPSTREAM_PREFIX, _not_runnable())
    return images
