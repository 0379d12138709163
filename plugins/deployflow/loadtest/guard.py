"""Bounds on every load: loopback targets unless the caller opts in, and hard caps on size.

A load test is a flood of requests; pointed at the wrong address it is an attack. So a
target must be a loopback address unless `allow_remote` is given, and no schedule may
exceed the caps below, whoever asks.
"""

from __future__ import annotations

import ipaddress

MAX_RATE = 500_000.0  # requests per second per schedule step: above what one machine reaches
MAX_DURATION_S = 3600.0  # one test, open or closed loop
MAX_CONNECTIONS = 4096  # concurrent connections of one test
MAX_WORKERS = 64  # worker processes of one test

_LOCAL_NAMES = ("localhost", "localhost.")


def is_loopback_host(host: str) -> bool:
    """True for a loopback IP literal (127.0.0.0/8, ::1) or the name localhost (RFC 6761)."""
    name = host.strip("[]").lower()
    if name in _LOCAL_NAMES or name.endswith((".localhost", ".localhost.")):
        return True
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


def require_loopback(host: str, url: str) -> None:
    """Refuse a target outside loopback, saying how to opt in."""
    if not is_loopback_host(host):
        raise ValueError(
            f"load test target {url} is not a loopback address (127.0.0.0/8, ::1, localhost); "
            "pass allow_remote=True to load a remote endpoint on purpose"
        )


def require_at_most(what: str, value: float, limit: float) -> None:
    """Refuse a load larger than a cap; several tests side by side merge into one result."""
    if value > limit:
        raise ValueError(f"{what} {value:.12g} exceeds the load generator's limit of {limit:.12g}")
