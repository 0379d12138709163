"""The batch half of `./dev up`: drop a file into Azurite, watch the run it starts, show the predictions.

The batch DAG's AssetWatcher sees the new blob and starts a run on its own; the demo only
uploads, waits and reads. A file already scored (the manifest says so) is not dropped again; one
an earlier run failed or skipped is.
"""

from __future__ import annotations

import time
from pathlib import Path

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.storage.blob import BlobServiceClient

from deployflow.batch.config import BatchUseCase
from deployflow.batch.manifest import SCORED, Entry, Manifest, parse_manifest
from deployflow_cli.airflow_api import AirflowApi

WAIT_FOR_RUN_S = 180


def drop_and_watch(api: AirflowApi, case: BatchUseCase, storage: BlobServiceClient, sample: Path) -> None:
    """Upload ``sample`` under the use case's input prefix; follow the run it starts; show how the file ended."""
    blob_name = f"{case.input.prefix}/{sample.name}"
    earlier = _manifest(storage, case).get(blob_name)
    if earlier is not None and earlier.status == SCORED:
        print(f"\nbatch: {case.input.container}/{blob_name} was scored before; predictions in "
              f"{earlier.output_uri}")  # fmt: skip
        return
    api.wait_for_dag(case.dag_id)  # unpaused before the upload, so the watcher's event starts a run
    known = {run["dag_run_id"] for run in api.runs(case.dag_id)}
    for container in (case.input.container, case.output.container):
        try:
            storage.create_container(container)
        except ResourceExistsError:
            pass
    uploaded = storage.get_blob_client(case.input.container, blob_name).upload_blob(sample.read_bytes(), overwrite=True)
    etag = str(uploaded["etag"]).strip('"')
    print(f"\nbatch: dropped {sample.name} into Azurite at {case.input.container}/{blob_name}; waiting for the "
          f"{case.dag_id} run it starts (its AssetWatcher polls every {case.watch_poll_interval_s} s)")  # fmt: skip
    entry = _wait_until_taken(api, case, storage, blob_name, etag, known)
    if entry.status != SCORED:
        raise SystemExit(f"batch: {sample.name} was {entry.status} by run {entry.run_id}: {entry.error}; "
                         f"its report is under {entry.output_uri}")  # fmt: skip
    print(f"batch: {sample.name} scored by run {entry.run_id}; predictions in {entry.output_uri}/predictions.csv")
    container, _, prefix = entry.output_uri.removeprefix("blob://").partition("/")
    predictions = storage.get_blob_client(container, f"{prefix}/predictions.csv").download_blob().readall()
    lines = predictions.decode().splitlines()
    print("  " + "\n  ".join(lines[:3]) + f"\n  ... {len(lines)} rows")


# How a run of the batch DAG began, in the demo's words (Airflow's run_type values).
RUN_TYPES = {
    "asset_triggered": "by the file's asset event",
    "scheduled": "by the DAG's schedule: Airflow's first run of it, or the cron's",
    "manual": "by hand",
    "backfill": "by a backfill",
}


def _wait_until_taken(
    api: AirflowApi, case: BatchUseCase, storage: BlobServiceClient, blob_name: str, etag: str, known: set[str]
) -> Entry:
    """The manifest's entry for this version of the blob, once a run has taken it. The run that takes it is
    usually the one the watcher's event starts (followed here), but may be one already queued (left over
    from an earlier `./dev up`, say), which lists the prefix itself: the manifest, not the run, decides."""
    deadline = time.monotonic() + WAIT_FOR_RUN_S
    followed: set[str] = set()
    while time.monotonic() < deadline:
        entry = _manifest(storage, case).get(blob_name)
        if entry is not None and entry.etag.strip('"') == etag:
            return entry
        for run in api.runs(case.dag_id):
            if run["dag_run_id"] not in known | followed:
                followed.add(run["dag_run_id"])
                why = RUN_TYPES.get(run.get("run_type"), f"a {run.get('run_type')} run")
                print(f"batch: run {run['dag_run_id']} started ({why}); it lists the new files itself", flush=True)
                api.follow(case.dag_id, run["dag_run_id"], "batch run")
                deadline = max(deadline, time.monotonic() + 10)  # its manifest write is its last step
        time.sleep(2)
    raise SystemExit(
        f"batch: {blob_name} was not taken by any {case.dag_id} run within {WAIT_FOR_RUN_S} s of the upload; "
        "is the triggerer up (./dev status), and is the DAG unpaused?"
    )


def _manifest(storage: BlobServiceClient, case: BatchUseCase) -> Manifest:
    try:
        text = storage.get_blob_client(case.output.container, case.manifest_blob).download_blob().readall()
    except ResourceNotFoundError:
        return {}
    return parse_manifest(text)
