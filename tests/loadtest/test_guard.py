"""A load only targets loopback unless the caller opts in, and never exceeds the hard caps."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest

from deployflow.loadtest import (
    MAX_CONNECTIONS,
    MAX_DURATION_S,
    MAX_RATE,
    MAX_WORKERS,
    RequestSpec,
    Schedule,
    closed_loop,
    run_closed_loop,
    run_open_loop,
)

LOCAL_URL = "http://127.0.0.1:9/score"  # never contacted: every case fails before sending


@pytest.mark.parametrize(
    "host",
    ["127.0.0.1", "127.9.8.7", "[::1]", "localhost", "LOCALHOST", "api.localhost", "[::ffff:127.0.0.1]"],
)
def test_loopback_targets_are_accepted(host: str) -> None:
    assert RequestSpec(f"http://{host}:8080/score").port == 8080


@pytest.mark.parametrize("host", ["10.0.0.1", "192.168.1.10", "172.16.0.5", "0.0.0.0", "example.com", "[2001:db8::1]"])
def test_other_targets_are_refused_unless_allowed(host: str) -> None:
    url = f"http://{host}/score"

    with pytest.raises(ValueError, match="not a loopback address.*allow_remote=True"):
        RequestSpec(url)
    assert RequestSpec(url, allow_remote=True).url == url  # an explicit opt-in is honoured


def test_a_name_that_resolves_outside_loopback_is_refused_before_connecting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def resolve_elsewhere(host: str, port: Any, *args: Any, **kwargs: Any) -> list[Any]:
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.1.2.3", port))]

    monkeypatch.setattr(socket, "getaddrinfo", resolve_elsewhere)  # asyncio's loop resolves with it
    spec = RequestSpec("http://api.localhost:8080/score")

    with pytest.raises(ValueError, match="not a loopback address"):
        asyncio.run(closed_loop(spec, duration_s=1.0))


def test_rate_and_duration_are_capped_with_a_clear_error() -> None:
    assert Schedule.constant(MAX_RATE, 1.0).steps[0].rate == MAX_RATE  # the cap itself is allowed
    with pytest.raises(ValueError, match=r"step rate \(requests/s\) 1000000 exceeds .* limit of 500000"):
        Schedule.constant(2 * MAX_RATE, 1.0)
    with pytest.raises(ValueError, match=r"schedule duration \(s\) 3601 exceeds .* limit of 3600"):
        Schedule.stepped([(10, MAX_DURATION_S), (10, 1.0)])


@pytest.mark.parametrize(
    "run",
    [
        lambda: run_closed_loop(RequestSpec(LOCAL_URL), duration_s=MAX_DURATION_S + 1),
        lambda: run_closed_loop(RequestSpec(LOCAL_URL), duration_s=1.0, concurrency=MAX_CONNECTIONS + 1),
        lambda: run_open_loop(RequestSpec(LOCAL_URL), Schedule.constant(1, 1), workers=MAX_WORKERS + 1),
        lambda: run_open_loop(RequestSpec(LOCAL_URL), Schedule.constant(1, 1), max_in_flight=MAX_CONNECTIONS + 1),
    ],
    ids=["closed-duration", "concurrency", "workers", "max-in-flight"],
)
def test_runs_beyond_the_caps_are_refused_before_sending(run: Any) -> None:
    with pytest.raises(ValueError, match="exceeds the load generator's limit"):
        run()
