"""The batch half of `./dev up`: drop a file into Azurite, watch the run it starts, show the predictions.

The batch DAG's AssetWatcher sees the new blob and starts a run on its own; the demo only
uploads, waits and reads. A file already scored (it is in the manifest) is not dropped again.
"""

from __future__ import annotations

import time
from pathlib import Path

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.storage.blob import BlobServiceClient

from deployflow.batch.config import BatchUseCase
from deployflow.batch.manifest import parse_manifest
from deployflow_cli.airflow_api import AirflowApi

WAIT_FOR_RUN_S = 180


def drop_and_watch(api: AirflowApi, case: BatchUseCase, storage: BlobServiceClient, sample: Path) -> None:
    """Upload ``sample`` under the use case's input prefix; report the run it starts and its output."""
    blob_name = f"{case.input.prefix}/{sample.name}"
    manifest = _manifest(storage, case)
    if blob_name in manifest:
        print(f"\nbatch: {case.input.container}/{blob_name} was scored before; predictions in "
              f"{manifest[blob_name].output_uri}")  # fmt: skip
        return
    api.wait_for_dag(case.dag_id)  # unpaused before the upload, so the watcher's event starts a run
    known = {run["dag_run_id"] for run in api.runs(case.dag_id)}
    for container in (case.input.container, case.output.container):
        try:
            storage.create_container(container)
        except ResourceExistsError:
            pass
    storage.get_blob_client(case.input.container, blob_name).upload_blob(sample.read_bytes(), overwrite=True)
    print(f"\nbatch: dropped {sample.name} into Azurite at {case.input.container}/{blob_name}; waiting for the "
          f"{case.dag_id} run it starts (its AssetWatcher polls every {case.watch_poll_interval_s} s)")  # fmt: skip
    run_id = _new_run(api, case.dag_id, known)
    api.follow(case.dag_id, run_id, "batch run")
    entry = _manifest(storage, case).get(blob_name)
    if entry is None:
        raise SystemExit(f"batch: the run ended but {blob_name} is not in the manifest; see the run in the UI")
    print(f"batch: {sample.name} scored by run {entry.run_id}; predictions in {entry.output_uri}/predictions.csv")
    container, _, prefix = entry.output_uri.removeprefix("blob://").partition("/")
    predictions = storage.get_blob_client(container, f"{prefix}/predictions.csv").download_blob().readall()
    lines = predictions.decode().splitlines()
    print("  " + "\n  ".join(lines[:3]) + f"\n  ... {len(lines)} rows")


def _manifest(storage: BlobServiceClient, case: BatchUseCase) -> dict:
    try:
        text = storage.get_blob_client(case.output.container, case.manifest_blob).download_blob().readall()
    except ResourceNotFoundError:
        return {}
    return parse_manifest(text)


def _new_run(api: AirflowApi, dag_id: str, known: set[str]) -> str:
    deadline = time.monotonic() + WAIT_FOR_RUN_S
    while time.monotonic() < deadline:
        fresh = [run for run in api.runs(dag_id) if run["dag_run_id"] not in known]
        if fresh:
            run = fresh[0]
            print(f"batch: run {run['dag_run_id']} started by {run.get('run_type', 'an event')}", flush=True)
            return run["dag_run_id"]
        time.sleep(2)
    raise SystemExit(f"batch: no {dag_id} run started within {WAIT_FOR_RUN_S} s of the upload; is the triggerer up?")
