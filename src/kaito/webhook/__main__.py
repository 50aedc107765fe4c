"""``python -m kaito.webhook --cert-dir DIR [--host H] [--port 9443] [--no-auto-provisioning]``: serve the
admission webhook on its own (the operator embeds :class:`~kaito.webhook.server.WebhookServer` instead)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from kaito.webhook.server import DEFAULT_PORT, DEFAULT_RELOAD_INTERVAL, WebhookServer


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(prog="python -m kaito.webhook", description=__doc__)
    parser.add_argument("--cert-dir", type=Path, required=True, help="directory with tls.crt and tls.key")
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})")
    parser.add_argument("--no-auto-provisioning", action="store_true", help="every workspace uses BYO nodes")
    parser.add_argument(
        "--reload-interval", type=float, default=DEFAULT_RELOAD_INTERVAL, help="seconds between cert-dir checks"
    )
    return parser.parse_args(argv)


async def serve(args: argparse.Namespace) -> None:
    """Run until SIGINT/SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    async with WebhookServer(
        cert_dir=args.cert_dir,
        host=args.host,
        port=args.port,
        auto_provisioning=not args.no_auto_provisioning,
        reload_interval=args.reload_interval,
    ) as server:
        print(f"kaito webhook serving on {server.url}", flush=True)
        await stop.wait()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    asyncio.run(serve(parse_args(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
