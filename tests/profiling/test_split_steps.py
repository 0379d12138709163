"""A profile's steps split over parts: the leader and its followers in threads, meeting on an in-memory board
with the XCom board's three methods; real loads against a loopback stub server where the merge is checked."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from functools import partial
from typing import Any

import pytest

from deployflow.loadtest import SLO, LatencyHistogram, RequestSpec, Schedule
from deployflow.loadtest.split import LoadPart, PartResult
from deployflow.profiling.measure import open_loop_measure
from deployflow.profiling.search import find_max_sustainable_rate
from deployflow.profiling.split import (
    DONE,
    LEFT,
    READY,
    ProfilePart,
    SplitLeader,
    SplitProfileError,
    follow,
    plan_profile,
    result_key,
    step_key,
)
from tests.loadtest.conftest import Behaviour, StubServer
from tests.loadtest.support import lognormal_ms, make_result

SECRET = "Bearer key-that-must-stay-off-the-board"
LOOSE_SLO = SLO(latency_ms=5_000, percentile=99, max_error_percent=0.0)


class Board:
    """One profile's XCom, in memory: (part, key) -> a JSON copy of the value, as XCom stores it."""

    def __init__(self) -> None:
        self.values: dict[tuple[int, str], dict[str, Any]] = {}
        self.lock = threading.Lock()
        self.leader_alive = True

    def for_part(self, index: int) -> PartBoard:
        return PartBoard(self, index)

    def everything(self) -> str:
        with self.lock:
            return json.dumps({f"{part}:{key}": value for (part, key), value in self.values.items()})


class PartBoard:
    def __init__(self, board: Board, index: int) -> None:
        self.board, self.index = board, index

    def post(self, key: str, value: dict[str, Any]) -> None:
        with self.board.lock:
            self.board.values[(self.index, key)] = json.loads(json.dumps(value))

    def read(self, part: int, key: str) -> dict[str, Any] | None:
        with self.board.lock:
            return self.board.values.get((part, key))

    def leader_running(self) -> bool:
        return self.board.leader_alive


@pytest.fixture
def server() -> Iterator[StubServer]:
    stub = StubServer(Behaviour()).start()
    yield stub
    stub.stop()


def fake_run(late_ms: float = 0.0, ahead_s: float = 0.0) -> Any:
    """A part's load without a server: 10 requests of made-up latencies, seeded by the part's index; a
    follower's start `late_ms` late, its clock `ahead_s` ahead."""

    def run(request: RequestSpec, schedule: Schedule, part: LoadPart, host: str | None = None) -> PartResult:
        assert SECRET in json.dumps(request.headers)  # the follower fetched the key itself
        result = make_result(lognormal_ms(part.index, 10), duration_s=schedule.duration_s)
        late, ended_at = (late_ms, time.time() + ahead_s) if part.index else (0.0, time.time())
        return PartResult(part, result, late, 1.0, host or "h", ended_at=ended_at)

    return run


def request_for(url: str, deployment: str) -> RequestSpec:
    return RequestSpec(url, body=b"{}", headers={"Authorization": SECRET, "azureml-model-deployment": deployment})


def start_followers(board: Board, parts: int, url: str, **kwargs: Any) -> tuple[ThreadPoolExecutor, list[Future]]:
    pool = ThreadPoolExecutor(parts - 1)
    futures = [
        pool.submit(
            follow, board.for_part(i), ProfilePart(i, parts, 5.0), partial(request_for, url), poll_s=0.02, **kwargs
        )
        for i in range(1, parts)
    ]
    return pool, futures


def test_a_profile_is_split_into_as_many_parts_as_its_highest_step_needs() -> None:
    assert [p.to_dict() for p in plan_profile(2000)] == [{"index": 0, "parts": 1, "ready_timeout_s": 15.0}]
    parts = plan_profile(5000, 2000, ready_timeout_s=3)
    assert [(p.index, p.parts, p.leads) for p in parts] == [(0, 3, True), (1, 3, False), (2, 3, False)]
    assert [ProfilePart.from_dict(p.to_dict()) for p in parts] == parts
    with pytest.raises(ValueError, match="max_rate_per_worker must be"):
        plan_profile(100, 0)
    with pytest.raises(ValueError, match="missing field 'parts'"):
        ProfilePart.from_dict({"index": 0})


