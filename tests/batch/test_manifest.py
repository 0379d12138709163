"""The manifest decides what is new; derived names and platform URIs are stable and valid."""

from __future__ import annotations

import re

import pytest

from deployflow.batch import locations
from deployflow.batch.manifest import (
    BlobRef,
    Entry,
    ManifestError,
    dump_manifest,
    new_blobs,
    parse_manifest,
    with_scored,
)
from deployflow.batch.naming import is_staged, job_name, output_prefix, run_key, staged_name, staging_prefix
from deployflow.platform.batch import JOB_NAME

RUN = "scheduled__2026-11-01T06:00:00+00:00"


def scored(*blobs: BlobRef, run_id: str = "r1") -> dict[str, Entry]:
    return with_scored({}, blobs, run_id=run_id, output_uri="blob://scored/x", scored_at="t")


def test_a_blob_is_new_when_unlisted_or_listed_with_another_etag() -> None:
    manifest = scored(BlobRef("in/a.csv", "e1"), BlobRef("in/b.csv", "e1"))
    listed = [BlobRef("in/c.csv", "e1"), BlobRef("in/b.csv", "e2"), BlobRef("in/a.csv", "e1")]

    assert new_blobs(listed, manifest) == [BlobRef("in/b.csv", "e2"), BlobRef("in/c.csv", "e1")]
    assert new_blobs(listed[2:], manifest) == []


def test_scoring_adds_and_replaces_entries_and_keeps_the_others() -> None:
    first = scored(BlobRef("a", "e1"), BlobRef("b", "e1"))

    second = with_scored(first, [BlobRef("b", "e2")], run_id="r2", output_uri="u2", scored_at="t2")

    assert second["a"] == first["a"] and second["b"] == Entry("e2", "r2", "u2", "t2")
    assert first["b"].etag == "e1"  # the input manifest is left as it was


def test_the_manifest_round_trips_through_json_and_refuses_other_documents() -> None:
    manifest = scored(BlobRef("in/a.csv", '"0x1"'))

    assert parse_manifest(dump_manifest(manifest)) == manifest
    assert parse_manifest(None) == {} and parse_manifest(b"") == {}
    with pytest.raises(ManifestError, match="x/_manifest.json is not a deployflow manifest"):
        parse_manifest('{"version": 1, "blobs": {"a": {"etag": "e"}}}', where="x/_manifest.json")
    with pytest.raises(ManifestError, match="version 2"):
        parse_manifest('{"version": 2, "blobs": {}}')


def test_run_derived_names_are_valid_job_names_and_blob_folders() -> None:
    assert run_key(RUN) == "scheduled_5f_5f2026-11-01T06_3a00_3a00_2b00_3a00"
    assert staging_prefix(RUN) == f"_staging/{run_key(RUN)}" and is_staged(staging_prefix(RUN) + "/a.csv")
    assert not is_staged("in/_staging/a.csv")
    assert output_prefix("diabetes/", RUN) == f"diabetes/{run_key(RUN)}"
    assert staged_name("in/day1/a.csv", "in", "_staging/r") == "_staging/r/day1/a.csv"
    assert staged_name("a.csv", "", "_staging/r") == "_staging/r/a.csv"
    long = job_name("d" * 250, RUN)
    assert JOB_NAME.match(job_name("batch_scoring_diabetes", RUN)) and JOB_NAME.match(long) and len(long) == 255
    assert job_name("d" * 250, RUN) == long != job_name("d" * 250, RUN + "x")


def test_distinct_run_ids_never_share_a_run_key() -> None:
    ids = ["a:b", "a-b", "a_b", "a+b", "a b", "a__b", "a_5fb", "a_3ab", "aé", "a-", "-a", "a", "a::b", "a:-b"]
    keys = [run_key(i) for i in ids]
    assert len(set(keys)) == len(ids), dict(zip(ids, keys, strict=True))
    assert all(re.fullmatch(r"[A-Za-z0-9_-]+", key) for key in keys)  # safe in job names and blob folders
    with pytest.raises(ValueError, match="empty run id"):
        run_key("")


def test_each_platform_gets_the_uris_it_reads() -> None:
    assert locations.input_uri("local", "landing", "_staging/r/") == "blob://landing/_staging/r"
    assert (
        locations.input_uri("azureml", "landing", "_staging/r", account_name="acct")
        == "wasbs://landing@acct.blob.core.windows.net/_staging/r"
    )
    assert locations.output_uri("azureml", "scored", "d/r", datastore="scored_ds") == (
        "azureml://datastores/scored_ds/paths/d/r"
    )
    with pytest.raises(locations.LocationError, match="set output.datastore"):
        locations.output_uri("azureml", "scored", "d/r")
