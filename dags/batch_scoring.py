"""
# Batch scoring

One DAG per use case in `include/batch/*.json`. A run starts on the use case's cron schedule,
and, when `watch` is on, as soon as new blobs land in the input folder (an `AssetWatcher`
whose trigger compares the folder with the manifest).

0. **preflight** — on Azure ML, the credential, the workspace and the compute cluster (it exists,
   is an AmlCompute, scales to the job's instances); on the local runtime, that it answers.
   **wait_for_blobs** — the provider's `WasbPrefixSensor`, deferrable: a run waits in the
   triggerer until the input prefix holds a blob (skipped when none arrives in time).
1. **find_new_blobs** — input blobs not in `<output prefix>/_manifest.json` (or changed since,
   by etag); none skips the run.
2. **data_factory** — the configured Azure Data Factory pipeline (deferrable), or a logged skip.
3. **stage_inputs** — copies the new blobs to `<input container>/_staging/<run>/`, so the job
   scores exactly them (Azure ML scores whole folders).
4. **score** — a batch job on the compute cluster (Azure ML) or the local runtime, waited for in
   the triggerer; outputs go to `<output prefix>/<run>/`.
5. **update_manifest** — records the blobs the run took and their etags (etag-conditional rewrite):
   scored; failed (tolerated by the error threshold), quarantined under `<output prefix>/failed/<run>/`
   with an error report; or skipped (empty), with the reason. None is taken again until replaced.
6. **clean_staging** — teardown: removes the staging folder whether the run passed or failed.

A blob is scored once however often the DAG runs.
"""

from __future__ import annotations

import logging
from datetime import datetime
from pathlib import Path

from airflow.providers.microsoft.azure.sensors.wasb import WasbPrefixSensor
from airflow.sdk import DAG, Asset, AssetOrTimeSchedule, AssetWatcher, CronTriggerTimetable, task

from deployflow.batch.config import BatchUseCase, join_blob_path, load_use_cases
from deployflow.batch.naming import STAGING_FOLDER, job_name, run_key
from deployflow.operators.batch import (
    BatchScoringOperator,
    DeleteBlobPrefixOperator,
    FindNewBlobsOperator,
    StageBlobsOperator,
    UpdateManifestOperator,
)
from deployflow.operators.model import RegisterModelOperator
from deployflow.operators.preflight import PreflightOperator
from deployflow.triggers.blob import NewBlobsTrigger

log = logging.getLogger(__name__)
PROJECT_DIR = Path(__file__).resolve().parents[1]  # the use cases are in its include/batch/
RUN_KEY = "{{ run_key(run_id) }}"
FAILED_FOLDER = "failed"


def schedule_of(case: BatchUseCase) -> object:
    """The cron, the new-blobs asset, or either of them."""
    if not case.watch:
        return case.schedule
    watcher = AssetWatcher(
        name=f"{case.dag_id}_new_blobs",
        trigger=NewBlobsTrigger(
            wasb_conn_id=case.storage_conn_id,
            container=case.input.container,
            prefix=case.input.prefix,
            manifest_container=case.output.container,
            manifest_blob=case.manifest_blob,
            poll_interval=case.watch_poll_interval_s,
        ),
    )
    asset = Asset(
        name=f"{case.dag_id}_input",
        uri=f"wasb://{case.input.container}/{case.input.prefix}",
        group="batch-input",
        watchers=[watcher],
    )
    if case.schedule is None:
        return [asset]
    return AssetOrTimeSchedule(timetable=CronTriggerTimetable(case.schedule, timezone="UTC"), assets=[asset])


def data_factory_task(case: BatchUseCase) -> object:
    """The provider's deferrable ADF operator, or a task that says there is none (downstream still runs)."""
    if case.data_factory is None:

        @task(task_id="data_factory")
        def no_data_factory() -> None:
            log.info("no Data Factory configured: skipped")

        return no_data_factory()
    from airflow.providers.microsoft.azure.operators.data_factory import AzureDataFactoryRunPipelineOperator

    adf = case.data_factory
    return AzureDataFactoryRunPipelineOperator(
        task_id="data_factory",
        azure_data_factory_conn_id=adf.conn_id,
        resource_group_name=adf.resource_group,
        factory_name=adf.factory,
        pipeline_name=adf.pipeline,
        parameters=adf.parameters,
        deferrable=True,
    )


