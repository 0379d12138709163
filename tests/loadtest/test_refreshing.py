"""A load that outlasts its credentials is cut into slices, each sent with freshly asked headers."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from deployflow.loadtest import RequestSpec, Schedule, run_open_loop_refreshing

StartServer = Callable[..., Any]


class Tokens:
    """Hands out a new token per call, each good for ``lifetime_s``."""

    def __init__(self, url: str, lifetime_s: float | None) -> None:
        self.url, self.lifetime_s, self.issued = url, lifetime_s, []

    def __call__(self) -> tuple[RequestSpec, float | None]:
        token = f"token-{len(self.issued)}"
        self.issued.append(token)
        until = None if self.lifetime_s is None else time.time() + self.lifetime_s
        return RequestSpec(self.url, body=b"{}", headers={"Authorization": f"Bearer {token}"}), until


def test_a_load_longer_than_its_token_asks_for_a_new_one_before_each_slice(stub_server: StartServer) -> None:
    server = stub_server()
    tokens = Tokens(server.url, lifetime_s=0.7)

    result = run_open_loop_refreshing(tokens, Schedule.ramp(50, 150, 3.0, steps=3), min_slice_s=0.5)

    assert len(tokens.issued) >= 4, tokens.issued  # 3 s of load on tokens good for 0.7 s
    assert f"Bearer {tokens.issued[-1]}".encode() in server.last_head, "the last slice used the newest token"
    assert result.scheduled == result.ok == server.requests == 300  # the whole ramp: 50 + 100 + 150
    assert result.requested_rate == pytest.approx(100)
    assert result.duration_s == pytest.approx(3.0, rel=0.2)


def test_a_load_its_token_outlasts_is_one_run(stub_server: StartServer) -> None:
    server = stub_server()
    tokens = Tokens(server.url, lifetime_s=3600)

    result = run_open_loop_refreshing(tokens, Schedule.constant(100, 1.0))

    assert tokens.issued == ["token-0"]
    assert result.scheduled == result.ok == 100


def test_headers_that_never_expire_are_asked_for_once(stub_server: StartServer) -> None:
    server = stub_server()
    tokens = Tokens(server.url, lifetime_s=None)

    run_open_loop_refreshing(tokens, Schedule.constant(100, 1.0))

    assert tokens.issued == ["token-0"] and server.requests == 100
