"""Batch-scoring jobs end to end: a real runtime, real worker processes in the model's env, real Azurite."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from azure.storage.blob import BlobServiceClient

from deployflow.local.client import LocalRuntimeClient, RuntimeClientError
from tests.azurite import azurite_blob
from tests.runtime.batch_support import (
    HANGING_SCRIPT,
    SAMPLE_DATA,
    SAMPLE_FILES,
    SLOW_SCRIPT,
    expected_predictions,
    input_folder,
    job_document,
    parse_predictions,
    scoring_package,
    worker_processes,
)
from tests.runtime.support import SAMPLE_MODEL, RuntimeProcess, sample_runtime

pytestmark = pytest.mark.slow

SAMPLE_RESPONSE = json.loads((SAMPLE_MODEL / "sample-response.json").read_text())
BROKEN_CSV = "age,sex,bmi,bp,s1,s2,s3,s4,s5,s6\n0.1,0.2,oops,0.4,0.5,0.6,0.7,0.8,0.9,1.0\n"


@pytest.fixture(scope="module", autouse=True)
def model(client: LocalRuntimeClient) -> dict:
    return client.register_model("diabetes", SAMPLE_MODEL, version="1")


@pytest.fixture(scope="module")
def storage(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Azurite's connection string (tests.azurite)."""
    with azurite_blob(tmp_path_factory.mktemp("azurite")) as connection_string:
        yield connection_string