def build_dag(case: BatchUseCase) -> DAG:
    blob = {"wasb_conn_id": case.storage_conn_id}
    staging = join_blob_path(STAGING_FOLDER, RUN_KEY)
    with DAG(
        dag_id=case.dag_id,
        description=case.description,
        schedule=schedule_of(case),
        start_date=datetime(2026, 1, 1),
        catchup=False,
        max_active_runs=1,  # runs one after another: the next one sees the manifest the last one wrote
        doc_md=f"{__doc__}\n## This use case\n\n{case.description}\n",
        tags=["deployflow", "batch", *case.tags],
        default_args={"retries": 1, "owner": "deployflow"},
        user_defined_macros={"run_key": run_key, "batch_job_name": job_name},
    ) as dag:
        preflight = PreflightOperator(
            task_id="preflight",
            ml_platform_conn_id=case.ml_platform_conn_id,
            computes=[{"name": case.compute, "instance_count": case.instance_count}],
        )
        wait_for_blobs = WasbPrefixSensor(
            task_id="wait_for_blobs",
            container_name=case.input.container,
            prefix=case.input.prefix,
            wasb_conn_id=case.storage_conn_id,
            deferrable=True,
            poke_interval=case.watch_poll_interval_s,
            timeout=case.wait_for_blobs_timeout_s,
            soft_fail=True,
        )
        find = FindNewBlobsOperator(
            task_id="find_new_blobs",
            container=case.input.container,
            prefix=case.input.prefix,
            manifest_container=case.output.container,
            manifest_blob=case.manifest_blob,
            **blob,
        )
        stage = StageBlobsOperator(
            task_id="stage_inputs",
            container=case.input.container,
            input_prefix=case.input.prefix,
            blobs=find.output,
            staging_prefix=staging,
            **blob,
        )
        score = BatchScoringOperator(
            task_id="score",
            ml_platform_conn_id=case.ml_platform_conn_id,
            storage_conn_id=case.storage_conn_id,
            job_name="{{ batch_job_name(dag.dag_id, run_id) }}",
            model=case.model,
            package_path=case.package_path,
            scoring_script=case.scoring_script,
            input_container=case.input.container,
            input_prefix=staging,
            output_container=case.output.container,
            output_prefix=join_blob_path(case.output.prefix, RUN_KEY),
            output_datastore=case.output.datastore,
            mini_batch_size=case.mini_batch_size,
            error_threshold=case.error_threshold,
            max_retries=case.max_retries,
            timeout_s=case.timeout_s,
            instance_count=case.instance_count,
            max_concurrency_per_instance=case.max_concurrency_per_instance,
            compute=case.compute,
            job_timeout_s=case.job_timeout_s,
            deferrable=True,
        )
        record = UpdateManifestOperator(
            task_id="update_manifest",
            container=case.output.container,
            manifest_blob=case.manifest_blob,
            blobs=find.output,
            input_container=case.input.container,
            input_prefix=case.input.prefix,
            failed_prefix=join_blob_path(case.output.prefix, FAILED_FOLDER, RUN_KEY),
            scoring=score.output,
            run_id="{{ run_id }}",
            **blob,
        )
        clean = DeleteBlobPrefixOperator(
            task_id="clean_staging", container=case.input.container, prefix=staging, **blob
        ).as_teardown(setups=stage)
        preflight >> wait_for_blobs >> find >> data_factory_task(case) >> stage >> score >> record >> clean
        if case.register_model:
            model = case.model_ref
            register = RegisterModelOperator(
                task_id="register_model",
                ml_platform_conn_id=case.ml_platform_conn_id,
                package_path=case.package_path,
                model_name=model.name,
                version=model.version,
            )
            find >> register >> score
    return dag


for _case in load_use_cases(PROJECT_DIR / "include" / "batch", repo_root=PROJECT_DIR):
    globals()[_case.dag_id] = build_dag(_case)
