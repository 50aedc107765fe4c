"""The data downloader against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from kaito.runtime.tuning import download as dl

BODY = b'{"text": "hello"}\n' * 100


class _Server:
    def __init__(self) -> None:
        self.hits: Counter[str] = Counter()
        self.flaky_failures = 2
        hits, server = self.hits, self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                hits[self.path] += 1
                if self.path == "/data/train.jsonl":
                    self._send(200, BODY)
                elif self.path == "/flaky.jsonl" and hits[self.path] <= server.flaky_failures:
                    self._send(503, b"busy")
                elif self.path == "/flaky.jsonl":
                    self._send(200, BODY)
                elif self.path == "/down":
                    self._send(500, b"down")
                elif self.path == "/empty.csv":
                    self._send(200, b"")
                elif self.path == "/big.parquet":
                    self._send(200, b"x" * 5000)
                else:
                    self._send(404, b"not found")

            def _send(self, code: int, body: bytes) -> None:
                self.send_response(code)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"


@pytest.fixture
def server() -> Iterator[_Server]:
    s = _Server()
    t = threading.Thread(target=s.httpd.serve_forever, daemon=True)
    t.start()
    try:
        yield s
    finally:
        s.httpd.shutdown()
        s.httpd.server_close()


def test_downloads_each_url_under_its_file_name(server: _Server, tmp_path: Path) -> None:
    done = dl.download_all([f"{server.base}/data/train.jsonl", f"{server.base}/data/train.jsonl"], tmp_path)

    assert [d.path.name for d in done] == ["train.jsonl", "1-train.jsonl"]
    assert (tmp_path / "train.jsonl").read_bytes() == BODY
    assert sorted(p.name for p in tmp_path.iterdir()) == ["1-train.jsonl", "train.jsonl"]  # no .part left over


def test_transient_errors_are_retried_with_exponential_backoff(server: _Server, tmp_path: Path) -> None:
    sleeps: list[float] = []

    done = dl.download(f"{server.base}/flaky.jsonl", tmp_path, "flaky.jsonl", sleep=sleeps.append)

    assert done.attempts == 3
    assert sleeps == [2.0, 4.0]
    assert (tmp_path / "flaky.jsonl").read_bytes() == BODY


def test_retries_are_bounded(server: _Server, tmp_path: Path) -> None:
    sleeps: list[float] = []
    with pytest.raises(dl.DownloadError, match=r"HTTP 500.*gave up after 4 attempts"):
        dl.download(f"{server.base}/down", tmp_path, "down", sleep=sleeps.append)
    assert server.hits["/down"] == 4
    assert sleeps == [2.0, 4.0, 8.0]


def test_404_fails_at_once_naming_the_url(server: _Server, tmp_path: Path) -> None:
    url = f"{server.base}/nope.parquet"
    with pytest.raises(dl.DownloadError) as err:
        dl.download(url, tmp_path, "nope.parquet", sleep=lambda s: None)
    assert url in str(err.value) and "HTTP 404" in str(err.value) and "not retried" in str(err.value)
    assert server.hits["/nope.parquet"] == 1
    assert list(tmp_path.iterdir()) == []


def test_empty_file_is_rejected(server: _Server, tmp_path: Path) -> None:
    with pytest.raises(dl.DownloadError, match="empty file"):
        dl.download(f"{server.base}/empty.csv", tmp_path, "empty.csv", sleep=lambda s: None)
    assert server.hits["/empty.csv"] == 1
    assert list(tmp_path.iterdir()) == []


def test_size_limit_is_enforced(server: _Server, tmp_path: Path) -> None:
    with pytest.raises(dl.DownloadError, match="over the limit of 4096 bytes"):
        dl.download(f"{server.base}/big.parquet", tmp_path, "big.parquet", max_bytes=4096, sleep=lambda s: None)
    assert list(tmp_path.iterdir()) == []


def test_non_http_url_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(dl.DownloadError, match="only http and https"):
        dl.download("file:///etc/passwd", tmp_path, "passwd")


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://h/d/train%20set.parquet?sig=1", "train_set.parquet"),
        ("https://h/", "data-3"),
        ("https://h/..", "data-3"),
    ],
)
def test_file_names_are_safe(url: str, expected: str) -> None:
    assert dl.file_name_for(url, 3, set()) == expected


@pytest.mark.slow
def test_cli_404_exits_non_zero_with_clear_message(server: _Server, tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(Path(dl.__file__).parents[3])}
    proc = subprocess.run(
        [sys.executable, "-m", "kaito.runtime.tuning.download", "--dest", str(tmp_path), "--backoff-seconds", "0",
         f"{server.base}/data/train.jsonl", f"{server.base}/missing.jsonl"],
        capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip

    assert proc.returncode == dl.EXIT_FAILED
    assert "HTTP 404" in proc.stderr and "/missing.jsonl" in proc.stderr
    assert server.hits["/missing.jsonl"] == 1
    assert (tmp_path / "train.jsonl").read_bytes() == BODY
