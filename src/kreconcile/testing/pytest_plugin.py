"""pytest fixtures for kreconcile users: ``apiserver`` (an in-process :class:`APIServer` per test) and
``kubeconfig`` (its kubeconfig path). Enable with ``pytest_plugins = ("kreconcile.testing.pytest_plugin",)``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest_asyncio

from kreconcile.testing.apiserver import APIServer


@pytest_asyncio.fixture
async def apiserver() -> AsyncIterator[APIServer]:
    """A started emulator (HTTPS, bearer token) on a free 127.0.0.1 port, stopped after the test."""
    async with APIServer() as server:
        yield server


@pytest_asyncio.fixture
async def kubeconfig(apiserver: APIServer) -> Path:
    """The kubeconfig of the ``apiserver`` fixture (kubectl and kubernetes-asyncio accept it)."""
    return apiserver.kubeconfig_path
