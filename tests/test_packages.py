"""A model package is checked before anything is deployed, and the error names the part to fix."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from deployflow.packages import ModelPackage, ModelPackageError

SAMPLE = Path(__file__).resolve().parents[1] / "include" / "models" / "diabetes"


@pytest.fixture
def package(tmp_path: Path) -> Path:
    copy = tmp_path / "pkg"
    shutil.copytree(SAMPLE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    return copy


def test_the_sample_package_is_complete() -> None:
    package = ModelPackage.load(SAMPLE)
    assert package.sample_request()["data"]
    assert len(package.sample_response()) == len(package.sample_request()["data"])


@pytest.mark.parametrize("part", ["score.py", "requirements.txt", "sample-request.json", "sample-response.json"])
def test_a_missing_file_is_named(package: Path, part: str) -> None:
    (package / part).unlink()
    with pytest.raises(ModelPackageError, match=f"has no {part}"):
        ModelPackage.load(package)


def test_an_empty_model_folder_is_refused(package: Path) -> None:
    shutil.rmtree(package / "model")
    (package / "model").mkdir()
    with pytest.raises(ModelPackageError, match="model/ folder"):
        ModelPackage.load(package)


def test_requirements_must_name_the_inference_server(package: Path) -> None:
    (package / "requirements.txt").write_text("scikit-learn==1.9.1\n")
    with pytest.raises(ModelPackageError, match="azureml-inference-server-http"):
        ModelPackage.load(package)


def test_a_broken_sample_is_reported_as_invalid_json(package: Path) -> None:
    (package / "sample-request.json").write_text("{data: [1,2")
    with pytest.raises(ModelPackageError, match="sample-request.json is not valid JSON"):
        ModelPackage.load(package)


def test_not_a_folder(tmp_path: Path) -> None:
    with pytest.raises(ModelPackageError, match="is not a folder"):
        ModelPackage.load(tmp_path / "nowhere")


def test_content_hash_follows_content_not_location(package: Path, tmp_path: Path) -> None:
    elsewhere = shutil.copytree(package, tmp_path / "elsewhere")
    (package / "__pycache__").mkdir()
    (package / "__pycache__" / "score.cpython-311.pyc").write_bytes(b"cache")
    assert ModelPackage(package).content_hash() == ModelPackage(elsewhere).content_hash()
    (elsewhere / "sample-response.json").write_text(json.dumps([1.0, 2.0, 3.0]))
    assert ModelPackage(package).content_hash() != ModelPackage(elsewhere).content_hash()
