"""Failed requests are counted by class, and never as latency."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from deployflow.loadtest import RequestSpec, Schedule, run_open_loop

StartServer = Callable[..., Any]


def test_server_errors_count_as_http_status(stub_server: StartServer) -> None:
    server = stub_server(status=500)

    result = run_open_loop(RequestSpec(server.url, body=b"{}"), Schedule.constant(40, 0.5))

    assert result.errors == {"http_500": 20}
    assert result.ok == 0 and result.completed == 20
    assert result.latency.count == 0
    assert result.success_rate == 0.0


def test_refused_connections_count_as_connect(closed_port_url: str) -> None:
    result = run_open_loop(RequestSpec(closed_port_url, body=b"{}"), Schedule.constant(40, 0.5))

    assert result.errors == {"connect": 20}
    assert result.completed == 0


def test_connections_dropped_before_an_answer_count_as_reset(stub_server: StartServer) -> None:
    server = stub_server(action="drop")

    result = run_open_loop(RequestSpec(server.url, body=b"{}"), Schedule.constant(40, 0.5))

    assert result.errors == {"reset": 20}


def test_answers_that_are_not_http_count_as_protocol(stub_server: StartServer) -> None:
    server = stub_server(action="garbage")

    result = run_open_loop(RequestSpec(server.url, body=b"{}"), Schedule.constant(40, 0.5))

    assert result.errors == {"protocol": 20}


def test_unanswered_requests_time_out_and_the_run_still_ends(stub_server: StartServer) -> None:
    server = stub_server(action="hang")
    began = time.monotonic()

    result = run_open_loop(RequestSpec(server.url, body=b"{}", timeout_s=0.3), Schedule.constant(20, 0.5))

    assert result.errors == {"timeout": 10}
    assert result.sent == 10
    assert time.monotonic() - began < 0.5 + 0.3 + 1.5  # schedule + timeout + slack


def test_requests_waiting_for_a_busy_connection_keep_their_deadline(stub_server: StartServer) -> None:
    server = stub_server(action="hang")
    began = time.monotonic()

    result = run_open_loop(
        RequestSpec(server.url, body=b"{}", timeout_s=0.2), Schedule.constant(50, 0.5), max_in_flight=1
    )

    # One connection, held by each request until its deadline: every later request
    # waits for it, starts late (reported as generator lag), and times out on time.
    assert result.errors == {"timeout": 25}
    assert result.generator_lag.slot_waits >= 20
    assert result.generator_lag.late_sends >= 20
    assert result.generator_lag.max_lag_ms > 100
    assert time.monotonic() - began < 0.5 + 0.2 + 1.5
