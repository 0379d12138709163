"""The named smoke checks judge answers by their severities, and record every outcome."""

from __future__ import annotations

import pytest

from deployflow.checks import MALFORMED_BODY, Answer, Sample, Severity, parse_severities, run_checks


def answering(table: dict[bytes, Answer]):
    sent: list[bytes] = []

    def send(body: bytes) -> Answer:
        sent.append(body)
        return table[body]

    return send, sent


SAMPLES = [Sample("one", b'{"x": 1}', [1.0]), Sample("two", b'{"x": 2}', [2.0])]


def test_every_sample_is_judged_and_a_500_on_bad_input_is_only_a_warning() -> None:
    send, sent = answering({
        b'{"x": 1}': Answer(200, [1.0], True, 3.0),
        b'{"x": 2}': Answer(200, [2.5], True, 4.0),
        MALFORMED_BODY: Answer(500, "Internal Server Error", False, 1.0),
    })  # fmt: skip
    report = run_checks(send, SAMPLES, rel_tol=1e-6, abs_tol=0.0, timeout_s=5)
    assert sent == [b'{"x": 1}', b'{"x": 2}', MALFORMED_BODY]
    assert report.lines(report.failures) == [
        "[fail] sample_answers (two): $[0]: expected 2.0, got 2.5 (rel_tol=1e-06, abs_tol=0)"
    ]
    [warning] = report.lines(report.warnings)
    assert warning.startswith("[warn] malformed_request_4xx: a request whose body is not JSON got HTTP 500")
    assert report.answer_ms() == [3.0, 4.0]
    assert report.to_dict()["passed"] is False


def test_severities_turn_checks_off_or_into_failures() -> None:
    send, sent = answering({b'{"x": 1}': Answer(200, [1.0], True, 3.0), MALFORMED_BODY: Answer(502, "", False, 1.0)})
    severities = parse_severities({"malformed_request_4xx": "fail"})
    report = run_checks(send, SAMPLES[:1], severities=severities, rel_tol=0, abs_tol=0, timeout_s=5)
    assert [o.check for o in report.failures] == ["malformed_request_4xx"]
    send, sent = answering({b'{"x": 1}': Answer(200, [1.0], True, 3.0)})
    report = run_checks(
        send,
        SAMPLES[:1],
        severities=parse_severities({"malformed_request_4xx": "off"}),
        rel_tol=0,
        abs_tol=0,
        timeout_s=5,
    )
    assert sent == [b'{"x": 1}'], "a check that is off sends nothing"
    assert all(o.check != "malformed_request_4xx" for o in report.outcomes)


def test_a_timeout_and_a_non_json_answer_fail_with_what_happened() -> None:
    send, _ = answering({
        b'{"x": 1}': Answer(0, None, False, 5000.0, timed_out=True),
        b'{"x": 2}': Answer(200, "<html>oops</html>", False, 2.0),
        MALFORMED_BODY: Answer(400, {"error": "bad"}, True, 1.0),
    })  # fmt: skip
    report = run_checks(send, SAMPLES, rel_tol=0, abs_tol=0, timeout_s=5)
    assert report.lines(report.failures) == [
        "[fail] within_timeout (one): no answer within 5 s",
        "[fail] answer_is_json (two): HTTP 200, not JSON: <html>oops</html>",
        "[fail] sample_answers (two): the answer is not JSON, so it cannot match",
    ]


def test_an_answer_from_another_deployment_fails_the_sample() -> None:
    send, _ = answering(
        {b'{"x": 1}': Answer(200, [1.0], True, 3.0, deployment="blue"), MALFORMED_BODY: Answer(400, {}, True, 1.0)}
    )
    report = run_checks(send, SAMPLES[:1], rel_tol=0, abs_tol=0, timeout_s=5, deployment="green")
    assert report.lines(report.failures) == ["[fail] sample_answers (one): answered by deployment blue, not green"]


@pytest.mark.parametrize(
    ("given", "message"),
    [({"sample_answer": "fail"}, "unknown check 'sample_answer'; the checks are sample_answers"),
     ({"within_timeout": "error"}, "within_timeout must be one of fail, warn, off, not 'error'")],
)  # fmt: skip
def test_bad_severities_say_what_is_allowed(given: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_severities(given)
    assert parse_severities(None)["sample_answers"] is Severity.FAIL


def test_a_json_string_answer_is_json_and_matches_the_expected_document_it_holds() -> None:
    """run() returning json.dumps(answer) is answered as a JSON string by azmlinfsrv (it encodes again)."""
    send, _ = answering({
        b'{"x": 1}': Answer(200, "[1.0]", True, 3.0),  # the JSON string "[1.0]": the expected answer, encoded twice
        b'{"x": 2}': Answer(200, "[2.5]", True, 3.0),  # encoded twice, and wrong
        MALFORMED_BODY: Answer(400, {"error": "bad"}, True, 1.0),
    })  # fmt: skip
    report = run_checks(send, SAMPLES, rel_tol=1e-6, abs_tol=0.0, timeout_s=5)
    passed = {(o.check, o.sample): o.detail for o in report.outcomes if o.passed}
    assert passed[("answer_is_json", "one")] == passed[("answer_is_json", "two")] == "JSON"
    assert passed[("sample_answers", "one")].startswith("matches once decoded: the answer is a JSON string")
    assert "json.dumps" in passed[("sample_answers", "one")]
    assert report.lines(report.failures) == ["[fail] sample_answers (two): $: expected [2.0], got '[2.5]'"]


def test_text_that_is_not_json_fails_answer_is_json_and_a_string_expected_is_compared_as_it_is() -> None:
    samples = [Sample("text", b'{"x": 1}', "[1.0]")]
    send, _ = answering({b'{"x": 1}': Answer(200, "[1.0]", True, 3.0), MALFORMED_BODY: Answer(400, {}, True, 1.0)})
    assert run_checks(send, samples, rel_tol=0, abs_tol=0, timeout_s=5).failures == []
    send, _ = answering({b'{"x": 1}': Answer(200, "1.0 2.0", False, 3.0), MALFORMED_BODY: Answer(400, {}, True, 1.0)})
    report = run_checks(send, SAMPLES[:1], rel_tol=0, abs_tol=0, timeout_s=5)
    assert [o.check for o in report.failures] == ["answer_is_json", "sample_answers"]
    assert report.lines(report.failures)[1].endswith("the answer is not JSON, so it cannot match")
