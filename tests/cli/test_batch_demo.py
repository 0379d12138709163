"""The batch half of `./dev up` against a real Azurite: it waits for its file to be taken, by whichever run.

Airflow's REST API is the one part played here (by a few lines answering what `drop_and_watch`
asks it); the flow behind it is the batch DAG's own tests' business.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
from azure.storage.blob import BlobServiceClient

from deployflow.batch.config import BatchUseCase, load_use_cases
from deployflow.batch.manifest import FAILED, BlobRef, Outcome, dump_manifest, with_scored
from deployflow_cli import batch_demo
from deployflow_cli.demo import BATCH_DAG_ID
from tests.azurite import azurite  # noqa: F401 - the fixture
from tests.runtime.support import REPO

SAMPLE = REPO / "include" / "data" / "diabetes" / "patients-01.csv"
LEFTOVER_RUN = "asset_triggered__left_over_from_an_earlier_up"


class Runs:
    """What the demo reads of Airflow: the batch DAG is there, and which runs it has (one left over)."""

    def __init__(self) -> None:
        self.followed: list[str] = []

    def wait_for_dag(self, dag_id: str) -> None:
        pass

    def runs(self, dag_id: str) -> list[dict]:
        return [{"dag_run_id": LEFTOVER_RUN, "run_type": "asset_triggered"}]

    def follow(self, dag_id: str, run_id: str, label: str) -> None:
        self.followed.append(run_id)


@pytest.fixture
def storage(azurite: str) -> Iterator[BlobServiceClient]:  # noqa: F811 - the fixture
    with BlobServiceClient.from_connection_string(azurite) as service:
        yield service
        for container in service.list_containers():
            service.delete_container(container.name)


def take_when_dropped(
    storage: BlobServiceClient, *, failed: bool, listed: threading.Event | None = None
) -> threading.Thread:
    """Play the run left over from an earlier `./dev up`: it lists the prefix itself, takes the file once
    it is there, and records it in the manifest (scored with predictions, or failed with its reason)."""
    case = use_case()
    name = f"{case.input.prefix}/{SAMPLE.name}"

    def take() -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                etag = storage.get_blob_client(case.input.container, name).get_blob_properties().etag
                break
            except Exception:  # noqa: BLE001 - not uploaded yet
                time.sleep(0.2)
        if listed is not None:  # the run has been listed by the demo before it records the file
            listed.wait(30)
        blob = BlobRef(name, etag.strip('"'))
        out = f"{case.output.prefix}/{LEFTOVER_RUN}"
        output_uri = f"blob://{case.output.container}/{out}"
        if failed:
            outcome = Outcome(FAILED, "row 3: 'abc' in column age is not a number", f"{output_uri}/failed")
            manifest = with_scored({}, [], run_id=LEFTOVER_RUN, output_uri=output_uri, scored_at="now",
                                   unscored={blob: outcome})  # fmt: skip
        else:
            predictions = storage.get_blob_client(case.output.container, f"{out}/predictions.csv")
            predictions.upload_blob(b"file,row,prediction\np,1,151.0\n", overwrite=True)
            manifest = with_scored({}, [blob], run_id=LEFTOVER_RUN, output_uri=output_uri, scored_at="now")
        storage.get_blob_client(case.output.container, case.manifest_blob).upload_blob(
            dump_manifest(manifest), overwrite=True
        )

    thread = threading.Thread(target=take)
    thread.start()
    return thread


def use_case() -> BatchUseCase:
    return next(c for c in load_use_cases() if c.dag_id == BATCH_DAG_ID)


def test_a_file_taken_by_a_run_already_queued_is_reported_scored_with_its_predictions(
    storage: BlobServiceClient, capsys: pytest.CaptureFixture[str]
) -> None:
    # Before: the demo waited only for a run it had not seen, and stopped after 180 s saying none started.
    runs = Runs()
    taker = take_when_dropped(storage, failed=False)
    batch_demo.drop_and_watch(runs, use_case(), storage, SAMPLE)
    taker.join()

    out = capsys.readouterr().out
    assert f"scored by run {LEFTOVER_RUN}" in out
    assert "p,1,151.0" in out
    assert runs.followed == []  # no run of its own to follow: the manifest decided


def test_a_file_an_earlier_run_failed_is_dropped_again_and_its_failure_named(storage: BlobServiceClient) -> None:
    # Before: a file the manifest listed as failed was taken for scored ("was scored before").
    case = use_case()
    storage.create_container(case.output.container)
    blob = BlobRef(f"{case.input.prefix}/{SAMPLE.name}", "0x1")
    earlier = with_scored({}, [], run_id="earlier", output_uri="blob://x/y", scored_at="then",
                          unscored={blob: Outcome(FAILED, "boom", "z")})  # fmt: skip
    storage.get_blob_client(case.output.container, case.manifest_blob).upload_blob(dump_manifest(earlier))

    taker = take_when_dropped(storage, failed=True)
    with pytest.raises(SystemExit, match="was failed by run .*'abc' in column age is not a number"):
        batch_demo.drop_and_watch(Runs(), case, storage, SAMPLE)
    taker.join()


class FirstScheduledRun(Runs):
    """No run before the drop; then the DAG's first scheduled run (Airflow's one catch-up) appears and takes it."""

    def __init__(self) -> None:
        super().__init__()
        self.asked = 0
        self.listed = threading.Event()

    def runs(self, dag_id: str) -> list[dict]:
        self.asked += 1
        if self.asked == 1:
            return []
        self.listed.set()
        return [{"dag_run_id": LEFTOVER_RUN, "run_type": "scheduled"}]


def test_a_run_the_schedule_started_is_named_for_what_started_it(
    storage: BlobServiceClient, capsys: pytest.CaptureFixture[str]
) -> None:
    runs = FirstScheduledRun()
    taker = take_when_dropped(storage, failed=False, listed=runs.listed)
    batch_demo.drop_and_watch(runs, use_case(), storage, SAMPLE)
    taker.join()

    out = capsys.readouterr().out
    assert f"batch: run {LEFTOVER_RUN} started (by the DAG's schedule: Airflow's first run of it" in out
    assert runs.followed == [LEFTOVER_RUN]
