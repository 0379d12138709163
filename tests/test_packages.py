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


@pytest.mark.parametrize("part", ["score.py", "requirements.txt"])
def test_a_missing_file_is_named(package: Path, part: str) -> None:
    (package / part).unlink()
    with pytest.raises(ModelPackageError, match=f"has no {part}"):
        ModelPackage.load(package)


@pytest.mark.parametrize("part", ["sample-request.json", "sample-response.json"])
def test_half_a_sample_pair_names_the_missing_half(package: Path, part: str) -> None:
    (package / part).unlink()
    with pytest.raises(ModelPackageError, match=f"{part} is missing \\(a sample needs both\\)"):
        ModelPackage.load(package)


def test_a_package_without_any_sample_says_both_ways_to_give_one(package: Path) -> None:
    (package / "sample-request.json").unlink()
    (package / "sample-response.json").unlink()
    with pytest.raises(
        ModelPackageError, match="has no sample: add sample-request.json and sample-response.json, or samples/"
    ):
        ModelPackage.load(package)


def test_samples_folder_pairs_are_read_by_name_after_the_single_pair(package: Path) -> None:
    (package / "samples").mkdir()
    for name, value in (("b-second", 2.0), ("a-first", 1.0)):
        (package / "samples" / f"{name}.request.json").write_text(json.dumps({"data": [[value] * 10]}))
        (package / "samples" / f"{name}.response.json").write_text(json.dumps([value]))
    loaded = ModelPackage.load(package)
    assert [s.name for s in loaded.samples()] == ["sample", "a-first", "b-second"]
    assert loaded.samples()[1].expected == [1.0]
    (package / "sample-request.json").unlink()
    (package / "sample-response.json").unlink()
    assert ModelPackage.load(package).sample_response() == [1.0], "the first of samples/ stands in for the pair"


def test_a_response_without_its_request_is_named(package: Path) -> None:
    (package / "samples").mkdir()
    (package / "samples" / "orphan.response.json").write_text("[1]")
    with pytest.raises(ModelPackageError, match="samples/orphan.response.json has no request"):
        ModelPackage.load(package)


@pytest.mark.parametrize("tolerance", [{"relative": -1}, {"absolute": "1e-3"}, {"rel": 0.1}, [0.1], {"relative": True}])
def test_a_bad_tolerance_file_says_what_it_must_hold(package: Path, tolerance: object) -> None:
    (package / "tolerance.json").write_text(json.dumps(tolerance))
    with pytest.raises(ModelPackageError, match="tolerance.json"):
        ModelPackage.load(package)


def test_a_package_tolerance_is_read(package: Path) -> None:
    assert ModelPackage.load(package).tolerance() == (1e-6, 1e-9)
    (package / "tolerance.json").write_text(json.dumps({"absolute": 0.01}))
    assert ModelPackage.load(package).tolerance() == (1e-6, 0.01)


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


def test_the_content_hash_frames_file_boundaries(tmp_path: Path) -> None:
    """Moving a file's end into the next file's name gave the same bytes to an unframed digest."""
    split, joined = tmp_path / "split", tmp_path / "joined"
    for folder in (split, joined):
        shutil.copytree(SAMPLE, folder)
    (split / "model" / "a").write_bytes(b"")
    (split / "model" / "b").write_bytes(b"X")
    (joined / "model" / "a").write_bytes(b"model/b\0X")

    assert ModelPackage.load(split).content_hash() != ModelPackage.load(joined).content_hash()
    assert ModelPackage.load(split).content_hash() == ModelPackage.load(split).content_hash()
