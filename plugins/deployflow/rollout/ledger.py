"""What a rollout needs to resume, kept on the endpoint itself: a tag both Azure ML and the runtime keep.

A retried promote task (its process killed at 50/50, say) starts with nothing of the first
try — no memory, and XComs it may never have pushed. The endpoint's traffic says where the
rollout stands; this tag says the rest: which run began it, which deployment is the new one,
which held all traffic before, which model is rolling out, and the verdicts already given.
It is written before traffic first moves and after every verdict, and removed when the
rollout completes or is rolled back — so a tag still there names the run that left an
endpoint mid-rollout.

The value is compact JSON (Azure ML tag values hold 256 characters):
``{"run": "dag/run", "new": "green", "old": "blue", "model": "m:3", "d": "0p,1p,2i"}``
with one ``index + outcome letter`` per decision (p pass, f fail, i inconclusive, a approved,
d denied, n not judged by a dry run).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from deployflow.platform.base import MLPlatform
from deployflow.platform.errors import PlatformNotFoundError
from deployflow.platform.specs import EndpointSpec
from deployflow.rollout.controller import Decision

ROLLOUT_TAG = "deployflow-rollout"
OUTCOMES = {"pass": "p", "fail": "f", "inconclusive": "i", "approved": "a", "denied": "d", "not judged": "n"}
LETTERS = {letter: outcome for outcome, letter in OUTCOMES.items()}
MAX_TAG_CHARS = 256


@dataclass(frozen=True)
class Ledger:
    run: str
    new: str
    old: str
    model: str
    decisions: tuple[Decision, ...] = ()

    def encode(self) -> str:
        kept = list(self.decisions)
        while True:
            text = json.dumps(
                {"run": self.run, "new": self.new, "old": self.old, "model": self.model,
                 "d": ",".join(f"{d.step_index}{OUTCOMES[d.outcome]}" for d in kept)},
                separators=(",", ":"),
            )  # fmt: skip
            if len(text) <= MAX_TAG_CHARS or not kept:
                return text
            kept = kept[1:]  # the oldest verdicts go first; the furthest step passed is what resuming needs

    @classmethod
    def decode(cls, text: str) -> Ledger:
        data = json.loads(text)
        decisions = tuple(
            Decision(int(item[:-1]), LETTERS[item[-1]]) for item in filter(None, data.get("d", "").split(","))
        )
        return cls(data["run"], data["new"], data["old"], data["model"], decisions)


def read_ledger(platform: MLPlatform, endpoint: str) -> Ledger | None:
    """The unfinished rollout the endpoint carries, or None. A tag that does not parse is reported as None."""
    try:
        text = platform.get_endpoint(endpoint).tags.get(ROLLOUT_TAG)
    except PlatformNotFoundError:
        return None
    if not text:
        return None
    try:
        return Ledger.decode(text)
    except (ValueError, KeyError, IndexError):
        return None


def write_ledger(platform: MLPlatform, endpoint: str, ledger: Ledger | None) -> None:
    """Put (or, with None, remove) the ledger tag, keeping the endpoint's other tags and settings."""
    state = platform.get_endpoint(endpoint)
    tags = {k: v for k, v in state.tags.items() if k != ROLLOUT_TAG}
    if ledger is not None:
        tags[ROLLOUT_TAG] = ledger.encode()
    elif ROLLOUT_TAG not in state.tags:
        return
    platform.create_or_update_endpoint(
        EndpointSpec(
            state.name, compute=state.compute, auth_mode=state.auth_mode, description=state.description, tags=tags
        )  # fmt: skip
    )
