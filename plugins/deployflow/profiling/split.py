"""A profile's load steps split over workers: one part leads the search, the others send their shares.

The search is adaptive (each step's rate follows from the last verdict), so its steps cannot be planned
upfront as mapped tasks. Instead the profile runs as N parts at once, each for the whole profile. Part 0,
the leader, does everything a single profile does; for a step above ``max_rate_per_worker`` it posts the
step (deployment, rate, part count k, a shared wall-clock start a moment ahead) on a board, runs shard 0
itself, and merges the shards the needed followers post back (`deployflow.loadtest.split`), bucket for
bucket, before judging the step. Followers post ``ready`` when they start, wait for steps, and leave when
the leader posts ``done`` (which it does however it ends) or is no longer running.

The board is Airflow XCom in the DAG (`deployflow.operators.profile_split`), anything with the same three
methods in tests. Nothing secret goes on it: a follower asks the platform for the scoring key itself.
"""

from __future__ import annotations

import math
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from deployflow.loadtest import RequestSpec, Schedule
from deployflow.loadtest.split import (
    DEFAULT_MAX_RATE_PER_WORKER,
    DEFAULT_START_LEAD_S,
    LATE_START_TOLERANCE_MS,
    LoadPart,
    PartResult,
    SplitOutcome,
    merge_parts,
    parts_needed,
    run_part,
)

LEADER = 0
READY, LEFT, DONE = "ready", "left", "done"
# From posting a step to its shared start: a follower polling every POLL_S reads it, asks for a key
# and sets its clock well within that.
DEFAULT_STEP_LEAD_S = 2.0
# After a step's planned end: how long the leader waits for the followers' results.
DEFAULT_RESULT_GRACE_S = 30.0
POLL_S = 0.2
LEADER_CHECK_S = 5.0

RunPart = Callable[..., PartResult]


class StepBoard(Protocol):
    """Where the parts of one profile meet: each posts under its own keys and reads any part's."""

    def post(self, key: str, value: dict[str, Any]) -> None: ...

    def read(self, part: int, key: str) -> dict[str, Any] | None: ...

    def leader_running(self) -> bool:
        """False once the leader's task has ended (or is waiting for a retry); True before it starts."""
        ...


class SplitProfileError(RuntimeError):
    """The parts of a split profile did not run together; the message says what to change."""


def step_key(step: int) -> str:
    return f"step-{step}"


def result_key(step: int) -> str:
    return f"result-{step}"


def profile_parts(max_rate: float, max_rate_per_worker: float = DEFAULT_MAX_RATE_PER_WORKER) -> int:
    """How many parts the profile's highest step (``max_rate``) needs: the profile runs that many."""
    return parts_needed(Schedule.constant(max_rate, 1.0), max_rate_per_worker)


@dataclass(frozen=True)
class ProfilePart:
    """Part ``index`` of a profile run as ``parts`` tasks; followers are ready within ``ready_timeout_s``."""

    index: int
    parts: int
    ready_timeout_s: float = DEFAULT_START_LEAD_S

    def __post_init__(self) -> None:
        if not 0 <= self.index < self.parts:
            raise ValueError(f"profile part index must be in [0, {self.parts}), got {self.index}")
        if not (self.ready_timeout_s >= 0 and math.isfinite(self.ready_timeout_s)):
            raise ValueError(f"ready_timeout_s must be a finite number of seconds >= 0, got {self.ready_timeout_s!r}")

    @property
    def leads(self) -> bool:
        return self.index == LEADER

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "parts": self.parts, "ready_timeout_s": self.ready_timeout_s}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ProfilePart:
        try:
            return cls(int(data["index"]), int(data["parts"]), float(data.get("ready_timeout_s", DEFAULT_START_LEAD_S)))
        except KeyError as exc:
            raise ValueError(f"not a profile part: missing field {exc.args[0]!r} in {dict(data)}") from exc


def plan_profile(
    max_rate: float,
    max_rate_per_worker: float = DEFAULT_MAX_RATE_PER_WORKER,
    *,
    ready_timeout_s: float = DEFAULT_START_LEAD_S,
) -> list[ProfilePart]:
    """The parts a profile runs as: one when ``max_rate`` fits one worker (no coordination at all)."""
    parts = profile_parts(max_rate, max_rate_per_worker)
    return [ProfilePart(i, parts, ready_timeout_s) for i in range(parts)]