def wait_for_workers(job_id: str, count: int, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while len(worker_processes(job_id)) < count:
        assert time.monotonic() < deadline, f"fewer than {count} workers of {job_id} started"
        time.sleep(0.05)


def test_folder_input_gives_one_prediction_per_row(client: LocalRuntimeClient, runtime: RuntimeProcess,
                                                   tmp_path: Path) -> None:  # fmt: skip
    out = tmp_path / "out"
    document = job_document("folder", str(SAMPLE_DATA), str(out), mini_batch_size=2, instance_count=2)
    submitted = client.submit_job(document)
    assert submitted["id"].startswith("folder-") and submitted["status"] in ("NotStarted", "Running")

    job = client.wait_for_job(submitted["id"], timeout_s=120)

    assert job["status"] == "Completed", job["error"]
    predictions = parse_predictions((out / "predictions.csv").read_text())
    expected = expected_predictions(SAMPLE_DATA)
    assert len(predictions) == 60 and predictions.keys() == expected.keys()
    for key, value in expected.items():
        assert predictions[key] == pytest.approx(value, rel=1e-12)
    first_rows = [predictions[("patients-01.csv", i)] for i in range(3)]
    assert first_rows == pytest.approx(SAMPLE_RESPONSE, rel=1e-4)  # the sample request's rows, rounded in the CSV
    summary = json.loads((out / "summary.json").read_text())
    assert {k: summary[k] for k in ("items", "succeeded", "failed", "mini_batches", "retries", "rows")} == {
        "items": 3, "succeeded": 3, "failed": 0, "mini_batches": 2, "retries": 0, "rows": 60,
    }  # fmt: skip
    assert summary["input_files"] == SAMPLE_FILES and summary["duration_s"] > 0
    assert job["summary"]["succeeded"] == 3 and job["id"] in [j["id"] for j in client.list_jobs()]
    assert worker_processes(job["id"]) == []
    assert not (runtime.data_dir / "jobs" / job["id"]).exists()
    assert sorted(p.name for p in out.iterdir()) == ["predictions.csv", "summary.json"]


def test_blob_input_with_files_filter_writes_outputs_to_blob(
    client: LocalRuntimeClient, runtime: RuntimeProcess, storage: str
) -> None:
    chosen = ["patients-01.csv", "patients-03.csv"]
    with BlobServiceClient.from_connection_string(storage) as service:
        inputs = service.create_container("landing")
        for name in SAMPLE_FILES:
            inputs.upload_blob(f"2026/11/{name}", (SAMPLE_DATA / name).read_bytes())
        inputs.upload_blob("2026/other.csv", b"not under the prefix")
        document = job_document("blob", "blob://landing/2026/11", "blob://scored/run-1", files=chosen)

        job = client.wait_for_job(client.submit_job(document, storage_connection_string=storage)["id"], timeout_s=120)

        assert job["status"] == "Completed", job["error"]
        scored = service.get_container_client("scored")
        predictions = parse_predictions(scored.download_blob("run-1/predictions.csv").readall().decode())
        summary = json.loads(scored.download_blob("run-1/summary.json").readall())
    assert {name for name, _ in predictions} == set(chosen) and len(predictions) == 40
    assert summary["input_files"] == chosen and summary["items"] == 2
    account_key = storage.split("AccountKey=")[1].split(";")[0]
    assert account_key not in json.dumps(client.get_job(job["id"]))
    assert account_key not in client.job_logs(job["id"])
    for state_file in runtime.data_dir.glob("state.sqlite*"):  # the database and its write-ahead log
        assert account_key.encode() not in state_file.read_bytes()
    assert account_key not in runtime.log_path.read_text()


def test_blob_input_without_connection_string_is_refused(client: LocalRuntimeClient) -> None:
    with pytest.raises(RuntimeClientError, match="storage_connection_string") as refused:
        client.submit_job(job_document("noconn", "blob://landing/x", "/tmp/never"))
    assert refused.value.status_code == 422


def test_bad_file_is_retried_and_counted_under_the_threshold(client: LocalRuntimeClient, tmp_path: Path) -> None:
    folder = input_folder(tmp_path / "in", extra={"broken.csv": BROKEN_CSV})
    document = job_document("tolerant", str(folder), str(tmp_path / "out"), mini_batch_size=1, max_retries=1,
                            error_threshold=1)  # fmt: skip

    job = client.wait_for_job(client.submit_job(document)["id"], timeout_s=120)

    assert job["status"] == "Completed", job["error"]
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert (summary["succeeded"], summary["failed"], summary["retries"]) == (3, 1, 1)
    assert summary["failed_files"] == ["broken.csv"] and "not a number" in summary["errors"][0]
    assert len(parse_predictions((tmp_path / "out" / "predictions.csv").read_text())) == 60
    logs = client.job_logs(job["id"])
    assert "attempt 1 of 2 failed" in logs and "attempt 2 of 2 failed" in logs


def test_failures_over_the_threshold_fail_the_job_and_write_nothing(client: LocalRuntimeClient, tmp_path: Path) -> None:
    folder = input_folder(tmp_path / "in", extra={"broken.csv": BROKEN_CSV})
    out = tmp_path / "out"
    document = job_document("strict", str(folder), str(out), mini_batch_size=1, max_retries=1, error_threshold=0)

    job = client.wait_for_job(client.submit_job(document)["id"], timeout_s=120)

    assert job["status"] == "Failed"
    assert "error_threshold=0" in job["error"] and "broken.csv" in job["error"]
    assert not out.exists()
    assert worker_processes(job["id"]) == []


def test_a_hanging_run_times_out_is_retried_then_fails(client: LocalRuntimeClient, tmp_path: Path) -> None:
    package = scoring_package(tmp_path / "pkg", HANGING_SCRIPT)
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("a.csv", "hang.csv"):
        (folder / name).write_text("x\n")
    document = job_document("hanging", str(folder), str(tmp_path / "out"), package_path=package,
                            scoring_script="score_batch.py", mini_batch_size=1, timeout_s=1, max_retries=1,
                            error_threshold=0)  # fmt: skip

    job = client.wait_for_job(client.submit_job(document)["id"], timeout_s=60)

    assert job["status"] == "Failed"
    assert "timed out after 1s" in job["error"] and "hang.csv" in job["error"]
    assert (job["summary"]["succeeded"], job["summary"]["failed"], job["summary"]["retries"]) == (1, 1, 1)
    assert client.job_logs(job["id"]).count("timed out") >= 2
    assert worker_processes(job["id"]) == [] and not (tmp_path / "out").exists()


def test_cancel_kills_every_worker(client: LocalRuntimeClient, tmp_path: Path) -> None:
    package = scoring_package(tmp_path / "pkg", HANGING_SCRIPT)
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(4):
        (folder / f"hang-{i}.csv").write_text("x\n")
    document = job_document("cancel-me", str(folder), str(tmp_path / "out"), package_path=package,
                            scoring_script="score_batch.py", mini_batch_size=1, instance_count=2,
                            timeout_s=600)  # fmt: skip
    job_id = client.submit_job(document)["id"]
    wait_for_workers(job_id, 2)

    canceled = client.cancel_job(job_id)

    assert canceled["status"] == "Canceled"
    assert worker_processes(job_id) == []
    assert not (tmp_path / "out").exists()
    assert client.cancel_job(job_id)["status"] == "Canceled"  # cancelling again changes nothing


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGKILL], ids=["stopped", "killed"])
def test_a_restart_fails_the_job_that_was_running(tmp_path: Path, stop_signal: signal.Signals) -> None:
    with sample_runtime(tmp_path / "data") as (runtime, client):
        package = scoring_package(tmp_path / "pkg", HANGING_SCRIPT)
        (tmp_path / "in").mkdir()
        (tmp_path / "in" / "hang.csv").write_text("x\n")
        document = job_document("interrupted", str(tmp_path / "in"), str(tmp_path / "out"),
                                package_path=package, scoring_script="score_batch.py")  # fmt: skip
        job_id = client.submit_job(document)["id"]
        wait_for_workers(job_id, 1)

        runtime.stop(stop_signal)
        deadline = time.monotonic() + 10
        while worker_processes(job_id):  # the runtime stops them, or they die with it (PDEATHSIG)
            assert time.monotonic() < deadline, "a batch worker outlived the runtime"
            time.sleep(0.05)
        runtime.start()

        job = client.get_job(job_id)
        assert job["status"] == "Failed" and "restarted" in job["error"]
        assert not (runtime.data_dir / "jobs" / job_id).exists() and not (tmp_path / "out").exists()


