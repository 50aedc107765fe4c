"""``python -m kreconcile.testing.apiserver --port N --kubeconfig-out PATH [--data-dir DIR] [--insecure-http]``.

Runs the emulator until SIGINT/SIGTERM, writing the kubeconfig to ``--kubeconfig-out`` once it listens and
printing ``ready <url>`` on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import signal
import sys
from pathlib import Path

from .server import APIServer


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m kreconcile.testing.apiserver",
                                description="Run the kreconcile Kubernetes API server emulator.")
    p.add_argument("--host", default="127.0.0.1", help="listen address (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=0, help="listen port; 0 picks a free one (default 0)")
    p.add_argument("--kubeconfig-out", type=Path, required=True, help="where to write the kubeconfig")
    p.add_argument("--data-dir", type=Path, default=None, help="persist objects in this directory")
    p.add_argument("--insecure-http", action="store_true", help="serve plain HTTP instead of HTTPS")
    p.add_argument("--watch-window", type=int, default=1000, help="events kept per resource for watch resume")
    p.add_argument("--token", default=None, help="bearer token to require (default: generated)")
    return p.parse_args(argv)


async def _run(args: argparse.Namespace) -> None:
    server = APIServer(host=args.host, port=args.port, tls=not args.insecure_http, data_dir=args.data_dir,
                       watch_window=args.watch_window, token=args.token)
    await server.start()
    args.kubeconfig_out.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(server.kubeconfig_path, args.kubeconfig_out)
    args.kubeconfig_out.chmod(0o600)
    print(f"ready {server.url}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await server.stop()


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    args = _parse(argv)
    asyncio.run(_run(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
