"""The generator says when it fell behind its own schedule, and why, instead of hiding it."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

from deployflow.loadtest import (
    CLOSED_LOOP,
    GeneratorLag,
    LoadResult,
    RequestSpec,
    Schedule,
    open_loop,
    run_open_loop,
)
from tests.loadtest.support import make_result

StartServer = Callable[..., Any]


def test_an_impossible_rate_is_reported_as_not_offered(stub_server: StartServer) -> None:
    server = stub_server()
    rate = 90_000.0  # allowed, but far beyond one process that also hosts the server

    result = run_open_loop(RequestSpec(server.url, body=b"{}"), Schedule.constant(rate, 0.2))

    assert result.ok == result.scheduled == 18_000
    assert result.achieved_fraction is not None and result.achieved_fraction < 0.75
    assert result.generator_fell_behind
    data = json.loads(json.dumps(result.to_dict()))
    assert data["generator_fell_behind"] is True
    assert data["achieved_fraction"] == round(result.achieved_rate / rate, 4)
    assert "fell behind its schedule" in data["notes"][0]
    assert f"{rate:.1f} requests/s asked for were not offered" in data["notes"][0]


def test_a_stalled_generator_blames_itself_and_cannot_hide_the_stall(stub_server: StartServer) -> None:
    server = stub_server()

    async def stall_then_load() -> LoadResult:
        load = asyncio.create_task(open_loop(RequestSpec(server.url, body=b"{}"), Schedule.constant(50, 1.0)))
        await asyncio.sleep(0.3)
        time.sleep(0.2)  # blocks the event loop, as a CPU-starved generator would
        return await load

    result = asyncio.run(stall_then_load())

    assert result.ok == 50
    lag = result.generator_lag
    assert lag.late_sends >= 5  # the ~10 sends due during the stall
    assert lag.late_dispatches >= 5  # handed out late by the generator itself ...
    assert lag.slot_waits == 0  # ... while connections were free
    assert lag.max_lag_ms > 100
    assert result.latency_ms.max > 100  # counted from the intended time, stall included
    assert result.generator_fell_behind
    assert any("ran out of CPU" in note for note in result.notes())
    assert not any("every connection busy" in note for note in result.notes())


def test_a_few_late_sends_are_tolerated_and_closed_loops_never_fall_behind() -> None:
    values = [5.0] * 100

    few = make_result(values, lag=GeneratorLag(late_sends=5, max_lag_ms=30.0, late_dispatches=5))
    many = make_result(values, lag=GeneratorLag(late_sends=6, max_lag_ms=30.0, slot_waits=6))
    closed = make_result(values, mode=CLOSED_LOOP, lag=GeneratorLag(late_sends=100))

    assert not few.generator_fell_behind and few.notes() == []
    assert many.generator_fell_behind
    assert [note.split(":")[0] for note in many.notes()] == [
        "the load generator fell behind its schedule",
        "6 sends found every connection busy",
    ]
    assert not closed.generator_fell_behind and closed.achieved_fraction is None
