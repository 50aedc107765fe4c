"""The image → local command map: what "pulling and running an image" means for the process kubelet.

A real node pulls an image and runs its ``ENTRYPOINT``/``CMD`` in a container. The process kubelet has no images:
the caller registers, per image name or name prefix, an :class:`ImageSpec` that plays the image's config
(entrypoint, cmd, env, working dir), plus an optional ``transform`` that rewrites the final launch (for example to
put the allocated local port on the command line). The container's ``command``/``args`` then combine with it
exactly as Kubernetes combines them with an image:

=====================  ===================  ====================================
container ``command``  container ``args``   process argv
=====================  ===================  ====================================
unset                  unset                image entrypoint + image cmd
unset                  set                  image entrypoint + args
set                    unset                command
set                    set                  command + args
=====================  ===================  ====================================

Lookup order: the exact image string, then the image without its tag or digest, then the longest registered
prefix matching from the start of the string (so ``"python"`` matches ``python:3.11-slim``; register
``"docker.io/library/python"`` too if manifests use the long form). An image that matches nothing is treated as a
failed pull (``ErrImagePull``, then ``ImagePullBackOff``).
"""

from __future__ import annotations

import shlex
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class LaunchSpec:
    """One process to start: what the kubelet hands to ``subprocess``.

    ``argv`` is the full command line (``argv[0]`` looked up on ``PATH`` when not absolute); ``env`` the complete
    environment (the kubelet does not inherit its own, except ``PATH``, ``HOME``, ``LANG`` and Python's
    ``VIRTUAL_ENV``/``PYTHONPATH`` so mapped Python commands keep working); ``cwd`` the working directory (a local
    path, already rewritten from the container's ``workingDir``).
    """

    argv: tuple[str, ...]
    env: Mapping[str, str]
    cwd: str


@dataclass(frozen=True)
class LaunchContext:
    """What a :attr:`ImageSpec.transform` may read to adjust a launch.

    ``ports`` maps each declared ``containerPort`` to the local port allocated for it; ``paths`` maps each
    ``mountPath`` to its local directory; ``pod`` is the pod object and ``container`` the container spec.
    """

    pod: Mapping[str, Any]
    container: Mapping[str, Any]
    ports: Mapping[int, int]
    paths: Mapping[str, str]
    pod_dir: Path


@dataclass(frozen=True)
class ImageSpec:
    """The parts of an image's config the process kubelet honours.

    Attributes:
        entrypoint: the image's ``ENTRYPOINT`` (replaced by the container's ``command``).
        cmd: the image's ``CMD`` (replaced by the container's ``args``, dropped when ``command`` is set).
        env: the image's ``ENV``; container ``env`` entries win.
        working_dir: the image's ``WORKDIR``, a local path; ``None`` = the pod's own scratch directory.
        transform: called last with the assembled :class:`LaunchSpec` and a :class:`LaunchContext`; returns the
            launch to run. Use it to map a real image's paths or flags onto a local install.
    """

    entrypoint: Sequence[str] = ()
    cmd: Sequence[str] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    working_dir: str | None = None
    transform: Callable[[LaunchSpec, LaunchContext], LaunchSpec] | None = None


def _python_interpreter(launch: LaunchSpec, _ctx: LaunchContext) -> LaunchSpec:
    """Run ``python``/``python3``/``/usr/local/bin/python`` (what python images call) with this interpreter."""
    if launch.argv and Path(launch.argv[0]).name in ("python", "python3"):
        return replace(launch, argv=(sys.executable, *launch.argv[1:]))
    return launch


def strip_tag(image: str) -> str:
    """``"repo/name:tag"`` → ``"repo/name"``; ``"name@sha256:..."`` → ``"name"``; a registry port is kept."""
    image = image.split("@", 1)[0]
    slash = image.rfind("/")
    colon = image.rfind(":")
    return image[:colon] if colon > slash else image


class ImageMap:
    """Image name or prefix → :class:`ImageSpec`. Mutable: images registered later are found on the next pull.

    ``ImageMap.with_defaults()`` pre-registers ``python``/``python3`` (this interpreter, ``sys.executable``) and
    ``busybox``/``alpine``/``ubuntu``/``debian`` (the host's ``/bin/sh``), so test manifests can run
    ``python -m http.server`` or ``sh -c ...`` scripts.
    """

    def __init__(self, entries: Mapping[str, ImageSpec] | None = None) -> None:
        self._entries: dict[str, ImageSpec] = dict(entries or {})

    @classmethod
    def with_defaults(cls) -> ImageMap:
        """A map that knows ``python`` (this interpreter) and the common shell images (the host's shell)."""
        image_map = cls()
        python = ImageSpec(
            entrypoint=(), cmd=(sys.executable,), env={"PYTHONUNBUFFERED": "1"}, transform=_python_interpreter
        )
        image_map.register("python", python)
        image_map.register("docker.io/library/python", python)
        shell = ImageSpec(entrypoint=(), cmd=("/bin/sh",))
        for name in ("busybox", "alpine", "ubuntu", "debian"):
            image_map.register(name, shell)
            image_map.register(f"docker.io/library/{name}", shell)
        return image_map

    def register(self, image: str, spec: ImageSpec | None = None, **kwargs: Any) -> None:
        """Map ``image`` (an exact name, a name without tag, or a prefix) to ``spec`` (or ``ImageSpec(**kwargs)``).

        Raises:
            ValueError: ``image`` is empty, or both ``spec`` and keyword arguments are given.
        """
        if not image:
            raise ValueError("ImageMap.register: image must be a non-empty image name or prefix")
        if spec is not None and kwargs:
            raise ValueError("ImageMap.register: pass either an ImageSpec or its fields as keywords, not both")
        self._entries[image] = spec if spec is not None else ImageSpec(**kwargs)

    def lookup(self, image: str) -> ImageSpec | None:
        """The spec for ``image``: exact, then without tag/digest, then the longest matching prefix; else None."""
        if image in self._entries:
            return self._entries[image]
        bare = strip_tag(image)
        if bare in self._entries:
            return self._entries[bare]
        best: str | None = None
        for key in self._entries:
            if image.startswith(key) and (best is None or len(key) > len(best)):
                best = key
        return self._entries[best] if best is not None else None

    def __contains__(self, image: object) -> bool:
        return isinstance(image, str) and self.lookup(image) is not None


def resolve_argv(spec: ImageSpec, command: Sequence[str] | None, args: Sequence[str] | None) -> tuple[str, ...]:
    """Combine an image's entrypoint/cmd with a container's command/args by the Kubernetes rules (module table).

    Raises:
        ValueError: the result is empty (neither the image nor the container says what to run).
    """
    if command:
        argv = [*command, *(args or [])]
    elif args:
        argv = [*spec.entrypoint, *args]
    else:
        argv = [*spec.entrypoint, *spec.cmd]
    if not argv:
        raise ValueError("no command to run: set the container's command or register the image with a cmd")
    return tuple(argv)


def with_args(spec: LaunchSpec, *extra: str) -> LaunchSpec:
    """``spec`` with ``extra`` arguments appended (a helper for transforms)."""
    return replace(spec, argv=(*spec.argv, *extra))


def describe(argv: Sequence[str]) -> str:
    """A shell-quoted command line, for log lines and messages."""
    return shlex.join(argv)
