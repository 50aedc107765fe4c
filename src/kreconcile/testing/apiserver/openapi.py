"""OpenAPI documents (placeholder until the v3 generator lands): ``/openapi/*`` answers 404 NotFound."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from .errors import APIError

if TYPE_CHECKING:
    from .server import APIServer


def serve(server: APIServer, request: web.Request, parts: list[str]) -> web.StreamResponse:
    """Serve ``/openapi/...``."""
    raise APIError(404, "NotFound", "the server could not find the requested resource")
