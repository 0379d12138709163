"""An MLflow model with no scoring script through the batch DAG, as Azure ML's MLflow batch deployments score one.

The model is saved by ``mlflow.sklearn.save_model`` (the way MLflow's docs show), the use case names
no scoring script, and a real local runtime scores CSV blobs in a real Azurite with deployflow's
MLflow batch script. A broken CSV fails alone and is quarantined by the manifest; the expected
predictions are MLflow's own pyfunc's, computed in the model's environment.
"""

from __future__ import annotations

import csv
import importlib
import io
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from azure.storage.blob import BlobServiceClient

from deployflow.batch.config import load_use_case
from deployflow.batch.manifest import parse_manifest
from deployflow.batch.naming import run_key
from deployflow.local.client import LocalRuntimeClient, RuntimeClientError
from tests.airflow_support import LOCAL_CONN_ID, connected_runtime, run_dag, xcom
from tests.azurite import azurite_blob
from tests.runtime.batch_support import job_document
from tests.runtime.support import SAMPLE_MODEL
from tests.validation.mlflow_models import ROWS, pyfunc_predict, save_iris_model, signature_columns

pytestmark = pytest.mark.slow

STORAGE_CONN_ID = "deployflow_blob_mlflow"
INCOMING = "iris/incoming"
# Which of the iris rows each good file holds: files of different lengths, sharing some rows.
GOOD_FILES = {"part-a.csv": ROWS[0:2], "part-b.csv": ROWS[2:5], "part-c.csv": ROWS[1:4]}


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_iris_model(tmp_path_factory.mktemp("mlflow") / "iris-mlflow")


@pytest.fixture(scope="module")
def storage(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BlobServiceClient]:
    variable = f"AIRFLOW_CONN_{STORAGE_CONN_ID.upper()}"
    with azurite_blob(tmp_path_factory.mktemp("azurite")) as connection_string:
        os.environ[variable] = json.dumps({"conn_type": "wasb", "extra": {"connection_string": connection_string}})
        try:
            with BlobServiceClient.from_connection_string(connection_string) as service:
                service.create_container("landing")
                yield service
        finally:
            os.environ.pop(variable, None)


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRuntimeClient]:
    data_dir = tmp_path_factory.mktemp("mlflow-batch-flow") / "data"
    with connected_runtime(data_dir) as runtime, runtime.client() as client:
        yield client


def csv_bytes(header: list[str], rows: list[list[object]]) -> bytes:
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return text.getvalue().encode()


def use_case_file(tmp_path: Path, model_folder: Path) -> Path:
    """A use case as a user writes it for an MLflow model: no scoring_script."""
    path = tmp_path / "iris.json"
    path.write_text(json.dumps({
        "dag_id": "batch_scoring_iris_mlflow",
        "description": "Iris classes for files dropped in the landing container, by an MLflow model.",
        "schedule": "0 6 * * *",
        "ml_platform_conn_id": LOCAL_CONN_ID,
        "storage_conn_id": STORAGE_CONN_ID,
        "model": "iris:1",
        "register_model": True,
        "package_path": str(model_folder),
        "input": {"container": "landing", "prefix": INCOMING},
        "output": {"container": "scored", "prefix": "iris"},
        "mini_batch_size": 2,
        "max_retries": 0,
    }))  # fmt: skip
    return path


def test_an_mlflow_model_scores_its_blobs_with_no_script_and_a_broken_file_is_quarantined(
    tmp_path: Path, model_folder: Path, storage: BlobServiceClient, client: LocalRuntimeClient
) -> None:
    import dags.batch_scoring as module

    columns = signature_columns(model_folder)
    landing = storage.get_container_client("landing")
    for name, rows in GOOD_FILES.items():
        landing.upload_blob(f"{INCOMING}/{name}", csv_bytes(columns, rows))
    broken = csv_bytes(columns, [[5.1, "oops", 1.4, 0.2]])
    landing.upload_blob(f"{INCOMING}/broken.csv", broken)  # first by name: in a mini-batch with header-only.csv
    landing.upload_blob(f"{INCOMING}/header-only.csv", csv_bytes(columns, []))  # scored, to no rows
    case = load_use_case(use_case_file(tmp_path, model_folder))
    dag = importlib.reload(module).build_dag(case)

    run = run_dag(dag, retries=0)

    assert str(run.state) == "success"
    scoring = xcom(run, "score")
    assert scoring["failed_files"] == ["broken.csv"]
    scored = storage.get_container_client("scored")
    output_prefix = scoring["output_uri"].removeprefix("blob://scored/")
    text = scored.download_blob(f"{output_prefix}/predictions.csv").readall().decode()
    predicted = {(name, int(row)): value for name, row, value in csv.reader(io.StringIO(text))}
    expected = {
        (name, index): str(value)
        for name, rows in GOOD_FILES.items()
        for index, value in enumerate(pyfunc_predict(model_folder, rows))
    }
    assert predicted == expected
    entries = parse_manifest(scored.download_blob("iris/_manifest.json").readall())
    statuses = {name.removeprefix(f"{INCOMING}/"): entry.status for name, entry in entries.items()}
    assert statuses == {
        "part-a.csv": "scored", "part-b.csv": "scored", "part-c.csv": "scored", "header-only.csv": "scored",
        "broken.csv": "failed",
    }  # fmt: skip
    error = entries[f"{INCOMING}/broken.csv"].error
    assert "broken.csv: the model could not predict its rows" in error, error
    quarantine = f"iris/failed/{run_key(run.run_id)}/broken.csv"
    assert scored.download_blob(quarantine).readall() == broken
    [job] = [j for j in client.list_jobs() if j["model"]["name"] == "iris"]
    assert job["scoring_script"] is None
    assert "MLflow model with no scoring script: scoring with mlflow_batch.py" in client.job_logs(job["id"])


def test_a_job_naming_no_script_for_a_package_that_is_not_mlflow_is_refused_before_it_is_stored(
    client: LocalRuntimeClient, tmp_path: Path
) -> None:
    client.register_model("diabetes", SAMPLE_MODEL, version="1")
    jobs_before = client.list_jobs()
    document = job_document("noscript", str(tmp_path), str(tmp_path / "out"), scoring_script=None)

    with pytest.raises(RuntimeClientError) as refused:
        client.submit_job(document)

    assert refused.value.status_code == 422
    assert "names no batch scoring script and is not an MLflow model" in str(refused.value)
    assert "set scoring_script" in str(refused.value) and client.list_jobs() == jobs_before
