"""A tiny HTTP server used as a container command in kubelet and LocalCluster tests.

``python webserver.py --port 8080 [--unhealthy-file PATH] [--ignore-sigterm]``: ``GET /`` answers
``hello from <HOSTNAME>``; ``GET /health`` answers 200, or 500 while ``--unhealthy-file`` exists; prints one line
per request to stdout (the container log).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--unhealthy-file", default="")
    parser.add_argument("--ignore-sigterm", action="store_true")
    opts = parser.parse_args()
    if opts.ignore_sigterm:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/health":
                bad = opts.unhealthy_file and os.path.exists(opts.unhealthy_file)
                self.send_response(500 if bad else 200)
                self.end_headers()
                return
            body = f"hello from {os.environ.get('HOSTNAME', '?')}\n".encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            print(f"request {self.path}", flush=True)

    server = ThreadingHTTPServer(("127.0.0.1", opts.port), Handler)
    print(f"listening on {opts.port}", flush=True)
    sys.stdout.flush()
    server.serve_forever()


if __name__ == "__main__":
    main()
