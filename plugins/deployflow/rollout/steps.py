"""Rollout steps, and their compact text form ('mirror 20% 60s', 'traffic 10% 60s', 'approve', 'traffic 100%')."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from deployflow.platform.contract import MAX_MIRROR_PERCENT

STEP_EXAMPLES = "'mirror 20% 60s', 'traffic 10% 60s', 'approve', 'approve timeout 1h' or 'traffic 100%'"

_MIRROR = re.compile(r"mirror\s+(?P<percent>[^%\s]+)\s*%(?:\s+(?:for\s+)?(?P<duration>.+))?", re.I)
_TRAFFIC = re.compile(r"traffic\s+(?P<percent>[^%\s]+)\s*%(?:\s+(?:for\s+)?(?P<duration>.+))?", re.I)
_APPROVAL = re.compile(
    r"(?:approve|approval|pause(?:\s+for\s+approval)?)(?:\s+(?:timeout|up\s+to|for)\s+(?P<timeout>.+))?", re.I
)
_DURATION = re.compile(r"(?P<value>\d+(?:\.\d+)?)\s*(?P<unit>s|sec|secs|seconds?|m|min|mins|minutes?|h|hours?)", re.I)
_UNIT_S = {"s": 1, "m": 60, "h": 3600}


class RolloutPlanError(ValueError):
    """A rollout plan that cannot run; the message says what to change."""


@dataclass(frozen=True)
class MirrorStep:
    """Copy `percent` % of live requests to the new deployment (responses discarded) for a window."""

    percent: int
    duration_s: float

    def __post_init__(self) -> None:
        _check_percent(self.percent, "mirror", 1, MAX_MIRROR_PERCENT, "Azure ML mirrors at most 50 %")
        _check_duration(self.duration_s, "mirror duration")

    @property
    def gated(self) -> bool:
        return True

    def describe(self) -> str:
        return f"mirror {self.percent} % for {_secs(self.duration_s)}"

    def to_text(self) -> str:
        return f"mirror {self.percent}% {self.duration_s:g}s"

    def to_dict(self) -> dict[str, Any]:
        return {"type": "mirror", "percent": self.percent, "duration_s": self.duration_s}


@dataclass(frozen=True)
class TrafficStep:
    """Send `percent` % of live traffic to the new deployment; judged over `duration_s` when given."""

    percent: int
    duration_s: float | None = None

    def __post_init__(self) -> None:
        _check_percent(self.percent, "traffic", 1, 100, "")
        if self.duration_s is not None:
            _check_duration(self.duration_s, "traffic duration")

    @property
    def gated(self) -> bool:
        return self.duration_s is not None

    def describe(self) -> str:
        window = f" for {_secs(self.duration_s)}" if self.duration_s is not None else ""
        return f"traffic {self.percent} %{window}"

    def to_text(self) -> str:
        return f"traffic {self.percent}%" + (f" {self.duration_s:g}s" if self.duration_s is not None else "")

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"type": "traffic", "percent": self.percent}
        if self.duration_s is not None:
            data["duration_s"] = self.duration_s
        return data


@dataclass(frozen=True)
class ApprovalStep:
    """Hold traffic where it is until a person approves; no answer within `timeout_s` is a refusal."""

    timeout_s: float | None = None

    def __post_init__(self) -> None:
        if self.timeout_s is not None:
            _check_duration(self.timeout_s, "approval timeout")

    @property
    def gated(self) -> bool:
        return False

    def describe(self) -> str:
        return "pause for approval" + (f" (up to {_secs(self.timeout_s)})" if self.timeout_s is not None else "")

    def to_text(self) -> str:
        return "approve" + (f" timeout {self.timeout_s:g}s" if self.timeout_s is not None else "")

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"type": "approval"}
        if self.timeout_s is not None:
            data["timeout_s"] = self.timeout_s
        return data


RolloutStep = MirrorStep | TrafficStep | ApprovalStep


def parse_step(value: str | Mapping[str, Any]) -> RolloutStep:
    """A step from its text ('traffic 10% 60s') or its dict ({'type': 'traffic', 'percent': 10, ...})."""
    if isinstance(value, str):
        return _parse_text(value)
    if isinstance(value, Mapping):
        return _parse_dict(value)
    raise RolloutPlanError(f"a step is a string such as {STEP_EXAMPLES}, or a dict; got {value!r}")


def _parse_text(text: str) -> RolloutStep:
    line = " ".join(text.split())
    if match := _MIRROR.fullmatch(line):
        if match["duration"] is None:
            raise RolloutPlanError(f"'{line}' needs a window for its gate, e.g. 'mirror {match['percent']}% 60s'")
        return MirrorStep(_parse_percent(match["percent"], line), _parse_duration(match["duration"], line))
    if match := _TRAFFIC.fullmatch(line):
        duration = _parse_duration(match["duration"], line) if match["duration"] else None
        return TrafficStep(_parse_percent(match["percent"], line), duration)
    if match := _APPROVAL.fullmatch(line):
        return ApprovalStep(_parse_duration(match["timeout"], line) if match["timeout"] else None)
    raise RolloutPlanError(f"cannot read the step '{text}'; write e.g. {STEP_EXAMPLES}")


def _parse_dict(data: Mapping[str, Any]) -> RolloutStep:
    kinds: dict[str, tuple[type, set[str]]] = {
        "mirror": (MirrorStep, {"percent", "duration_s"}),
        "traffic": (TrafficStep, {"percent", "duration_s"}),
        "approval": (ApprovalStep, {"timeout_s"}),
    }
    kind = data.get("type")
    if kind not in kinds:
        raise RolloutPlanError(f"step {dict(data)}: 'type' must be one of {', '.join(kinds)}, got {kind!r}")
    cls, allowed = kinds[kind]
    unknown = sorted(set(data) - allowed - {"type"})
    if unknown:
        raise RolloutPlanError(f"{kind} step: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(allowed))}")
    if "percent" in allowed and "percent" not in data:
        raise RolloutPlanError(f"{kind} step {dict(data)} needs 'percent'")
    if cls is MirrorStep and "duration_s" not in data:
        raise RolloutPlanError(f"mirror step {dict(data)} needs 'duration_s', the window its gate judges")
    return cls(**{k: v for k, v in data.items() if k != "type"})


def _parse_percent(token: str, line: str) -> int:
    if not token.isdigit():
        raise RolloutPlanError(f"'{line}': the percentage must be a whole number, got '{token}%'")
    return int(token)


def _parse_duration(token: str, line: str) -> float:
    match = _DURATION.fullmatch(token.strip())
    if match is None:
        raise RolloutPlanError(f"'{line}': cannot read the duration '{token}'; write it with a unit: 60s, 5m or 1h")
    return float(match["value"]) * _UNIT_S[match["unit"][0].lower()]


def _check_percent(value: object, what: str, low: int, high: int, why: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        because = f" ({why})" if why else ""
        raise RolloutPlanError(f"{what} must be a whole percentage from {low} to {high}{because}, got {value!r}")


def _check_duration(value: object, what: str) -> None:
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if not (number and value > 0 and math.isfinite(value)):
        raise RolloutPlanError(f"{what} must be a number of seconds > 0, got {value!r}")


def _secs(value: float) -> str:
    return f"{value:g} s"
