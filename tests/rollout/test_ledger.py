"""The rollout ledger kept on the endpoint: compact enough for an Azure tag, and read back as it was written."""

from __future__ import annotations

from deployflow.rollout.controller import Decision
from deployflow.rollout.ledger import MAX_TAG_CHARS, Ledger


def test_a_ledger_reads_back_as_written() -> None:
    ledger = Ledger(
        "realtime_deployment/manual__2026-12-04T03:00:00+00:00",
        "green",
        "blue",
        "diabetes:2",
        (Decision(0, "pass"), Decision(1, "inconclusive"), Decision(1, "pass"), Decision(3, "approved")),
    )
    again = Ledger.decode(ledger.encode())
    assert again == ledger
    assert len(ledger.encode()) <= MAX_TAG_CHARS


def test_a_long_history_keeps_its_latest_verdicts_within_the_tag_limit() -> None:
    decisions = tuple(Decision(i % 9, "inconclusive") for i in range(200)) + (Decision(7, "pass"),)
    ledger = Ledger("realtime_deployment/" + "r" * 80, "green", "blue", "a-model-with-a-long-name:12", decisions)
    text = ledger.encode()
    assert len(text) <= MAX_TAG_CHARS
    assert Ledger.decode(text).decisions[-1] == Decision(7, "pass"), "the furthest step passed survives"
