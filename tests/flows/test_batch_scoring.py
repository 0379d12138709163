"""The generated batch DAG for include/batch/diabetes.json, run with `dag.test()`.

A real local runtime scores real blobs in a real Azurite. The tests run in file order and
share one storage account: each one starts from what the previous ones left scored.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
from collections.abc import Iterator

import pytest
from azure.storage.blob import BlobServiceClient, ContainerClient

from deployflow.batch.config import CONFIG_DIR, load_use_case
from deployflow.batch.manifest import parse_manifest
from deployflow.batch.naming import run_key
from deployflow.local.client import LocalRuntimeClient
from tests.airflow_support import connected_runtime, run_dag, task_states, xcom
from tests.azurite import azurite_blob
from tests.runtime.batch_support import SAMPLE_DATA, parse_predictions

pytestmark = pytest.mark.slow

CASE = load_use_case(CONFIG_DIR / "diabetes.json")
INCOMING = CASE.input.prefix
BROKEN_CSV = b"age,sex,bmi,bp,s1,s2,s3,s4,s5,s6\n0.1,0.2,oops,0.4,0.5,0.6,0.7,0.8,0.9,1.0\n"
ABC_CSV = b"age,sex,bmi,bp,s1,s2,s3,s4,s5,s6\n0.1,0.2,abc,0.4,0.5,0.6,0.7,0.8,0.9,1.0\n"
ALL_TASKS = ["preflight", "wait_for_blobs", "find_new_blobs", "data_factory", "register_model", "stage_inputs", "score",
             "update_manifest", "clean_staging"]  # fmt: skip


@pytest.fixture(scope="module")
def storage(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BlobServiceClient]:
    """Azurite, and the use case's wasb connection pointing at it (from the environment, as Airflow reads it)."""
    variable = f"AIRFLOW_CONN_{CASE.storage_conn_id.upper()}"
    with azurite_blob(tmp_path_factory.mktemp("azurite")) as connection_string:
        os.environ[variable] = json.dumps({"conn_type": "wasb", "extra": {"connection_string": connection_string}})
        try:
            with BlobServiceClient.from_connection_string(connection_string) as service:
                service.create_container(CASE.input.container)
                yield service
        finally:
            os.environ.pop(variable, None)


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRuntimeClient]:
    data_dir = tmp_path_factory.mktemp("batch-flow") / "data"
    with connected_runtime(data_dir, CASE.ml_platform_conn_id) as runtime, runtime.client() as client:
        yield client


@pytest.fixture
def dag(storage: BlobServiceClient, client: LocalRuntimeClient):  # noqa: ANN201 - a DAG
    import dags.batch_scoring as module

    return getattr(importlib.reload(module), CASE.dag_id)


def landing(storage: BlobServiceClient) -> ContainerClient:
    return storage.get_container_client(CASE.input.container)


def upload(storage: BlobServiceClient, *names: str) -> None:
    for name in names:
        landing(storage).upload_blob(f"{INCOMING}/{name}", (SAMPLE_DATA / name).read_bytes(), overwrite=True)


def manifest(storage: BlobServiceClient) -> dict:
    scored = storage.get_container_client(CASE.output.container)
    return parse_manifest(scored.download_blob(CASE.manifest_blob).readall())


def run_outputs(storage: BlobServiceClient, dag_run) -> dict[tuple[str, int], float]:  # noqa: ANN001
    output_uri = xcom(dag_run, "score")["output_uri"]
    container, _, prefix = output_uri.removeprefix("blob://").partition("/")
    text = storage.get_container_client(container).download_blob(f"{prefix}/predictions.csv").readall().decode()
    return parse_predictions(text)


def staged(storage: BlobServiceClient) -> list[str]:
    return [b.name for b in landing(storage).list_blobs(name_starts_with="_staging/")]


def test_two_new_blobs_are_scored_recorded_and_unstaged(dag, storage, caplog: pytest.LogCaptureFixture) -> None:
    upload(storage, "patients-01.csv", "patients-02.csv")

    with caplog.at_level(logging.INFO):
        dag_run = run_dag(dag, retries=0)

    assert task_states(dag_run) == dict.fromkeys(ALL_TASKS, "success")
    predictions = run_outputs(storage, dag_run)
    assert {name for name, _ in predictions} == {"patients-01.csv", "patients-02.csv"} and len(predictions) == 40
    listed = {b.name: b.etag for b in landing(storage).list_blobs(name_starts_with=f"{INCOMING}/")}
    assert {name: entry.etag for name, entry in manifest(storage).items()} == listed
    assert staged(storage) == []
    assert "no Data Factory configured: skipped" in caplog.text


