"""validate runs score.py in Azure ML's real inference server, with packages in the styles users have."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from deployflow.checks import Severity
from deployflow.packages import ModelPackageError
from deployflow.runtime.environments import EnvironmentCache
from deployflow.validation import validate_package
from tests.runtime.support import ENV_CACHE, SAMPLE_MODEL
from tests.validation.foreign import (
    BROKEN_INIT_SCORE,
    PLAIN_SCORE,
    RAW_SCORE,
    SCHEMA_SCORE,
    add_samples,
    write_package,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def model_python() -> Path:
    return EnvironmentCache(ENV_CACHE).ensure(SAMPLE_MODEL / "requirements.txt")


def outcomes(report: dict) -> dict[tuple[str, str | None], str]:
    return {(o["check"], o["sample"]): o["verdict"] for o in report["checks"]["outcomes"]}


def test_a_score_py_that_raises_on_bad_json_validates_with_a_warning_naming_the_fix(
    model_python: Path, tmp_path: Path
) -> None:
    write_package(model_python, tmp_path / "plain", PLAIN_SCORE)
    report = validate_package(tmp_path / "plain", env_cache=ENV_CACHE).to_dict()
    verdicts = outcomes(report)
    assert verdicts[("sample_answers", "sample")] == "pass"
    assert verdicts[("malformed_request_4xx", None)] == "warn"
    assert report["schema"] is None, "a plain run(raw_data) declares no schema"
    [warning] = report["warnings"]
    assert "got HTTP 500, not a 4xx" in warning and "AMLResponse" in warning


def test_the_warning_becomes_a_failure_when_asked(model_python: Path, tmp_path: Path) -> None:
    write_package(model_python, tmp_path / "plain", PLAIN_SCORE)
    with pytest.raises(ModelPackageError, match=r"\[fail\] malformed_request_4xx: .*HTTP 500"):
        validate_package(tmp_path / "plain", env_cache=ENV_CACHE, severities={"malformed_request_4xx": Severity.FAIL})


def test_an_inference_schema_score_py_validates_and_reports_its_schema(model_python: Path, tmp_path: Path) -> None:
    write_package(model_python, tmp_path / "schema", SCHEMA_SCORE, body="schema")
    report = validate_package(tmp_path / "schema", env_cache=ENV_CACHE).to_dict()
    verdicts = outcomes(report)
    assert verdicts[("sample_answers", "sample")] == "pass"
    assert verdicts[("schema_examples", "swagger-example")] == "pass", "the declared example is answered"
    assert verdicts[("malformed_request_4xx", None)] == "pass", "the server's own parser answers 400"
    assert report["schema"]["input"]["properties"]["data"]["format"] == "numpy.ndarray"
    assert report["schema"]["input"]["example"] == {"data": [[5.1, 3.5, 1.4, 0.2]]}
    assert report["warnings"] == []


def test_a_raw_request_score_py_with_its_own_400_validates_clean(model_python: Path, tmp_path: Path) -> None:
    write_package(model_python, tmp_path / "raw", RAW_SCORE)
    report = validate_package(tmp_path / "raw", env_cache=ENV_CACHE).to_dict()
    assert {v for v in outcomes(report).values()} == {"pass"}
    assert report["samples"] == 1


def test_three_samples_with_one_wrong_fail_naming_it_and_where(model_python: Path, tmp_path: Path) -> None:
    trained = write_package(model_python, tmp_path / "many", PLAIN_SCORE)
    add_samples(tmp_path / "many", trained, wrong="versicolor")
    with pytest.raises(ModelPackageError) as caught:
        validate_package(tmp_path / "many", env_cache=ENV_CACHE)
    message = str(caught.value)
    assert "1 check(s) failed" in message
    expected_label = trained["labels"][1]
    assert f"[fail] sample_answers (versicolor): $[0]: expected {expected_label + 1}, got {expected_label}" in message
    assert "setosa" not in message and "virginica" not in message


def test_all_samples_are_replayed_and_a_package_tolerance_is_used(model_python: Path, tmp_path: Path) -> None:
    trained = write_package(model_python, tmp_path / "tol", PLAIN_SCORE)
    add_samples(tmp_path / "tol", trained)
    # Labels are integers: off by one is within an absolute tolerance of 1, so nothing fails.
    (tmp_path / "tol" / "samples" / "setosa.response.json").write_text(json.dumps([trained["labels"][0] + 1]))
    (tmp_path / "tol" / "tolerance.json").write_text(json.dumps({"absolute": 1.0}))
    report = validate_package(tmp_path / "tol", env_cache=ENV_CACHE).to_dict()
    answered = [s for (check, s), v in outcomes(report).items() if check == "sample_answers" and v == "pass"]
    assert sorted(answered) == ["sample", "setosa", "versicolor", "virginica"]
    assert report["samples"] == 4


def test_init_that_raises_fails_with_the_servers_own_traceback(model_python: Path, tmp_path: Path) -> None:
    write_package(model_python, tmp_path / "broken", BROKEN_INIT_SCORE)
    with pytest.raises(ModelPackageError, match="score.py failed to import or in init()") as caught:
        validate_package(tmp_path / "broken", env_cache=ENV_CACHE, timeout_s=120)
    assert "model.pkl was trained with another scikit-learn" in str(caught.value)


def test_score_py_cannot_read_airflows_environment(model_python: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_SECRET_PLATFORM", "local://?token=do-not-leak")
    write_package(model_python, tmp_path / "env", PLAIN_SCORE)
    (tmp_path / "env" / "score.py").write_text(
        PLAIN_SCORE.replace(
            "return model.predict",
            "assert not any(k.startswith('AIRFLOW') for k in os.environ)\n    return model.predict",
        )
    )
    report = validate_package(tmp_path / "env", env_cache=ENV_CACHE).to_dict()
    assert outcomes(report)[("sample_answers", "sample")] == "pass"
