"""The batch flow's triggers and scoring operator against a real local runtime and a real Azurite."""

from __future__ import annotations

import asyncio
import importlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from airflow.sdk import AssetOrTimeSchedule
from airflow.sdk.exceptions import AirflowException, TaskDeferred
from azure.storage.blob import BlobServiceClient

from deployflow.batch import storage as blobs
from deployflow.batch.config import CONFIG_DIR, load_use_case
from deployflow.batch.manifest import BlobRef, with_scored
from deployflow.local.client import LocalRuntimeClient
from deployflow.operators.batch import JOB_XCOM_KEY, BatchScoringOperator
from deployflow.triggers.batch import BatchJobStateTrigger
from deployflow.triggers.blob import NewBlobsTrigger
from tests.airflow_support import connected_runtime
from tests.azurite import azurite_service
from tests.runtime.batch_support import HANGING_SCRIPT, SAMPLE_DATA, job_document, scoring_package, worker_processes
from tests.runtime.support import SAMPLE_MODEL

pytestmark = pytest.mark.slow
WASB_CONN_ID = "batch_ops_blob"


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BlobServiceClient]:
    with azurite_service(tmp_path_factory.mktemp("azurite"), WASB_CONN_ID) as service:
        yield service


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRuntimeClient]:
    with connected_runtime(tmp_path_factory.mktemp("batch-ops") / "data") as runtime, runtime.client() as client:
        client.register_model("diabetes", SAMPLE_MODEL, version="1")
        yield client


def round_trip(trigger: Any) -> Any:
    classpath, kwargs = trigger.serialize()
    module, _, name = classpath.rpartition(".")
    rebuilt = getattr(importlib.import_module(module), name)(**kwargs)
    assert rebuilt.serialize() == (classpath, kwargs)
    return rebuilt


async def first_event(trigger: Any, timeout_s: float) -> dict[str, Any]:
    async def first() -> dict[str, Any]:
        async for event in trigger.run():
            return event.payload
        raise AssertionError("the trigger ended without an event")

    return await asyncio.wait_for(first(), timeout_s)


def test_job_trigger_round_trips_and_reports_a_completed_job(client: LocalRuntimeClient, tmp_path: Path) -> None:
    job = client.submit_job(job_document("trigger-ok", str(SAMPLE_DATA), str(tmp_path / "out")))
    trigger = round_trip(BatchJobStateTrigger(ml_platform_conn_id="deployflow_local", job_id=job["id"],
                                              deadline=time.time() + 120, poll_interval=0.2))  # fmt: skip

    event = asyncio.run(first_event(trigger, 120))

    assert (event["status"], event["job_id"], event["job"]["status"]) == ("success", job["id"], "Completed")
    assert event["job"]["summary"]["succeeded"] == 3


def test_job_trigger_reports_an_unknown_job_as_an_error(client: LocalRuntimeClient) -> None:
    trigger = BatchJobStateTrigger(ml_platform_conn_id="deployflow_local", job_id="no-such-job", deadline=time.time())

    event = asyncio.run(first_event(trigger, 30))

    assert event["status"] == "error" and event["job_id"] == "no-such-job" and "job" not in event


def test_blob_trigger_fires_for_unscored_blobs_only(service: BlobServiceClient) -> None:
    landing = service.create_container("watch-in")
    for name in ("in/a.csv", "in/b.csv", "in/c.csv", "elsewhere/d.csv"):
        landing.upload_blob(name, b"1,2\n")
    a = next(b for b in blobs.list_inputs(service, "watch-in", "in") if b.name == "in/a.csv")
    blobs.update_manifest(service, "watch-out", "m/_manifest.json",
                          lambda m: with_scored(m, [a], run_id="r", output_uri="u", scored_at="t"))  # fmt: skip
    blobs.stage(service, "watch-in", [BlobRef("in/c.csv", "")], input_prefix="in", staging="_staging/run-1")
    trigger = round_trip(NewBlobsTrigger(wasb_conn_id=WASB_CONN_ID, container="watch-in", prefix="in",
                                         manifest_container="watch-out", manifest_blob="m/_manifest.json",
                                         poll_interval=0.1))  # fmt: skip

    event = asyncio.run(first_event(trigger, 30))

    assert (event["status"], event["count"], event["blobs"]) == ("success", 1, ["in/b.csv"])


