"""What the rollout controller asks the operator to do next; each carries a readable log line."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SetTraffic:
    """Set the endpoint's live and mirror traffic to exactly these shares."""

    traffic: dict[str, int]
    mirror: dict[str, int]
    step_index: int
    line: str


@dataclass(frozen=True)
class Observe:
    """Watch the new deployment against the current one for `window_s`, then record the gate's verdict."""

    window_s: float
    step_index: int
    line: str


@dataclass(frozen=True)
class AskApproval:
    """Ask a person whether to go on; no answer within `timeout_s` (when set) counts as no."""

    question: str
    timeout_s: float | None
    step_index: int
    line: str


@dataclass(frozen=True)
class RollBack:
    """Give the old deployment all traffic again, stop mirroring, and fail the rollout for `reasons`."""

    traffic: dict[str, int]
    mirror: dict[str, int]
    reasons: tuple[str, ...]
    line: str


@dataclass(frozen=True)
class Finish:
    """The new deployment holds all traffic; delete the old one after `delete_old_after_s`."""

    old: str
    delete_old_after_s: float
    line: str


Action = SetTraffic | Observe | AskApproval | RollBack | Finish