def test_steps_above_the_limit_are_sent_by_two_parts_and_merged_bucket_for_bucket(server: StubServer) -> None:
    board = Board()
    pool, (follower,) = start_followers(board, 2, server.url)
    leader = SplitLeader(board.for_part(0), ProfilePart(0, 2, 5.0), 200, step_lead_s=0.5, poll_s=0.02)
    measure = open_loop_measure(
        lambda: (request_for(server.url, "prof-0"), None),
        step_duration_s=0.5,
        split=partial(leader.measure_step, "prof-0"),
    )
    try:
        search = find_max_sustainable_rate(measure, LOOSE_SLO, start_rate=100, max_rate=400, max_steps=4)
    finally:
        leader.finish()
    followed = follower.result(timeout=10)
    pool.shutdown()

    assert [s.requested_rate for s in search.steps] == [100, 200, 400] and search.max_sustainable_rate == 400
    assert [s.split is None for s in search.steps] == [True, True, False]  # 200/s is one part's to send
    split = search.steps[-1].split
    assert split["parts"] == 2 and split["late_parts"] == [] and split["clock_ahead_parts"] == []
    assert [p["scheduled"] for p in split["by_part"]] == [100, 100]
    posted = [board.for_part(0).read(i, result_key(1)) for i in (0, 1)]
    union = LatencyHistogram()
    for part in posted:
        union.add(LatencyHistogram.decode(part["result"]["histograms"]["latency"]))
    assert LatencyHistogram.decode(split["histograms"]["latency"]) == union
    assert server.requests == 50 + 100 + 200  # every step's requests once, the split one by both parts
    assert (followed.served, followed.reason) == ([1], "the leader is done")
    assert board.for_part(0).read(0, DONE) == {"steps": 1} and board.for_part(0).read(1, LEFT) is not None
    assert "key-that-must" not in board.everything()  # the key went from the platform to each part, not the board


def test_a_step_needs_only_the_parts_its_rate_needs_and_their_notes_reach_the_step() -> None:
    board = Board()
    pool, followers = start_followers(board, 3, "http://127.0.0.1:1/score", run=fake_run(late_ms=400))
    leader = SplitLeader(
        board.for_part(0), ProfilePart(0, 3, 5.0), 100, step_lead_s=0.0, poll_s=0.02, run=fake_run(), wall=time.time
    )
    try:
        two = leader.measure_step("prof-1", 150, 0.5, 0.0, request_for("http://127.0.0.1:1/score", "prof-1"))
        three = leader.measure_step("prof-1", 290, 0.5, 0.0, request_for("http://127.0.0.1:1/score", "prof-1"))
        alone = leader.measure_step("prof-1", 90, 0.5, 0.0, request_for("http://127.0.0.1:1/score", "prof-1"))
    finally:
        leader.finish()
    served = [f.result(timeout=10).served for f in followers]
    pool.shutdown()

    assert alone is None and leader.parts_for(10_000) == 3  # never more parts than the profile runs
    assert (len(two.parts), len(three.parts)) == (2, 3)
    assert served == [[1, 2], [2]]  # part 2 sat out the 150/s step
    assert [p.part.index for p in three.late_parts] == [1, 2]
    assert "started 400 ms late" in three.notes()[0]
    assert three.result.ok == 30 and two.result.ok == 20