def test_a_second_run_with_nothing_new_skips_and_submits_no_job(dag, storage, client) -> None:
    jobs_before = len(client.list_jobs())
    before = manifest(storage)

    dag_run = run_dag(dag, retries=0)

    # the blobs are there, so the sensor passes; there is nothing new, so everything after it skips
    assert task_states(dag_run) == {
        **dict.fromkeys(ALL_TASKS, "skipped"),
        "preflight": "success",
        "wait_for_blobs": "success",
    }
    assert str(dag_run.state) == "success"
    assert len(client.list_jobs()) == jobs_before and manifest(storage) == before


def test_a_third_blob_is_scored_alone(dag, storage) -> None:
    upload(storage, "patients-03.csv")

    dag_run = run_dag(dag, retries=0)

    assert str(dag_run.state) == "success"
    predictions = run_outputs(storage, dag_run)
    assert {name for name, _ in predictions} == {"patients-03.csv"} and len(predictions) == 20
    assert sorted(manifest(storage)) == [f"{INCOMING}/patients-0{i}.csv" for i in (1, 2, 3)]


def test_a_failing_job_fails_the_run_leaves_the_manifest_and_cleans_staging(dag, storage, client) -> None:
    landing(storage).upload_blob(f"{INCOMING}/broken.csv", BROKEN_CSV)
    before = manifest(storage)
    try:
        dag_run = run_dag(dag, retries=0)
    finally:
        landing(storage).delete_blob(f"{INCOMING}/broken.csv")

    states = task_states(dag_run)
    assert (states["score"], states["update_manifest"], states["clean_staging"]) == (
        "failed", "upstream_failed", "success",
    )  # fmt: skip
    assert str(dag_run.state) == "failed"
    assert manifest(storage) == before and staged(storage) == []
    job = client.get_job(xcom(dag_run, "score", key="batch_job")["job_id"])
    assert job["status"] == "Failed" and "broken.csv" in job["error"]
    assert job["retryable"] is False  # bad data: the task fails for good instead of retrying in five minutes


def test_a_bad_file_is_quarantined_an_empty_one_skipped_and_the_good_one_scored(
    dag, storage, capsys: pytest.CaptureFixture[str]
) -> None:
    import dags.batch_scoring as module

    tolerant = module.build_dag(CASE.model_copy(update={"dag_id": f"{CASE.dag_id}_tolerant", "error_threshold": -1}))
    good, bad, empty = (f"{INCOMING}/late-{kind}.csv" for kind in ("good", "bad", "empty"))
    landing(storage).upload_blob(good, (SAMPLE_DATA / "patients-01.csv").read_bytes())
    landing(storage).upload_blob(bad, ABC_CSV)
    landing(storage).upload_blob(empty, b"")
    try:
        first = run_dag(tolerant, retries=0)

        assert str(first.state) == "success" and xcom(first, "score")["failed_files"] == ["late-bad.csv"]
        assert {name for name, _ in run_outputs(storage, first)} == {"late-good.csv"}
        entries = manifest(storage)
        assert (entries[good].status, entries[bad].status, entries[empty].status) == ("scored", "failed", "skipped")
        assert "abc" in entries[bad].error and entries[empty].error == "empty file (0 bytes): nothing to score"
        quarantine = f"{CASE.output.prefix}/failed/{run_key(first.run_id)}/late-bad.csv"
        scored = storage.get_container_client(CASE.output.container)
        assert scored.download_blob(quarantine).readall() == ABC_CSV
        report = json.loads(scored.download_blob(f"{quarantine}.error.json").readall())
        assert report["blob"] == f"{CASE.input.container}/{bad}" and "abc" in report["error"]
        assert entries[bad].output_uri.endswith(quarantine)
        assert "late-bad.csv failed to score" in capsys.readouterr().out

        second = run_dag(tolerant, retries=0)  # the bad and the empty file are not picked up again

        assert task_states(second)["find_new_blobs"] == "skipped" and manifest(storage) == entries
        landing(storage).upload_blob(bad, (SAMPLE_DATA / "patients-02.csv").read_bytes(), overwrite=True)

        third = run_dag(tolerant, retries=0)  # a corrected file is a new version: scored

        assert {name for name, _ in run_outputs(storage, third)} == {"late-bad.csv"}
        assert (manifest(storage)[bad].status, manifest(storage)[bad].run_id) == ("scored", third.run_id)
    finally:
        for name in (good, bad, empty):
            landing(storage).delete_blob(name)
