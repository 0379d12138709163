"""Batch job pieces without servers: storage locations, folder input/output, submissions that keep secrets."""

from __future__ import annotations

from pathlib import Path

import pytest

from deployflow.runtime.errors import Invalid
from deployflow.runtime.jobs.blob_io import StorageError, fetch, list_files, parse_location, publish
from deployflow.runtime.jobs.service import parse_submission
from tests.runtime.batch_support import job_document


def test_locations_are_folders_or_blob_prefixes() -> None:
    assert parse_location("/data/in").folder == Path("/data/in")
    assert parse_location("file:///data/in").folder == Path("/data/in")
    blob = parse_location("blob://landing/2026/11/")
    assert (blob.container, blob.prefix, blob.is_blob) == ("landing", "2026/11/", True)
    assert parse_location("blob://landing").prefix == ""
    with pytest.raises(StorageError, match="absolute"):
        parse_location("relative/in")
    with pytest.raises(StorageError, match="azureml platform"):
        parse_location("azureml://datastores/x/paths/y")
    with pytest.raises(StorageError, match="names no container"):
        parse_location("blob:///x")


def test_folder_listing_skips_hidden_files_and_honours_the_filter(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    for name in ("b.csv", "a.csv", "sub/c.csv", ".hidden.csv"):
        (tmp_path / name).write_text("1\n")
    location = parse_location(str(tmp_path))
    assert list_files(location) == ["a.csv", "b.csv", "sub/c.csv"]
    assert list_files(location, ["sub/c.csv", "a.csv"]) == ["a.csv", "sub/c.csv"]
    assert fetch(location, ["a.csv"], tmp_path / "unused") == [tmp_path / "a.csv"]
    with pytest.raises(StorageError, match="1 input file\\(s\\) not found.*missing.csv"):
        list_files(location, ["a.csv", "missing.csv"])


def test_publishing_to_a_folder_replaces_files_and_leaves_no_temp_files(tmp_path: Path) -> None:
    staged = tmp_path / "staged.csv"
    staged.write_text("new\n")
    out = tmp_path / "out"
    out.mkdir()
    (out / "predictions.csv").write_text("old\n")
    publish(parse_location(str(out)), {"predictions.csv": staged})
    assert [p.name for p in out.iterdir()] == ["predictions.csv"]
    assert (out / "predictions.csv").read_text() == "new\n"


def test_a_submission_keeps_its_connection_string_apart_and_out_of_errors() -> None:
    secret = "DefaultEndpointsProtocol=http;AccountKey=s3cr3t"
    spec, connection_string = parse_submission(
        {**job_document("ok", "/in", "/out"), "storage_connection_string": secret}
    )
    assert connection_string == secret and secret not in spec.model_dump_json()
    bad = {**job_document("ok", "/in", "/out"), "storage_connection_string": secret, "mini_batch_size": 0}
    del bad["output_uri"]
    with pytest.raises(Invalid) as refused:
        parse_submission(bad)
    assert "output_uri" in str(refused.value) and "mini_batch_size" in str(refused.value)
    assert "s3cr3t" not in str(refused.value)