def test_jobs_beyond_the_runtimes_slots_wait_queued_in_arrival_order(tmp_path: Path) -> None:
    with sample_runtime(tmp_path / "data", "--batch-slots", "1") as (_runtime, client):
        package = scoring_package(tmp_path / "pkg", SLOW_SCRIPT)
        (tmp_path / "in").mkdir()
        for name in ("a.csv", "b.csv"):
            (tmp_path / "in" / name).write_text("x\n")

        def submit(name: str, **settings: object) -> str:
            document = job_document(name, str(tmp_path / "in"), str(tmp_path / name), package_path=package,
                                    scoring_script="score_batch.py", mini_batch_size=1, **settings)  # fmt: skip
            return client.submit_job(document)["id"]

        first, second, third = submit("first", instance_count=2), submit("second"), submit("third")
        deadline = time.monotonic() + 30
        while [client.get_job(j)["status"] for j in (first, second, third)] != ["Running", "Queued", "Queued"]:
            assert time.monotonic() < deadline, [client.get_job(j)["status"] for j in (first, second, third)]
            time.sleep(0.05)
        assert worker_processes(second) == [] and worker_processes(third) == []

        assert client.cancel_job(third)["status"] == "Canceled"
        done = [client.wait_for_job(j, timeout_s=60) for j in (first, second)]

        assert [job["status"] for job in done] == ["Completed", "Completed"]
        assert done[1]["started_at"] >= done[0]["ended_at"]  # one slot: the second ran after the first
        assert "2 worker slots asked for, the runtime has 1 (--batch-slots): running on 1" in client.job_logs(first)
        assert "queued: waiting for 1 worker slot(s) of the runtime's 1" in client.job_logs(second)
        assert client.get_job(third)["started_at"] is None and not (tmp_path / "third").exists()
