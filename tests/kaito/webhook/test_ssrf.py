"""The SSRF guard on tuning URLs: public http(s) only, every spelling of an internal address rejected."""

from __future__ import annotations

import pytest

from kaito.webhook.ssrf import url_problem

BLOCKED = [
    "http://127.0.0.1/x",
    "http://127.1/x",
    "http://0x7f.0.0.1/x",
    "http://2130706433/x",
    "http://0.0.0.0/x",
    "http://[::1]/x",
    "http://[::ffff:127.0.0.1]/x",
    "http://10.1.2.3/x",
    "http://172.16.0.1/x",
    "http://192.168.0.10/x",
    "http://100.64.0.1/x",
    "http://169.254.169.254/latest/meta-data/",
    "http://[fe80::1]/x",
    "http://[fd00:ec2::254]/x",
    "http://100.100.100.200/latest/meta-data",
    "http://localhost:8080/x",
    "http://api.localhost/x",
    "http://metadata.google.internal/computeMetadata/v1/",
    "http://metadata.azure.internal/x",
    "http://user:pass@127.0.0.1/x",
    "http://224.0.0.1/x",
    "ftp://example.com/data.csv",
    "file:///etc/passwd",
    "gopher://example.com/",
    "https:///nohost",
    "http://example.com:99999/x",
]

ALLOWED = [
    "https://huggingface.co/datasets/philschmid/dolly-15k-oai-style/resolve/main/data/train.parquet?download=true",
    "http://8.8.8.8/data.csv",
    "https://[2606:4700:4700::1111]/x",
    "https://example.com:8443/data.jsonl",
]


@pytest.mark.parametrize("url", BLOCKED)
def test_internal_and_non_http_urls_are_blocked_with_a_fix(url: str) -> None:
    problem = url_problem(url)

    assert problem is not None
    assert problem.endswith(("URL to a public host", "use an http:// or https:// URL"))


@pytest.mark.parametrize("url", ALLOWED)
def test_public_http_urls_are_allowed(url: str) -> None:
    assert url_problem(url) is None


def test_resolver_results_are_checked_and_resolution_failures_block() -> None:
    assert url_problem("https://ok.example/x", resolve=lambda h: ["93.184.216.34"]) is None
    assert "resolves to 127.0.0.1" in (url_problem("https://evil.example/x", resolve=lambda h: ["127.0.0.1"]) or "")

    def fail(host: str) -> list[str]:
        raise OSError("no such host")

    assert "cannot be resolved (no such host)" in (url_problem("https://gone.example/x", resolve=fail) or "")
