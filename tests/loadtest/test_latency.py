"""Latency accounting against a single-worker server with a known 20 ms service time.

Capacity is about 50 requests/s. Below it, latency is the service time; above it, an
open-loop client sees the queue grow, while a closed-loop client on the same single
connection only ever sees the service time: the coordinated omission open loop avoids.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from deployflow.loadtest import RequestSpec, Schedule, run_closed_loop, run_open_loop

StartServer = Callable[..., Any]
SERVICE_MS = 20.0


def test_below_capacity_latency_is_the_service_time_and_the_rate_is_kept(stub_server: StartServer) -> None:
    server = stub_server(service_time_s=SERVICE_MS / 1e3, serial=True, exec_ms_header=True)

    result = run_open_loop(RequestSpec(server.url, body=b"{}"), Schedule.constant(20, 2.0))

    assert result.ok == result.scheduled == 40
    assert result.achieved_rate == pytest.approx(20, rel=0.15)
    assert not result.generator_fell_behind and result.notes() == []
    assert SERVICE_MS <= result.latency_ms.p50 < 1.75 * SERVICE_MS
    # x-ms-run-fn-exec-ms is the server's own ~20 ms; the rest is round-trip overhead.
    server_time = result.server_time_ms
    assert server_time.count == 40
    assert SERVICE_MS <= server_time.p50 < 1.5 * SERVICE_MS
    assert result.overhead_ms.count == 40
    assert result.overhead_ms.p50 < 0.5 * SERVICE_MS


def test_above_capacity_open_loop_sees_the_queue_and_closed_loop_does_not(stub_server: StartServer) -> None:
    server = stub_server(service_time_s=SERVICE_MS / 1e3, serial=True, exec_ms_header=True)
    request = RequestSpec(server.url, body=b"{}", timeout_s=10.0)

    # Both on one connection. Closed loop: the next request waits for the last answer.
    closed = run_closed_loop(request, duration_s=1.0, concurrency=1)
    # Open loop: 100/s for 1.5 s, twice what the server can do, so a queue builds up.
    rate, seconds = 100, 1.5
    opened = run_open_loop(request, Schedule.constant(rate, seconds), max_in_flight=1)

    assert closed.ok > 20
    assert SERVICE_MS <= closed.latency_ms.p99 < 1.75 * SERVICE_MS  # queueing hidden
    assert opened.ok == 150
    # Request i arrives at i / rate and is answered at about (i + 1) * service time, so
    # the p99 request has waited 0.99 * n * (service time - 1 / rate): the queue.
    service_s = 1 / closed.achieved_rate
    expected_p99_ms = 0.99 * opened.scheduled * (service_s - 1 / rate) * 1e3
    assert opened.latency_ms.p99 == pytest.approx(expected_p99_ms, rel=0.25)
    assert opened.latency_ms.p99 > 25 * closed.latency_ms.p99
    # The server's own time stayed at the service time; the rest was waiting. (Its median: on a
    # busy machine the server's own busy wait is sometimes descheduled, which shows in its tail.)
    assert opened.server_time_ms.p50 < 1.5 * SERVICE_MS
    assert opened.overhead_ms.p99 > 0.9 * opened.latency_ms.p99
    # Achieved is the server's capacity, and the report says the rate asked was not offered.
    assert opened.achieved_rate == pytest.approx(closed.achieved_rate, rel=0.2)
    assert opened.generator_fell_behind
    assert opened.generator_lag.slot_waits > 0.9 * opened.scheduled  # its one connection was busy


def test_no_request_goes_out_before_its_intended_time(stub_server: StartServer) -> None:
    server = stub_server()

    # At 2000/s the sends are 0.5 ms apart, finer than the event loop's millisecond timers.
    result = run_open_loop(RequestSpec(server.url, body=b"{}"), Schedule.constant(2000, 0.5))

    assert result.ok == 1000
    # A loopback round trip takes tens of microseconds: anything near zero was sent early.
    assert result.latency.value_at_ms(1) > 0.005
