"""Named smoke checks, each with a severity: what validation and the smoke test ask of a scoring answer.

The same checks judge a model served by the inference server in its own environment
(``validate``) and a deployment behind an endpoint (``smoke_test``): the package's samples
replayed and compared, answers that are JSON and in time, and a malformed request answered
with a 4xx. Each check has a severity — ``fail``, ``warn`` or ``off`` — whose defaults match
what Azure ML itself accepts: a ``score.py`` that answers a malformed request with a 500
serves on Azure ML, so that is a warning with its fix, not a failed run. Every outcome is
recorded, not only the first failure.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

from deployflow.compare import compare_responses

MALFORMED_BODY = b"{not json"
#: answers of a front door (gateway, router) that is busy or not ready, not of the model
TRANSIENT_STATUSES = frozenset({502, 503, 504})


class Severity(StrEnum):
    FAIL = "fail"
    WARN = "warn"
    OFF = "off"


class Check(StrEnum):
    SAMPLE_ANSWERS = "sample_answers"
    ANSWER_IS_JSON = "answer_is_json"
    WITHIN_TIMEOUT = "within_timeout"
    MALFORMED_REQUEST_4XX = "malformed_request_4xx"
    SCHEMA_EXAMPLES = "schema_examples"


DEFAULT_SEVERITIES: dict[str, Severity] = {
    Check.SAMPLE_ANSWERS: Severity.FAIL,
    Check.ANSWER_IS_JSON: Severity.FAIL,
    Check.WITHIN_TIMEOUT: Severity.FAIL,
    Check.MALFORMED_REQUEST_4XX: Severity.WARN,
    Check.SCHEMA_EXAMPLES: Severity.WARN,
}

# The JSON schema of a ``smoke_checks`` object, for the DAG's trigger form.
SEVERITIES_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {name: {"type": "string", "enum": [s.value for s in Severity]} for name in DEFAULT_SEVERITIES},
    "additionalProperties": False,
}

MALFORMED_FIX = (
    "make run() answer input it cannot parse with a 4xx, e.g. "
    "`from azureml.contrib.services.aml_response import AMLResponse` and "
    '`return AMLResponse(json.dumps({"error": str(e)}), 400)`, or declare the input with '
    "inference-schema's @input_schema, whose parser answers 400 itself"
)
# azmlinfsrv JSON-encodes what run() returns, so a run() that returns json.dumps(answer) answers a JSON string.
DOUBLE_ENCODED = (
    "matches once decoded: the answer is a JSON string holding the expected JSON (run() returns "
    "json.dumps(...), which the server encodes again), so clients must decode it twice; return the object "
    "itself for a plain JSON answer"
)


@dataclass(frozen=True)
class Sample:
    """One request the model must answer, and the answer it must give (None: any JSON 2xx will do)."""

    name: str
    body: bytes
    expected: Any = None


@dataclass(frozen=True)
class Answer:
    """What came back for one request: status, the body (parsed when it is JSON), the time it took."""

    status: int
    body: Any
    is_json: bool
    ms: float
    timed_out: bool = False
    deployment: str | None = None


@dataclass(frozen=True)
class Outcome:
    check: str
    severity: str
    passed: bool
    detail: str
    sample: str | None = None
    ms: float | None = None
    #: a retry may mend it: no answer in time, or the platform's front door answered 502/503/504
    transient: bool = False

    @property
    def verdict(self) -> str:
        """``pass``, or the check's severity when it did not pass."""
        return "pass" if self.passed else self.severity


@dataclass
class CheckReport:
    outcomes: list[Outcome] = field(default_factory=list)

    @property
    def failures(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.verdict == Severity.FAIL]

    @property
    def warnings(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.verdict == Severity.WARN]

    @property
    def retry_may_help(self) -> bool:
        """Every failure is transient: a retry may pass where this try did not."""
        return bool(self.failures) and all(o.transient for o in self.failures)

    def answer_ms(self) -> list[float]:
        """How long each sample's answer took, in the order sent."""
        return [o.ms for o in self.outcomes if o.check == Check.WITHIN_TIMEOUT and o.ms is not None]

    def lines(self, outcomes: list[Outcome] | None = None) -> list[str]:
        """One readable line per outcome: ``[fail] sample_answers (two): $[1]: expected 3, got 4``."""
        shown = self.outcomes if outcomes is None else outcomes
        return [f"[{o.verdict}] {o.check}{f' ({o.sample})' if o.sample else ''}: {o.detail}" for o in shown]

    def to_dict(self) -> dict[str, Any]:
        return {
            "passed": not self.failures,
            "failures": len(self.failures),
            "warnings": len(self.warnings),
            "outcomes": [{**asdict(o), "verdict": o.verdict} for o in self.outcomes],
        }