@dataclass(frozen=True)
class StepMessage:
    """The leader's call for one split step: what the followers need to send their shards, and no key."""

    step: int
    deployment: str
    rate: float
    parts: int
    start_at: float
    planned_at: float
    duration_s: float
    settle_s: float

    def load_part(self, index: int) -> LoadPart:
        return LoadPart(index, self.parts, self.start_at, self.planned_at)

    def schedule(self) -> Schedule:
        return Schedule.constant(self.rate, self.duration_s)

    def to_dict(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "deployment": self.deployment,
            "rate": self.rate,
            "parts": self.parts,
            "start_at": self.start_at,
            "planned_at": self.planned_at,
            "duration_s": self.duration_s,
            "settle_s": self.settle_s,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StepMessage:
        try:
            return cls(
                int(data["step"]),
                str(data["deployment"]),
                float(data["rate"]),
                int(data["parts"]),
                float(data["start_at"]),
                float(data["planned_at"]),
                float(data["duration_s"]),
                float(data["settle_s"]),
            )
        except KeyError as exc:
            raise ValueError(f"not a profile step: missing field {exc.args[0]!r}") from exc


def _who() -> dict[str, Any]:
    """Which process a part runs in: its host, pid and parent's pid (the task's supervisor), for the logs."""
    return {"host": socket.gethostname(), "pid": os.getpid(), "parent_pid": os.getppid()}


class SplitLeader:
    """Part 0's side: splits the steps above ``max_rate_per_worker`` over the followers, merges them back.

    ``wall`` is the wall clock (shared starts, the merge's clock check), ``monotonic`` paces the waits.
    """

    def __init__(
        self,
        board: StepBoard,
        part: ProfilePart,
        max_rate_per_worker: float = DEFAULT_MAX_RATE_PER_WORKER,
        *,
        step_lead_s: float = DEFAULT_STEP_LEAD_S,
        result_grace_s: float = DEFAULT_RESULT_GRACE_S,
        tolerance_ms: float = LATE_START_TOLERANCE_MS,
        poll_s: float = POLL_S,
        run: RunPart = run_part,
        wall: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not part.leads:
            raise ValueError(f"profile part {part.index} is a follower, not the leader")
        if not (step_lead_s >= 0 and math.isfinite(step_lead_s)):
            raise ValueError(f"step_start_lead_s must be a finite number of seconds >= 0, got {step_lead_s!r}")
        parts_needed(Schedule.constant(1.0, 1.0), max_rate_per_worker)  # refuses a limit that is no rate
        self.board, self.part, self.max_rate_per_worker = board, part, max_rate_per_worker
        self.step_lead_s, self.result_grace_s, self.tolerance_ms, self.poll_s = (
            step_lead_s,
            result_grace_s,
            tolerance_ms,
            poll_s,
        )
        self.run, self.wall, self.monotonic, self.sleep = run, wall, monotonic, sleep
        self.steps = 0
        self._ready_by = monotonic() + part.ready_timeout_s
        self._all_ready = part.parts == 1
        board.post(READY, _who())

    def parts_for(self, rate: float) -> int:
        """The parts a step at ``rate`` needs, at most the profile's; 1: the leader sends it alone."""
        needed = math.ceil(rate / self.max_rate_per_worker - 1e-9)
        return max(1, min(self.part.parts, needed))

    def wait_ready(self) -> None:
        """Return once every follower is running; past the plan's ready timeout, fail saying why."""
        while not self._all_ready:
            missing = [i for i in range(1, self.part.parts) if not self._present(i)]
            if not missing:
                self._all_ready = True
                return
            if self.monotonic() >= self._ready_by:
                raise SplitProfileError(
                    f"profile parts {missing} of {self.part.parts} were not running "
                    f"{self.part.ready_timeout_s:g} s after the profile began: the parts of a split profile must "
                    f"run at the same time; give the executor at least {self.part.parts} free slots "
                    "(Celery: workers x worker_concurrency), or raise max_rate_per_worker so fewer parts are needed"
                )
            self.sleep(self.poll_s)

    def measure_step(
        self,
        deployment: str,
        rate: float,
        duration_s: float,
        settle_s: float,
        request: RequestSpec | Callable[[], RequestSpec],
    ) -> SplitOutcome | None:
        """Run one step split over the parts it needs and return the merged outcome; None: not split.

        ``request`` is the leader's own request, or a function asked for it (a key fetched) only when split.
        """
        parts = self.parts_for(rate)
        if parts == 1:
            return None
        request = request() if callable(request) else request
        self.wait_ready()
        self.steps += 1
        now = self.wall()
        step = StepMessage(self.steps, deployment, rate, parts, now + self.step_lead_s, now, duration_s, settle_s)
        self.board.post(step_key(step.step), step.to_dict())
        mine = self.run(request, step.schedule(), step.load_part(LEADER))
        self.board.post(result_key(step.step), mine.to_dict())  # beside the others', for whoever audits the merge
        results = [mine, *self._collect(step)]
        return merge_parts(results, tolerance_ms=self.tolerance_ms, clock=self.wall)

    def finish(self) -> None:
        """Tell the followers to leave: called however the profile ends."""
        self.board.post(DONE, {"steps": self.steps})

    def _present(self, index: int) -> bool:
        return self.board.read(index, READY) is not None and self.board.read(index, LEFT) is None

    def _collect(self, step: StepMessage) -> list[dict[str, Any]]:
        deadline = self.monotonic() + max(0.0, step.start_at + step.duration_s - self.wall()) + self.result_grace_s
        results: dict[int, dict[str, Any]] = {}
        while len(results) < step.parts - 1:
            for index in range(1, step.parts):
                if index in results:
                    continue
                if (found := self.board.read(index, result_key(step.step))) is not None:
                    results[index] = found
                elif (left := self.board.read(index, LEFT)) is not None:
                    raise SplitProfileError(
                        f"profile part {index} left before sending its share of step {step.step} "
                        f"({step.rate:g} requests/s on {step.deployment}): {left.get('reason', 'no reason given')}"
                    )
            if len(results) < step.parts - 1:
                if self.monotonic() >= deadline:
                    missing = sorted(set(range(1, step.parts)) - set(results))
                    raise SplitProfileError(
                        f"profile parts {missing} sent no result for step {step.step} ({step.rate:g} requests/s "
                        f"on {step.deployment}) within {self.result_grace_s:g} s of its end: is their worker alive?"
                    )
                self.sleep(self.poll_s)
        return [results[i] for i in sorted(results)]


@dataclass
class Followed:
    """What a follower did: the steps it sent a share of, and why it left."""

    index: int
    served: list[int]
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "follower": True, "steps_served": self.served, "left": self.reason}


def follow(
    board: StepBoard,
    part: ProfilePart,
    request_for: Callable[[str], RequestSpec],
    *,
    run: RunPart = run_part,
    host: str | None = None,
    poll_s: float = POLL_S,
    leader_check_s: float = LEADER_CHECK_S,
    monotonic: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> Followed:
    """A follower's whole life: ready, then each step that needs it, until the leader is done or gone.

    ``request_for(deployment)`` gives the request to send, its key fetched by this part. A leader that
    has not started within the part's ready timeout is an error, so that two parts waiting for each
    other's slot end instead of hanging.
    """
    if part.leads:
        raise ValueError("profile part 0 leads; it does not follow")
    board.post(READY, _who())
    served: list[int] = []
    reason = "this part stopped"
    started = monotonic()
    next_check = started + leader_check_s
    step = 1
    try:
        while True:
            message = board.read(LEADER, step_key(step))
            if message is not None:
                call = StepMessage.from_dict(message)
                if part.index < call.parts:
                    result = run(request_for(call.deployment), call.schedule(), call.load_part(part.index), host=host)
                    board.post(result_key(step), result.to_dict())
                    served.append(step)
                step += 1
                continue
            if board.read(LEADER, DONE) is not None:
                reason = "the leader is done"
                return Followed(part.index, served, reason)
            now = monotonic()
            if now >= next_check:
                next_check = now + leader_check_s
                if board.read(LEADER, READY) is None and now - started > part.ready_timeout_s:
                    reason = f"the leader (part 0) was not running {part.ready_timeout_s:g} s after this part began"
                    raise SplitProfileError(
                        f"{reason}: the parts of a split profile must run at the same time; give the executor at "
                        f"least {part.parts} free slots (Celery: workers x worker_concurrency)"
                    )
                if board.read(LEADER, READY) is not None and not board.leader_running():
                    reason = "the leader's task is no longer running"
                    return Followed(part.index, served, reason)
            sleep(poll_s)
    except Exception as e:
        if not isinstance(e, SplitProfileError):
            reason = f"this part failed: {e}"
        raise
    finally:
        board.post(LEFT, {**_who(), "reason": reason})
