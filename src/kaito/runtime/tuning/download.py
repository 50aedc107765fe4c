"""The tuning Job's data downloader: ``python -m kaito.runtime.tuning.download [--dest /mnt/data] URL...``.

Runs as an init container for ``tuning.input.urls``. Each URL is fetched into ``--dest`` under its path's file
name (so ``.../train.parquet`` keeps the suffix the dataset loader reads the format from), written to a hidden
``.part`` file and renamed when complete, so the trainer never sees a partial file.

Rules (upstream Kaito's downloader: 3 retries, non-empty file required):

- Retried, with exponential backoff (``--backoff-seconds`` × 2^n: 2, 4, 8 s by default): connection errors,
  timeouts, HTTP 5xx, 408 and 429 — the failures that can go away. At most ``--retries`` retries per URL.
- Not retried: any other HTTP status (404, 403, ...), an empty body, a body over ``--max-bytes``: a retry would
  get the same answer, and retry storms against someone else's server help nobody.
- Which hosts may be fetched (no loopback, private or metadata addresses) is the admission webhook's rule; this
  tool runs inside the cluster with whatever the Workspace was admitted with.

Exit codes: 0 every URL downloaded, 1 a download failed (the log says which URL and why), 2 bad arguments.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import structlog

log = structlog.get_logger("kaito.runtime.tuning.download")

DEFAULT_RETRIES = 3
"""Retries after the first attempt (upstream Kaito's init container retries 3 times)."""
DEFAULT_BACKOFF_S = 2.0
"""First backoff; doubles per retry (2, 4, 8 s)."""
DEFAULT_MAX_BYTES = 10 * 1024**3
"""10 GiB per file: far above any LoRA dataset, far below what fills a node's disk."""
TIMEOUT_S = 60.0
"""Socket timeout per attempt (connect and each read)."""
RETRIABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})
"""HTTP statuses worth retrying (RFC 9110: timeout, rate limit, server-side errors)."""
CHUNK = 1 << 20

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class DownloadError(RuntimeError):
    """A URL could not be downloaded; the message names the URL, the cause and whether it was retried."""


@dataclass(frozen=True)
class Downloaded:
    """One finished download."""

    url: str
    path: Path
    size: int
    attempts: int


class _Retriable(Exception):
    pass


def file_name_for(url: str, index: int, taken: set[str]) -> str:
    """The file name for ``url``: its path's last segment (percent-decoded, made safe), else ``data-<index>``;
    made unique against ``taken`` by prefixing ``<index>-``."""
    segment = urllib.parse.unquote(urllib.parse.urlsplit(url).path.rsplit("/", 1)[-1])
    name = re.sub(r"[^A-Za-z0-9._-]", "_", segment).lstrip(".")
    if not name:
        name = f"data-{index}"
    if name in taken:
        name = f"{index}-{name}"
    return name


def download(
    url: str,
    dest: Path,
    name: str,
    *,
    retries: int = DEFAULT_RETRIES,
    backoff_s: float = DEFAULT_BACKOFF_S,
    max_bytes: int = DEFAULT_MAX_BYTES,
    sleep: Callable[[float], None] = time.sleep,
    opener: Callable[..., object] = urllib.request.urlopen,
) -> Downloaded:
    """Download one URL to ``dest / name`` with bounded retries.

    Raises:
        DownloadError: a non-retriable failure, or the last retriable one after ``retries`` retries.
    """
    scheme = urllib.parse.urlsplit(url).scheme
    if scheme not in ("http", "https"):
        raise DownloadError(f"{url}: only http and https URLs can be downloaded (got {scheme or 'no scheme'!r})")
    dest.mkdir(parents=True, exist_ok=True)
    attempt = 0
    while True:
        attempt += 1
        try:
            size = _fetch(url, dest, name, max_bytes, opener)
        except _Retriable as e:
            if attempt > retries:
                raise DownloadError(f"{url}: {e}; gave up after {attempt} attempts") from None
            delay = backoff_s * 2 ** (attempt - 1)
            log.warning("download.retry", url=url, attempt=attempt, error=str(e), retry_in_s=delay)
            sleep(delay)
            continue
        log.info("download.done", url=url, file=name, bytes=size, attempts=attempt)
        return Downloaded(url, dest / name, size, attempt)


