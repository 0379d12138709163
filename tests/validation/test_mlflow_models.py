"""MLflow models with no score.py: recognised, validated on the real inference server, served as Azure ML does."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from deployflow.packages import MLFLOW_SCORING_SCRIPT, ModelPackage, ModelPackageError
from deployflow.validation import validate_package
from tests.runtime.support import ENV_CACHE
from tests.validation.mlflow_models import save_iris_model

MLMODEL = """\
flavors:
  python_function:
    loader_module: mlflow.sklearn
    model_path: model.pkl
  sklearn:
    pickled_model: model.pkl
mlflow_version: 3.18.0
"""


MLFLOW_REQUIREMENTS = "mlflow==3.18.0\nscikit-learn==1.9.1\n"


def hand_written_mlflow_folder(folder: Path, requirements: str | None = MLFLOW_REQUIREMENTS) -> Path:
    folder.mkdir(parents=True)
    (folder / "MLmodel").write_text(MLMODEL)
    (folder / "model.pkl").write_bytes(b"not read by these tests")
    if requirements is not None:
        (folder / "requirements.txt").write_text(requirements)
    (folder / "input_example.json").write_text(json.dumps({"columns": ["a", "b"], "data": [[1, 2], [3, 4]]}))
    return folder


def test_an_mlflow_folder_is_served_by_the_platforms_script_in_its_own_requirements(tmp_path: Path) -> None:
    package = ModelPackage.load(hand_written_mlflow_folder(tmp_path / "m"))

    assert package.kind == "mlflow" and package.scoring_script == MLFLOW_SCORING_SCRIPT
    lines = package.serving_requirements().splitlines()
    assert lines[:2] == ["mlflow-skinny==3.18.0", "scikit-learn==1.9.1"], "MLflow's pin becomes mlflow-skinny's"
    assert "azureml-inference-server-http==1.5.1" in lines and "pandas" in lines


def test_the_sample_request_is_made_from_the_saved_input_example(tmp_path: Path) -> None:
    [sample] = ModelPackage.load(hand_written_mlflow_folder(tmp_path / "m")).samples()

    assert sample.name == "input-example" and sample.expected is None
    assert json.loads(sample.body) == {"input_data": {"columns": ["a", "b"], "data": [[1, 2], [3, 4]]}}


def test_recorded_samples_beside_mlflow_model_win_over_the_input_example(tmp_path: Path) -> None:
    folder = hand_written_mlflow_folder(tmp_path / "m")
    (folder / "sample-request.json").write_text('{"input_data": [[1, 2]]}')
    (folder / "sample-response.json").write_text("[0]")

    [sample] = ModelPackage.load(folder).samples()

    assert (sample.name, sample.expected) == ("sample", [0])


def test_a_package_with_its_own_score_py_stays_a_scoring_script_package(tmp_path: Path) -> None:
    folder = hand_written_mlflow_folder(tmp_path / "m")
    (folder / "score.py").write_text("def init():\n    pass\n\ndef run(raw):\n    return raw\n")

    with pytest.raises(ModelPackageError, match="model/ folder"):
        ModelPackage.load(folder)  # judged by the score.py rules, which want model/ and the server pinned


@pytest.mark.parametrize(
    ("requirements", "example", "message"),
    [(None, True, "has no requirements.txt"), ("mlflow==3.18.0\n", False, "save it with input_example")],
    ids=["no-requirements", "no-sample"],
)
def test_an_incomplete_mlflow_folder_says_what_to_add(tmp_path: Path, requirements, example, message) -> None:  # noqa: ANN001
    folder = hand_written_mlflow_folder(tmp_path / "m", requirements)
    if not example:
        (folder / "input_example.json").unlink()

    with pytest.raises(ModelPackageError, match=message):
        ModelPackage.load(folder)


@pytest.mark.slow
def test_an_mlflow_model_saved_by_mlflow_validates_on_the_inference_server(tmp_path: Path) -> None:
    folder = save_iris_model(tmp_path / "iris-mlflow")
    assert not (folder / "score.py").exists() and (folder / "MLmodel").is_file()

    report = validate_package(folder, env_cache=ENV_CACHE)

    outcomes = {(o["check"], o["sample"]): o["verdict"] for o in report.checks["outcomes"]}
    assert outcomes[("sample_answers", "input-example")] == "pass"
    assert outcomes[("malformed_request_4xx", None)] == "pass", "the MLflow script answers bad JSON with a 400"
    assert report.warnings == []