def test_a_split_steps_late_starter_and_clock_ahead_are_named_in_the_step_itself() -> None:
    board = Board()
    pool, _ = start_followers(board, 2, "http://127.0.0.1:1/score", run=fake_run(late_ms=300, ahead_s=2.0))
    leader = SplitLeader(board.for_part(0), ProfilePart(0, 2, 5.0), 100, step_lead_s=0.0, poll_s=0.02, run=fake_run())
    measure = open_loop_measure(
        lambda: (request_for("http://127.0.0.1:1/score", "prof-2"), None),
        step_duration_s=0.5,
        split=partial(leader.measure_step, "prof-2"),
    )
    try:
        (step,) = find_max_sustainable_rate(measure, LOOSE_SLO, start_rate=150, max_rate=150, max_steps=1).steps
    finally:
        leader.finish()
    pool.shutdown()

    notes = " | ".join(step.notes)
    assert "load part 1 of 2 (on h) started 300 ms late" in notes
    assert "load part 1 (on h) runs at least" in notes and "ahead of the merger's" in notes
    split = step.to_dict()["split"]
    assert (split["late_parts"], split["clock_ahead_parts"], split["clock_behind_parts"]) == ([1], [1], [])
    assert split["by_part"][1]["clock_ahead_ms"] > 1500


def test_a_follower_that_never_became_ready_fails_the_profile_saying_the_parts_must_run_together() -> None:
    board = Board()
    leader = SplitLeader(board.for_part(0), ProfilePart(0, 2, 0.3), 100, poll_s=0.02, run=fake_run())
    started = time.monotonic()

    with pytest.raises(SplitProfileError, match=r"parts \[1\] of 2 were not running 0.3 s .* at the same time"):
        leader.measure_step("prof-0", 150, 0.5, 0.0, request_for("http://127.0.0.1:1/score", "prof-0"))

    assert time.monotonic() - started < 3, "bounded by the ready timeout, not a hang"
    assert board.for_part(1).read(0, step_key(1)) is None  # no step was called


def test_a_follower_whose_leader_never_starts_fails_instead_of_holding_its_slot() -> None:
    board = Board()

    with pytest.raises(SplitProfileError, match="leader .* was not running 0.2 s after .* free slots"):
        follow(board.for_part(1), ProfilePart(1, 2, 0.2), partial(request_for, "x"), poll_s=0.02, leader_check_s=0.1)

    assert "was not running" in board.for_part(0).read(1, LEFT)["reason"]


def test_a_follower_leaves_when_the_leaders_task_has_ended_without_saying_done() -> None:
    board = Board()
    board.for_part(0).post(READY, {"host": "h", "pid": 1})
    board.leader_alive = False  # killed: its finally never ran

    followed = follow(board.for_part(1), ProfilePart(1, 2, 5.0), partial(request_for, "x"), poll_s=0.02,
                      leader_check_s=0.05)  # fmt: skip

    assert (followed.served, followed.reason) == ([], "the leader's task is no longer running")


def silent_leader(board: Board) -> SplitLeader:
    """A leader whose one follower said it was ready, and then never sent anything."""
    board.for_part(1).post(READY, {"host": "h", "pid": 2})
    return SplitLeader(board.for_part(0), ProfilePart(0, 2, 5.0), 100, step_lead_s=0.0, result_grace_s=0.3,
                       poll_s=0.02, run=fake_run())  # fmt: skip


def test_a_part_that_went_silent_fails_the_step_at_its_deadline() -> None:
    leader = silent_leader(Board())
    started = time.monotonic()

    with pytest.raises(SplitProfileError, match=r"parts \[1\] sent no result for step 1 .* within 0.3 s"):
        leader.measure_step("prof-0", 150, 0.2, 0.0, request_for("http://127.0.0.1:1/score", "prof-0"))

    assert time.monotonic() - started < 3


def test_a_part_that_left_during_a_step_fails_it_at_once_with_its_reason() -> None:
    board = Board()
    leader = silent_leader(board)

    def leave_when_called() -> None:
        while board.for_part(1).read(0, step_key(1)) is None:
            time.sleep(0.01)
        board.for_part(1).post(LEFT, {"reason": "this part failed: out of memory"})

    threading.Thread(target=leave_when_called, daemon=True).start()
    started = time.monotonic()
    with pytest.raises(SplitProfileError, match="part 1 left before sending its share of step 1.*out of memory"):
        leader.measure_step("prof-0", 150, 0.2, 0.0, request_for("http://127.0.0.1:1/score", "prof-0"))
    assert time.monotonic() - started < 0.3 + 0.2, "at once, not at the deadline"