def _fetch(url: str, dest: Path, name: str, max_bytes: int, opener: Callable[..., object]) -> int:
    part = dest / f".{name}.part"
    request = urllib.request.Request(url, headers={"User-Agent": "kaito-tuning-downloader"})
    try:
        response = opener(request, timeout=TIMEOUT_S)
    except urllib.error.HTTPError as e:
        if e.code in RETRIABLE_STATUS:
            raise _Retriable(f"HTTP {e.code} {e.reason}") from None
        raise DownloadError(
            f"{url}: HTTP {e.code} {e.reason} (not retried); check the URL in tuning.input.urls"
        ) from None
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise _Retriable(f"cannot connect: {reason}") from None
    size = 0
    try:
        with response as r, part.open("wb") as out:  # type: ignore[attr-defined]
            length = r.headers.get("Content-Length")
            if length is not None and length.isdigit() and int(length) > max_bytes:
                raise DownloadError(
                    f"{url}: {int(length)} bytes is over the limit of {max_bytes} bytes (--max-bytes); not retried"
                )
            while chunk := r.read(CHUNK):
                size += len(chunk)
                if size > max_bytes:
                    raise DownloadError(f"{url}: more than {max_bytes} bytes (--max-bytes); not retried")
                out.write(chunk)
    except DownloadError:
        part.unlink(missing_ok=True)
        raise
    except (OSError, urllib.error.URLError) as e:  # connection reset or timeout mid-body
        part.unlink(missing_ok=True)
        raise _Retriable(f"transfer interrupted after {size} bytes: {e}") from None
    if size == 0:
        part.unlink(missing_ok=True)
        raise DownloadError(f"{url}: the server sent an empty file (0 bytes); the dataset must not be empty")
    os.replace(part, dest / name)
    return size


def download_all(
    urls: Sequence[str],
    dest: Path,
    *,
    retries: int = DEFAULT_RETRIES,
    backoff_s: float = DEFAULT_BACKOFF_S,
    max_bytes: int = DEFAULT_MAX_BYTES,
    sleep: Callable[[float], None] = time.sleep,
) -> list[Downloaded]:
    """Download every URL in order; stops at the first failure.

    Raises:
        DownloadError: see :func:`download`.
    """
    taken: set[str] = set()
    done = []
    for i, url in enumerate(urls):
        name = file_name_for(url, i, taken)
        taken.add(name)
        done.append(download(url, dest, name, retries=retries, backoff_s=backoff_s, max_bytes=max_bytes, sleep=sleep))
    return done


def build_parser() -> argparse.ArgumentParser:
    """The command line (see the module docstring)."""
    p = argparse.ArgumentParser(prog="python -m kaito.runtime.tuning.download", description="Download tuning data")
    p.add_argument("urls", nargs="+", metavar="URL")
    p.add_argument("--dest", default="/mnt/data", help="target directory (default /mnt/data)")
    p.add_argument("--retries", type=int, default=DEFAULT_RETRIES, help=f"default {DEFAULT_RETRIES}")
    p.add_argument("--backoff-seconds", type=float, default=DEFAULT_BACKOFF_S, help=f"default {DEFAULT_BACKOFF_S}")
    p.add_argument("--max-bytes", type=int, default=DEFAULT_MAX_BYTES, help="per file (default 10 GiB)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; returns the exit code."""
    args = build_parser().parse_args(argv)
    structlog.configure(
        processors=[structlog.processors.add_log_level, structlog.processors.JSONRenderer()],
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
    )
    if args.retries < 0 or args.backoff_seconds < 0 or args.max_bytes < 1:
        log.error("download.invalid_arguments", error="--retries, --backoff-seconds must be >= 0, --max-bytes >= 1")
        return EXIT_USAGE
    try:
        download_all(
            args.urls,
            Path(args.dest),
            retries=args.retries,
            backoff_s=args.backoff_seconds,
            max_bytes=args.max_bytes,
        )
    except DownloadError as e:
        log.error("download.failed", error=str(e))
        return EXIT_FAILED
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