def test_blob_trigger_keeps_waiting_while_everything_is_scored(service: BlobServiceClient) -> None:
    service.create_container("quiet-in").upload_blob("in/a.csv", b"1,2\n")
    listed = blobs.list_inputs(service, "quiet-in", "in")
    blobs.update_manifest(service, "quiet-out", "_manifest.json",
                          lambda m: with_scored(m, listed, run_id="r", output_uri="u", scored_at="t"))  # fmt: skip
    trigger = NewBlobsTrigger(
        wasb_conn_id=WASB_CONN_ID,
        container="quiet-in",
        prefix="in",
        manifest_container="quiet-out",
        manifest_blob="_manifest.json",
        poll_interval=0.1,
    )

    with pytest.raises(TimeoutError):
        asyncio.run(first_event(trigger, 1.0))  # ten polls, no event


def hanging_operator(service: BlobServiceClient, tmp_path: Path, name: str) -> BatchScoringOperator:
    service.get_container_client("hang-in").upload_blob(f"{name}/hang.csv", b"x\n", overwrite=True)
    package = scoring_package(tmp_path / "pkg", HANGING_SCRIPT)
    return BatchScoringOperator(
        task_id=name, storage_conn_id=WASB_CONN_ID, job_name=name, model="diabetes:1", package_path=str(package),
        scoring_script="score_batch.py", input_container="hang-in", input_prefix=name,
        output_container="hang-out", output_prefix=name, timeout_s=600, deferrable=True,
    )  # fmt: skip


def defer(operator: BatchScoringOperator) -> tuple[str, mock.Mock, BatchJobStateTrigger]:
    """Run execute() up to its deferral; the job id it pushed to XCom, the task instance mock, the trigger."""
    ti = mock.Mock()
    with pytest.raises(TaskDeferred) as deferred:
        operator.execute({"ti": ti})  # type: ignore[arg-type]
    pushed = ti.xcom_push.call_args.kwargs
    assert pushed["key"] == JOB_XCOM_KEY and deferred.value.trigger.job_id == pushed["value"]["job_id"]
    assert pushed["value"]["output_uri"] == f"blob://hang-out/{operator.output_prefix}"
    return pushed["value"]["job_id"], ti, deferred.value.trigger


def test_a_killed_scoring_task_cancels_its_job(client, service, tmp_path: Path) -> None:  # noqa: ANN001
    service.create_container("hang-in")
    operator = hanging_operator(service, tmp_path, "killed")
    job_id, _ti, _trigger = defer(operator)

    operator.on_kill()

    assert client.get_job(job_id)["status"] == "Canceled"


def test_a_task_stopped_while_deferred_cancels_its_job_but_a_triggerer_restart_does_not(
    client: LocalRuntimeClient, service: BlobServiceClient, tmp_path: Path
) -> None:
    operator = hanging_operator(service, tmp_path, "stopped")
    job_id, _ti, deferred = defer(operator)
    trigger = round_trip(deferred)
    deadline = time.monotonic() + 30
    while not worker_processes(job_id):
        assert time.monotonic() < deadline, "the job's worker did not start"
        time.sleep(0.05)

    async def triggerer_restarts() -> None:  # the triggerer cancels run() with no user action: no on_kill
        waiting = asyncio.create_task(first_event(trigger, 60))
        await asyncio.sleep(0.3)  # a few polls
        waiting.cancel()
        await asyncio.gather(waiting, return_exceptions=True)

    asyncio.run(triggerer_restarts())
    assert client.get_job(job_id)["status"] == "Running" and worker_processes(job_id)

    asyncio.run(round_trip(deferred).on_kill())  # the user marked the task failed: the triggerer calls on_kill

    assert client.get_job(job_id)["status"] == "Canceled"
    assert worker_processes(job_id) == []


