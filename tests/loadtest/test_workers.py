"""Several worker processes share one schedule and their results merge into one."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from deployflow.loadtest import RequestSpec, Schedule, run_open_loop

StartServer = Callable[..., Any]


def test_two_workers_together_keep_the_requested_total_rate(stub_server: StartServer) -> None:
    server = stub_server(exec_ms_header=True)

    result = run_open_loop(RequestSpec(server.url, body=b"{}"), Schedule.constant(300, 2.0), workers=2)

    assert result.workers == 2
    assert result.requested_rate == pytest.approx(300)
    assert result.scheduled == result.ok == server.requests == 600
    assert result.achieved_rate == pytest.approx(300, rel=0.1)
    assert result.latency.count == result.server_time.count == 600
    assert server.connections >= 2  # both processes sent