def parse_severities(value: Mapping[str, Any] | None) -> dict[str, Severity]:
    """The defaults with the user's overrides; an unknown check or severity says what is allowed."""
    severities = dict(DEFAULT_SEVERITIES)
    for name, severity in (value or {}).items():
        if name not in DEFAULT_SEVERITIES:
            raise ValueError(f"smoke_checks: unknown check {name!r}; the checks are {', '.join(DEFAULT_SEVERITIES)}")
        try:
            severities[name] = Severity(str(severity))
        except ValueError:
            raise ValueError(f"smoke_checks: {name} must be one of fail, warn, off, not {severity!r}") from None
    return severities


def run_checks(
    send: Callable[[bytes], Answer],
    samples: list[Sample],
    *,
    severities: Mapping[str, Severity] | None = None,
    rel_tol: float,
    abs_tol: float,
    examples: list[Sample] | None = None,
    timeout_s: float,
    deployment: str | None = None,
) -> CheckReport:
    """Send every sample (and schema example), then a malformed request; record every check's outcome."""
    chosen = {**DEFAULT_SEVERITIES, **(severities or {})}
    report = CheckReport()

    def record(
        check: Check, passed: bool, detail: str, sample: str | None = None, ms: float | None = None, *, transient=False
    ) -> None:
        if chosen[check] is not Severity.OFF:
            report.outcomes.append(Outcome(str(check), str(chosen[check]), passed, detail, sample, ms, transient))

    for sample in samples:
        answer = send(sample.body)
        _judge_answer(record, sample, answer, rel_tol=rel_tol, abs_tol=abs_tol, timeout_s=timeout_s)
        if deployment and answer.deployment not in (None, deployment):
            record(
                Check.SAMPLE_ANSWERS,
                False,
                f"answered by deployment {answer.deployment}, not {deployment}",
                sample.name,
            )
    for example in examples or []:
        answer = send(example.body)
        ok = 200 <= answer.status < 300 and answer.is_json
        record(Check.SCHEMA_EXAMPLES, ok, f"HTTP {answer.status}: {_short(answer.body)}", example.name)
    if chosen[Check.MALFORMED_REQUEST_4XX] is not Severity.OFF:
        bad = send(MALFORMED_BODY)
        if 400 <= bad.status < 500:
            record(Check.MALFORMED_REQUEST_4XX, True, f"HTTP {bad.status}")
        else:
            record(
                Check.MALFORMED_REQUEST_4XX,
                False,
                f"a request whose body is not JSON got HTTP {bad.status}, not a 4xx ({_short(bad.body)}); "
                f"to fix: {MALFORMED_FIX}",
            )
    return report


def _judge_answer(
    record: Callable[..., None], sample: Sample, answer: Answer, *, rel_tol: float, abs_tol: float, timeout_s: float
) -> None:
    if answer.timed_out:
        record(Check.WITHIN_TIMEOUT, False, f"no answer within {timeout_s:g} s", sample.name, transient=True)
        return
    record(Check.WITHIN_TIMEOUT, True, f"{answer.ms:.1f} ms", sample.name, answer.ms)
    record(
        Check.ANSWER_IS_JSON,
        answer.is_json or answer.status in TRANSIENT_STATUSES,
        "JSON" if answer.is_json else f"HTTP {answer.status}, not JSON: {_short(answer.body)}",
        sample.name,
    )
    if answer.status != 200:
        busy = answer.status in TRANSIENT_STATUSES
        record(Check.SAMPLE_ANSWERS, False, f"HTTP {answer.status}: {_short(answer.body)}", sample.name, transient=busy)
    elif sample.expected is not None and answer.is_json:
        problems = compare_responses(sample.expected, answer.body, rel_tol=rel_tol, abs_tol=abs_tol)
        listed = "; ".join(problems[:10]) + (f"; and {len(problems) - 10} more" if len(problems) > 10 else "")
        inner = _json_inside(answer.body) if problems and not isinstance(sample.expected, str) else None
        if inner is not None and not compare_responses(sample.expected, inner[0], rel_tol=rel_tol, abs_tol=abs_tol):
            record(Check.SAMPLE_ANSWERS, True, DOUBLE_ENCODED, sample.name)
            return
        record(Check.SAMPLE_ANSWERS, not problems, listed or "matches", sample.name)
    elif sample.expected is not None:
        record(Check.SAMPLE_ANSWERS, False, "the answer is not JSON, so it cannot match", sample.name)
    else:
        record(Check.SAMPLE_ANSWERS, True, "answered 200 (no expected answer given)", sample.name)


def _json_inside(body: Any) -> tuple[Any] | None:
    """The JSON document a JSON string answer holds (run() returned ``json.dumps(...)``), in a 1-tuple; else None."""
    if not isinstance(body, str):
        return None
    try:
        return (json.loads(body),)
    except ValueError:
        return None


def _short(body: Any, limit: int = 300) -> str:
    text = body if isinstance(body, str) else repr(body)
    return text if len(text) <= limit else text[:limit] + "..."
