"""A bad file fails alone, an empty one is skipped, the rest is scored (a real runtime, real Azurite blobs)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from azure.storage.blob import BlobServiceClient

from deployflow.local.client import LocalRuntimeClient
from tests.azurite import azurite_blob
from tests.runtime.batch_support import SAMPLE_DATA, job_document, parse_predictions
from tests.runtime.support import SAMPLE_MODEL

pytestmark = pytest.mark.slow

BAD_ROW = b"age,sex,bmi,bp,s1,s2,s3,s4,s5,s6\n0.1,0.2,abc,0.4,0.5,0.6,0.7,0.8,0.9,1.0\n"


@pytest.fixture(scope="module")
def storage(tmp_path_factory: pytest.TempPathFactory, client: LocalRuntimeClient) -> Iterator[str]:
    client.register_model("diabetes", SAMPLE_MODEL, version="1")
    with azurite_blob(tmp_path_factory.mktemp("azurite")) as connection_string:
        with BlobServiceClient.from_connection_string(connection_string) as service:
            landing = service.create_container("landing")
            landing.upload_blob("in/good.csv", (SAMPLE_DATA / "patients-01.csv").read_bytes())
            landing.upload_blob("in/bad.csv", BAD_ROW)
            landing.upload_blob("in/empty.csv", b"")
        yield connection_string


def outputs(connection_string: str, prefix: str) -> tuple[str, dict]:
    with BlobServiceClient.from_connection_string(connection_string) as service:
        scored = service.get_container_client("scored")
        predictions = scored.download_blob(f"{prefix}/predictions.csv").readall().decode()
        return predictions, json.loads(scored.download_blob(f"{prefix}/summary.json").readall())


def test_one_bad_file_fails_alone_and_an_empty_one_is_skipped(client: LocalRuntimeClient, storage: str) -> None:
    document = job_document("poisoned", "blob://landing/in", "blob://scored/poisoned", mini_batch_size=3,
                            max_retries=1, error_threshold=-1)  # fmt: skip
    job = client.wait_for_job(client.submit_job(document, storage)["id"], timeout_s=300)

    assert job["status"] == "Completed", job["error"]
    predictions, summary = outputs(storage, "poisoned")
    assert {name for name, _ in parse_predictions(predictions)} == {"good.csv"}
    assert len(parse_predictions(predictions)) == 20
    assert summary["failed_files"] == ["bad.csv"] and summary["succeeded"] == 1 and summary["failed"] == 1
    assert "abc" in summary["file_errors"]["bad.csv"]
    assert summary["skipped_files"] == {"empty.csv": "empty file (0 bytes): nothing to score"}


def test_past_the_error_threshold_the_job_fails_as_not_worth_retrying(client: LocalRuntimeClient, storage: str) -> None:
    document = job_document("strict", "blob://landing/in", "blob://scored/strict", mini_batch_size=3,
                            max_retries=0, error_threshold=0)  # fmt: skip
    job = client.wait_for_job(client.submit_job(document, storage)["id"], timeout_s=300)

    assert job["status"] == "Failed" and job["retryable"] is False
    assert "bad.csv" in job["error"] and "error_threshold=0" in job["error"]
    with BlobServiceClient.from_connection_string(storage) as service:
        assert not list(service.get_container_client("scored").list_blobs(name_starts_with="strict/"))
