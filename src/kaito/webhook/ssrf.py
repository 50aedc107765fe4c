"""SSRF guard for tuning input URLs: only http(s) URLs to public addresses may be downloaded by a tuning Job.

Rejected hosts: loopback, private (RFC 1918, unique-local IPv6), link-local (incl. 169.254.169.254), carrier-grade
NAT, unspecified, multicast, reserved and documentation ranges (anything ``ipaddress`` says is not global), cloud
metadata names (``metadata.google.internal``, ``metadata.azure.internal``, ...), ``localhost`` and ``*.localhost``,
IPv4-mapped IPv6 forms of those, and numeric IPv4 spellings (``2130706433``, ``0x7f.1``, ``127.1``) that resolvers
accept. Names are resolved only when the caller passes a ``resolve`` function (the webhook answers from local data
and does no DNS by default); every resolved address must pass the same test.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Sequence
from urllib.parse import urlsplit

Resolver = Callable[[str], Sequence[str]]
"""``resolve(hostname) -> addresses``; e.g. a wrapper of ``socket.getaddrinfo``. Raising means "cannot resolve"."""

METADATA_HOSTS = frozenset(
    {
        "metadata",
        "metadata.google.internal",
        "metadata.azure.internal",
        "metadata.azure.com",
        "instance-data",
        "instance-data.ec2.internal",
        "metadata.tencentyun.com",
        "100.100.100.200",
    }
)
"""Host names of cloud instance-metadata services (GCP, Azure, AWS, Tencent; Alibaba's IP)."""


def _parse_ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    # Numeric IPv4 spellings that inet_aton (and so most HTTP clients) accept: 127.1, 0x7f.0.0.1, 2130706433.
    if host and all(part and (part.isdigit() or part.lower().startswith("0x")) for part in host.split(".")):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except (OSError, ValueError):
            return None
    return None


def address_problem(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    """Why ``ip`` must not be fetched ("a loopback address", ...), or None when it is a public address."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    checks = (
        (ip.is_loopback, "a loopback address"),
        (ip.is_link_local, "a link-local address (cloud metadata lives here)"),
        (ip.is_unspecified, "the unspecified address"),
        (ip.is_multicast, "a multicast address"),
        (ip.is_private, "a private address"),
        (ip.is_reserved, "a reserved address"),
        (not ip.is_global, "not a public address"),
    )
    for bad, reason in checks:
        if bad:
            return reason
    if str(ip) in METADATA_HOSTS:
        return "a cloud metadata address"
    return None


def url_problem(url: str, resolve: Resolver | None = None) -> str | None:
    """Why a tuning Job must not download ``url`` (a sentence ending in the fix), or None when it is allowed.

    Args:
        url: the URL from ``tuning.input.urls``.
        resolve: optional name resolver; without one, host names are checked only against the metadata/localhost
            lists (no DNS: admission answers from local data).
    """
    try:
        parts = urlsplit(url.strip())
        host = parts.hostname
        _ = parts.port  # raises ValueError for a malformed port
    except ValueError as exc:
        return f"{url!r} is not a valid URL ({exc}); use an http(s) URL to a public host"
    if parts.scheme not in ("http", "https"):
        return f"{url!r} uses scheme {parts.scheme or '(none)'!r}; use an http:// or https:// URL"
    if not host:
        return f"{url!r} has no host; use an http(s) URL to a public host"
    host = host.rstrip(".").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return f"{url!r} points at localhost; use a URL to a public host"
    if host in METADATA_HOSTS:
        return f"{url!r} points at a cloud metadata service; use a URL to a public host"
    ip = _parse_ip(host)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip is not None:
        reason = address_problem(ip)
        if reason:
            return f"{url!r} points at {ip}, {reason}; use a URL to a public host"
        return None
    if resolve is not None:
        try:
            addresses = list(resolve(host))
        except Exception as exc:
            return f"{url!r}: host {host!r} cannot be resolved ({exc}); use a URL to a public host"
        for addr in addresses:
            ip = _parse_ip(addr.split("%", 1)[0])
            reason = address_problem(ip) if ip is not None else "not an IP address"
            if reason:
                return f"{url!r}: host {host!r} resolves to {addr}, {reason}; use a URL to a public host"
    return None


def getaddrinfo_resolver(host: str) -> list[str]:
    """A :data:`Resolver` using the system resolver (opt-in: it does DNS)."""
    return sorted({str(info[4][0]) for info in socket.getaddrinfo(host, None)})
