"""Use-case files: the sample loads, and each kind of mistake is refused naming the file and the field."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from deployflow.batch.config import CONFIG_DIR, REPO_ROOT, ConfigError, load_use_case, load_use_cases

SAMPLE = json.loads((CONFIG_DIR / "diabetes.json").read_text())


def write(tmp_path: Path, name: str = "case.json", **changes: Any) -> Path:
    document = {**SAMPLE, **changes}
    path = tmp_path / name
    path.write_text(json.dumps({k: v for k, v in document.items() if v is not ...}))
    return path


def test_the_sample_loads_with_its_package_resolved_against_the_repo() -> None:
    case = load_use_case(CONFIG_DIR / "diabetes.json")

    assert case.package_path == str(REPO_ROOT / "include" / "models" / "diabetes")
    assert str(case.model_ref) == "diabetes:1" and case.manifest_blob == "diabetes/_manifest.json"
    assert [c.dag_id for c in load_use_cases()] == ["batch_scoring_diabetes"]


@pytest.mark.parametrize(
    ("changes", "field", "says"),
    [
        ({"model": "diabetes"}, "model", "name:version"),
        ({"schedule": "every morning"}, "schedule", "not a cron expression"),
        ({"schedule": None, "watch": False}, "(file)", "would never run"),
        ({"mini_batch_size": 0}, "mini_batch_size", "greater than or equal to 1"),
        ({"error_threshold": -2}, "error_threshold", "greater than or equal to -1"),
        ({"input": {"container": "Landing"}}, "input.container", "lower-case"),
        ({"input": {"container": "landing", "prefix": "_staging/x"}}, "input.prefix", "_staging"),
        ({"output": {"container": "landing", "prefix": "diabetes"}}, "(file)", "overlap"),
        ({"data_factory": {"conn_id": "adf"}}, "data_factory.factory", "Field required"),
        ({"timeout": 5}, "timeout", "Extra inputs are not permitted"),
        ({"dag_id": "has space"}, "dag_id", "letters, digits"),
        ({"instance_count": "2"}, "instance_count", "valid integer"),
        ({"storage_conn_id": ...}, "storage_conn_id", "Field required"),
    ],
)
def test_a_mistake_is_refused_naming_the_file_and_field(tmp_path: Path, changes: dict, field: str, says: str) -> None:
    path = write(tmp_path, **changes)

    with pytest.raises(ConfigError) as refused:
        load_use_case(path)

    lines = str(refused.value).splitlines()
    assert any(line.startswith(f"{path}: {field}: ") and says in line for line in lines), lines


def test_every_problem_in_a_file_is_reported_at_once(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as refused:
        load_use_case(write(tmp_path, model="m", mini_batch_size=0))
    assert len(str(refused.value).splitlines()) == 2


def test_a_missing_scoring_script_and_broken_json_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"scoring_script: .*nope\.py does not exist"):
        load_use_case(write(tmp_path, scoring_script="nope.py"))
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(ConfigError, match=r"bad\.json: not readable as JSON"):
        load_use_case(tmp_path / "bad.json")


def test_two_use_cases_with_one_dag_id_are_refused(tmp_path: Path) -> None:
    write(tmp_path, "a.json")
    write(tmp_path, "b.json")
    with pytest.raises(ConfigError, match="two use cases have dag_id 'batch_scoring_diabetes'"):
        load_use_cases(tmp_path)


def test_an_mlflow_model_needs_no_scoring_script_and_another_package_does(tmp_path: Path) -> None:
    model = tmp_path / "iris"
    model.mkdir()
    (model / "MLmodel").write_text("flavors:\n  python_function:\n    loader_module: mlflow.sklearn\n")
    (model / "requirements.txt").write_text("mlflow==3.18.0\nscikit-learn==1.9.1\n")

    case = load_use_case(write(tmp_path, package_path=str(model), scoring_script=...))

    assert case.scoring_script is None and case.package_path == str(model)
    with pytest.raises(ConfigError, match=r"scoring_script: missing, and .*diabetes is not an MLflow model folder"):
        load_use_case(write(tmp_path, scoring_script=...))
