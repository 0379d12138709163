"""The HTTP client side: framings, connection reuse and reconnects, what goes on the wire."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from deployflow.loadtest import RequestSpec, Schedule, run_closed_loop, run_open_loop

StartServer = Callable[..., Any]


@pytest.mark.parametrize("framing", ["length", "chunked", "close"])
def test_responses_of_every_framing_are_read_whole(stub_server: StartServer, framing: str) -> None:
    server = stub_server(framing=framing)

    result = run_closed_loop(RequestSpec(server.url, body=b"{}"), duration_s=10.0, max_requests=30)

    assert result.ok == result.completed == server.requests == 30
    assert result.errors == {}


def test_keep_alive_connection_is_reused(stub_server: StartServer) -> None:
    server = stub_server()

    result = run_closed_loop(RequestSpec(server.url, body=b"{}"), duration_s=10.0, max_requests=50)

    assert result.ok == 50
    assert server.connections == 1


def test_connection_close_like_azmlinfsrv_reconnects_for_every_request(stub_server: StartServer) -> None:
    server = stub_server(connection_close=True)

    result = run_open_loop(RequestSpec(server.url, body=b"{}"), Schedule.constant(100, 0.5))

    assert result.ok == 50
    assert server.connections == 50


def test_connection_closed_by_the_server_without_notice_is_replaced(stub_server: StartServer) -> None:
    server = stub_server(silent_close=True)

    result = run_open_loop(RequestSpec(server.url, body=b"{}"), Schedule.constant(40, 0.5))

    assert result.ok == 20
    assert result.errors == {}
    assert server.connections == 20


def test_request_goes_out_with_its_body_and_headers(stub_server: StartServer) -> None:
    server = stub_server()
    headers = {"Authorization": "Bearer k3y", "azureml-model-deployment": "blue"}

    run_closed_loop(RequestSpec(server.url, body=b'{"data": [1]}', headers=headers), duration_s=5, max_requests=1)

    head = server.last_head.decode()
    assert head.startswith("POST /score HTTP/1.1\r\n")
    assert f"Host: 127.0.0.1:{server.port}\r\n" in head
    assert "Content-Length: 13\r\n" in head
    assert "Authorization: Bearer k3y\r\n" in head
    assert "azureml-model-deployment: blue\r\n" in head


def test_wire_bytes_use_the_given_headers_instead_of_defaults() -> None:
    spec = RequestSpec("http://localhost:8080/a/b?x=1", method="GET", headers={"host": "example"})

    wire = spec.wire_bytes()

    assert wire.startswith(b"GET /a/b?x=1 HTTP/1.1\r\n")
    assert b"Host: localhost" not in wire and b"host: example\r\n" in wire
    assert b"Content-Length" not in wire  # a GET without a body


@pytest.mark.parametrize(
    "kwargs",
    [
        {"url": "ftp://127.0.0.1/score"},
        {"url": "http:///score"},
        {"url": "http://127.0.0.1:99999/score"},
        {"url": "http://127.0.0.1/score", "method": "HEAD"},
        {"url": "http://127.0.0.1/score", "headers": {"X-Evil": "a\r\nInjected: 1"}},
        {"url": "http://127.0.0.1/score", "timeout_s": 0},
    ],
)
def test_invalid_request_specs_are_refused(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        RequestSpec(**kwargs)