def test_a_wait_that_gives_up_cancels_the_job_and_fails_the_task(client, service, tmp_path: Path) -> None:  # noqa: ANN001
    operator = hanging_operator(service, tmp_path, "gave-up")
    job_id, ti, _trigger = defer(operator)
    running = client.get_job(job_id)
    state = {"job_id": job_id, "status": running["status"], "output_uri": "blob://hang-out/gave-up"}
    event = {"status": "error", "message": f"batch job {job_id} still Running at its deadline", "job_id": job_id,
             "job": state}  # fmt: skip

    with pytest.raises(AirflowException, match="at its deadline"):
        operator.execute_complete({"ti": ti}, event)  # type: ignore[arg-type]

    assert client.get_job(job_id)["status"] == "Canceled"


def test_a_watched_use_case_runs_on_its_cron_or_on_new_blobs(tmp_path: Path) -> None:
    import dags.batch_scoring as module

    case = load_use_case(CONFIG_DIR / "diabetes.json").model_copy(update={"watch": True})
    dag = module.build_dag(case)

    assert isinstance(dag.timetable, AssetOrTimeSchedule)
    (asset,) = dag.timetable.asset_condition.objects
    trigger = asset.watchers[0].trigger
    assert isinstance(trigger, NewBlobsTrigger)
    assert trigger.serialize()[1] == {
        "wasb_conn_id": "deployflow_blob", "container": "landing", "prefix": "diabetes/incoming",
        "manifest_container": "scored", "manifest_blob": "diabetes/_manifest.json",
        "poll_interval": case.watch_poll_interval_s,
    }  # fmt: skip
    assert list(module.build_dag(case.model_copy(update={"schedule": None})).timetable.asset_condition.objects) == [
        asset
    ]


def test_blob_trigger_reports_each_new_blob_once_however_many_polls_see_it(service: BlobServiceClient) -> None:
    landing = service.create_container("once-in")
    for name in ("in/a.csv", "in/b.csv"):
        landing.upload_blob(name, b"1,2\n")
    trigger = NewBlobsTrigger(wasb_conn_id=WASB_CONN_ID, container="once-in", prefix="in",
                              manifest_container="once-out", manifest_blob="_manifest.json",
                              poll_interval=0.05)  # fmt: skip
    polls = 0
    poll = trigger.poll

    def counted() -> Any:
        nonlocal polls
        polls += 1
        return poll()

    trigger.poll = counted  # type: ignore[method-assign]
    events: list[dict[str, Any]] = []

    async def watch_while(step: Any) -> None:
        async def collect() -> None:
            async for event in trigger.run():
                events.append(event.payload)

        task = asyncio.create_task(collect())
        try:
            for action, more_polls in step:
                await asyncio.to_thread(action)
                target = polls + more_polls
                while polls < target:
                    assert not task.done(), "the watch ended"
                    await asyncio.sleep(0.01)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    asyncio.run(watch_while([
        (lambda: None, 10),                                                      # a and b, seen by ten polls
        (lambda: landing.upload_blob("in/c.csv", b"1,2\n"), 10),                 # a third blob
        (lambda: landing.upload_blob("in/a.csv", b"3,4\n", overwrite=True), 10),  # a new version of a
    ]))  # fmt: skip

    assert [(e["status"], e["blob"], e["count"]) for e in events] == [
        ("success", "in/a.csv", 1), ("success", "in/b.csv", 1), ("success", "in/c.csv", 1),
        ("success", "in/a.csv", 1),
    ]  # fmt: skip
    assert events[0]["etag"] != events[3]["etag"]
