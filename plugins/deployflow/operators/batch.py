"""Operators of the batch flow: find new blobs, stage them, score them on the platform, record them.

Blob work goes through the Azure provider's ``WasbHook`` (a ``wasb`` connection); scoring goes
through the ML platform connection, and its wait runs in the triggerer when ``deferrable``.
Only references cross XCom: blob names and etags, the job id, the output URI.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import UTC, datetime
from functools import cached_property, partial
from typing import Any, NoReturn

from airflow.providers.microsoft.azure.hooks.wasb import WasbHook
from airflow.sdk import BaseOperator, Context, conf
from airflow.sdk.exceptions import AirflowException, AirflowFailException, AirflowSkipException
from azure.storage.blob import BlobServiceClient

from deployflow.batch import locations, storage
from deployflow.batch.config import join_blob_path
from deployflow.batch.manifest import FAILED, SKIPPED, BlobRef, Outcome, new_blobs, with_scored
from deployflow.batch.naming import relative_name
from deployflow.operators.base import MLPlatformOperator
from deployflow.operators.deployment import refused_requests_fail_the_task
from deployflow.platform.batch import BatchInput, BatchJobSpec, BatchJobState
from deployflow.platform.cleanup import remove_quietly
from deployflow.platform.specs import ModelRef
from deployflow.triggers.batch import BatchJobStateTrigger

JOB_XCOM_KEY = "batch_job"


class BlobOperator(BaseOperator):
    """Base for the batch flow's blob steps: one ``wasb`` connection, its client created on first use."""

    template_fields: Sequence[str] = ("wasb_conn_id",)

    def __init__(self, *, wasb_conn_id: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.wasb_conn_id = wasb_conn_id

    @cached_property
    def service(self) -> BlobServiceClient:
        return WasbHook(wasb_conn_id=self.wasb_conn_id).get_conn()


def _blob_refs(value: Any) -> list[BlobRef]:
    return [BlobRef.from_dict(item) for item in value or []]


class FindNewBlobsOperator(BlobOperator):
    """List the input prefix and return the blobs the manifest does not hold (name + etag).

    None new skips the rest of the run (AirflowSkipException), with a log line saying so.
    """

    template_fields: Sequence[str] = (*BlobOperator.template_fields, "container", "prefix", "manifest_container",
                                      "manifest_blob")  # fmt: skip
    ui_color = "#e6f0ff"

    def __init__(
        self, *, container: str, prefix: str, manifest_container: str, manifest_blob: str, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.container = container
        self.prefix = prefix
        self.manifest_container = manifest_container
        self.manifest_blob = manifest_blob

    def execute(self, context: Context) -> list[dict[str, str]]:
        manifest, _etag = storage.read_manifest(self.service, self.manifest_container, self.manifest_blob)
        listed = storage.list_inputs(self.service, self.container, self.prefix)
        fresh = new_blobs(listed, manifest)
        if not fresh:
            self.log.info(
                "no new blobs under %s/%s (%d listed, all in the manifest): nothing to score, skipping the run",
                self.container, self.prefix, len(listed),
            )  # fmt: skip
            raise AirflowSkipException(f"no new blobs under {self.container}/{self.prefix}")
        self.log.info("%d new blob(s) of %d under %s/%s", len(fresh), len(listed), self.container, self.prefix)
        return [blob.to_dict() for blob in fresh]


class StageBlobsOperator(BlobOperator):
    """Copy the given blobs under ``staging_prefix`` in their container, so a job scores exactly them.

    Azure ML scores whole folders only, so both platforms get the same staged folder. A failed
    staging removes what it copied. Returns the staging prefix.
    """

    template_fields: Sequence[str] = (*BlobOperator.template_fields, "container", "input_prefix", "blobs",
                                      "staging_prefix")  # fmt: skip
    ui_color = "#e6f0ff"

    def __init__(self, *, container: str, input_prefix: str, blobs: Any, staging_prefix: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.container = container
        self.input_prefix = input_prefix
        self.blobs = blobs
        self.staging_prefix = staging_prefix

    def execute(self, context: Context) -> str:
        blobs = _blob_refs(self.blobs)
        try:
            staged = storage.stage(
                self.service, self.container, blobs, input_prefix=self.input_prefix, staging=self.staging_prefix
            )
        except BaseException:
            removed = remove_quietly(
                lambda: storage.delete_prefix(self.service, self.container, self.staging_prefix),
                f"delete the partial copies under {self.container}/{self.staging_prefix}",
                self.log,
            )
            if removed is not None:
                self.log.warning("staging failed; removed %d partial copies under %s", removed, self.staging_prefix)
            raise
        self.log.info("staged %d blob(s) under %s/%s", len(staged), self.container, self.staging_prefix)
        return self.staging_prefix


class UpdateManifestOperator(BlobOperator):
    """Record every blob the run took in the manifest; the rewrite is conditional on its etag, so no entry is lost.

    ``scoring`` is what the scoring task returned (``output_uri``, ``failed_files`` with
    ``file_errors``, ``skipped_files``). A blob that failed is quarantined first — copied under
    ``failed_prefix`` in the manifest's container, beside an error report — then recorded as
    failed with its error; an empty one is recorded as skipped with the reason. Either way the
    next run leaves it alone until it is replaced (a new etag).
    """

    template_fields: Sequence[str] = (*BlobOperator.template_fields, "container", "manifest_blob", "blobs",
                                      "input_container", "input_prefix", "failed_prefix", "scoring",
                                      "run_id")  # fmt: skip
    ui_color = "#e6f0ff"

    def __init__(
        self,
        *,
        container: str,
        manifest_blob: str,
        blobs: Any,
        input_container: str,
        input_prefix: str,
        failed_prefix: str,
        scoring: Any,
        run_id: str,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.container = container
        self.manifest_blob = manifest_blob
        self.blobs = blobs
        self.input_container = input_container
        self.input_prefix = input_prefix
        self.failed_prefix = failed_prefix
        self.scoring = scoring
        self.run_id = run_id

    def execute(self, context: Context) -> int:
        errors = dict(self.scoring.get("file_errors") or {})
        failed = set(self.scoring.get("failed_files") or ()) | set(errors)
        skipped = dict(self.scoring.get("skipped_files") or {})
        output_uri = str(self.scoring["output_uri"])
        scored, unscored = [], {}
        for blob in _blob_refs(self.blobs):
            name = relative_name(blob.name, self.input_prefix)
            if name in failed:
                unscored[blob] = self._quarantine(blob, name, errors.get(name) or "failed every try")
            elif name in skipped:
                unscored[blob] = Outcome(SKIPPED, skipped[name], output_uri)
            else:
                scored.append(blob)
        scored_at = datetime.now(UTC).isoformat(timespec="seconds")
        manifest = storage.update_manifest(
            self.service,
            self.container,
            self.manifest_blob,
            lambda current: with_scored(
                current, scored, run_id=self.run_id, output_uri=output_uri, scored_at=scored_at, unscored=unscored
            ),  # fmt: skip
        )
        self.log.info(
            "manifest %s/%s: %d blob(s) scored, %d failed (quarantined under %s), %d skipped; %d in all",
            self.container, self.manifest_blob, len(scored), sum(o.status == FAILED for o in unscored.values()),
            self.failed_prefix, sum(o.status == SKIPPED for o in unscored.values()), len(manifest),
        )  # fmt: skip
        return len(manifest)

    def _quarantine(self, blob: BlobRef, name: str, error: str) -> Outcome:
        target = join_blob_path(self.failed_prefix, name)
        report = {"blob": f"{self.input_container}/{blob.name}", "etag": blob.etag, "run_id": self.run_id,
                  "error": error, "fix": "correct the file and upload it again: a new version is scored"}  # fmt: skip
        url = storage.quarantine(self.service, self.input_container, blob.name, to_container=self.container,
                                 to_name=target, report=report)  # fmt: skip
        self.log.warning("%s failed to score (%s); quarantined as %s/%s", blob.name, error, self.container, target)
        return Outcome(FAILED, error, url)


class DeleteBlobPrefixOperator(BlobOperator):
    """Delete every blob under ``container/prefix``; used as the teardown that removes a run's staging."""

    template_fields: Sequence[str] = (*BlobOperator.template_fields, "container", "prefix")
    ui_color = "#f2e6e6"

    def __init__(self, *, container: str, prefix: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.container = container
        self.prefix = prefix

    def execute(self, context: Context) -> int:
        deleted = storage.delete_prefix(self.service, self.container, self.prefix)
        self.log.info("deleted %d blob(s) under %s/%s", deleted, self.container, self.prefix)
        return deleted


def storage_connection_string(conn_id: str) -> str:
    """The connection string of a ``wasb`` connection, for a platform that reads blobs itself (a secret)."""
    extra = WasbHook.get_connection(conn_id).extra_dejson
    value = extra.get("connection_string") or extra.get("extra__wasb__connection_string")
    if not value:  # a configuration to fix: retrying cannot help
        raise AirflowFailException(
            f"connection {conn_id} has no connection_string in its extra: the local runtime reads blobs "
            "with a storage connection string"
        )
    return value


class BatchScoringOperator(MLPlatformOperator):
    """Score every blob under ``input_container/input_prefix`` with a batch job; outputs go to the output folder.

    Submits the job, pushes its id to XCom (key ``batch_job``), then waits for it in the
    triggerer when ``deferrable``. A Failed or Canceled job fails the task with the job's
    error; a killed task cancels its job. Returns the job's final state. With no ``scoring_script``
    the package must be an MLflow model, which the platform scores with its own MLflow batch script.
    """

    template_fields: Sequence[str] = (
        *MLPlatformOperator.template_fields,
        "storage_conn_id",
        "job_name",
        "model",
        "package_path",
        "scoring_script",
        "input_container",
        "input_prefix",
        "output_container",
        "output_prefix",
        "output_datastore",
        "compute",
        "environment_variables",
    )
    template_fields_renderers = {"environment_variables": "json"}
    ui_color = "#d9f2e6"

    def __init__(
        self,
        *,
        storage_conn_id: str,
        job_name: str,
        model: str,
        package_path: str,
        scoring_script: str | None = None,
        input_container: str,
        input_prefix: str,
        output_container: str,
        output_prefix: str,
        output_datastore: str | None = None,
        mini_batch_size: int = 10,
        error_threshold: int = -1,
        max_retries: int = 3,
        timeout_s: int = 60,
        instance_count: int = 1,
        max_concurrency_per_instance: int = 1,
        compute: str | None = None,
        environment_variables: dict[str, str] | None = None,
        job_timeout_s: float = 6 * 3600,
        poll_interval: float = 10.0,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.storage_conn_id = storage_conn_id
        self.job_name = job_name
        self.model = model
        self.package_path = package_path
        self.scoring_script = scoring_script
        self.input_container = input_container
        self.input_prefix = input_prefix
        self.output_container = output_container
        self.output_prefix = output_prefix
        self.output_datastore = output_datastore
        self.mini_batch_size = mini_batch_size
        self.error_threshold = error_threshold
        self.max_retries = max_retries
        self.timeout_s = timeout_s
        self.instance_count = instance_count
        self.max_concurrency_per_instance = max_concurrency_per_instance
        self.compute = compute
        self.environment_variables = environment_variables or {}
        self.job_timeout_s = job_timeout_s
        self.poll_interval = poll_interval
        self.deferrable = deferrable
        self._job_id: str | None = None

    def spec(self, platform_kind: str, account_name: str | None = None) -> BatchJobSpec:
        """The job spec for the platform: blob folders become the URIs that platform reads and writes."""
        return BatchJobSpec(
            name=self.job_name,
            model=ModelRef.parse(self.model),
            package_path=self.package_path,
            scoring_script=self.scoring_script,
            input=BatchInput(
                locations.input_uri(platform_kind, self.input_container, self.input_prefix, account_name=account_name),
                storage_conn_id=self.storage_conn_id,
            ),
            output_uri=locations.output_uri(
                platform_kind, self.output_container, self.output_prefix, datastore=self.output_datastore
            ),
            mini_batch_size=int(self.mini_batch_size),
            error_threshold=int(self.error_threshold),
            max_retries=int(self.max_retries),
            timeout_s=int(self.timeout_s),
            instance_count=int(self.instance_count),
            max_concurrency_per_instance=int(self.max_concurrency_per_instance),
            compute=self.compute or None,
            environment_variables=dict(self.environment_variables),
        )

    def execute(self, context: Context) -> dict[str, Any]:
        with refused_requests_fail_the_task():
            state = self._submit()
        context["ti"].xcom_push(key=JOB_XCOM_KEY, value={"job_id": state.job_id, "output_uri": state.output_uri})
        if self.deferrable:
            self.defer(
                trigger=BatchJobStateTrigger(
                    ml_platform_conn_id=self.ml_platform_conn_id,
                    job_id=state.job_id,
                    deadline=time.time() + float(self.job_timeout_s),
                    poll_interval=float(self.poll_interval),
                ),
                method_name="execute_complete",
            )
        return self._finished(self._wait(state))

    def _submit(self) -> BatchJobState:
        platform = self.platform
        if platform.kind == locations.AZURE_ML:  # Azure ML reads through its datastores, with its own identity
            account_name = WasbHook(wasb_conn_id=self.storage_conn_id).get_conn().account_name
            spec, secret = self.spec(platform.kind, account_name), None
        else:
            spec, secret = self.spec(platform.kind), storage_connection_string(self.storage_conn_id)
        state = platform.submit_batch_job(spec, storage_connection_string=secret)
        self._job_id = state.job_id
        self.log.info(
            "submitted batch job %s on %s: model %s, %s -> %s",
            state.job_id, platform.kind, spec.model, spec.input.uri, spec.output_uri,
        )  # fmt: skip
        return state

    def _wait(self, state: BatchJobState) -> BatchJobState:
        """Poll in the worker (deferrable=False); the triggerer does the same without holding a slot."""
        deadline = time.monotonic() + float(self.job_timeout_s)
        while not state.done:
            if time.monotonic() >= deadline:
                self._fail(f"batch job {state.job_id} still {state.status} after {self.job_timeout_s} s", state)
            time.sleep(float(self.poll_interval))
            state = self.platform.get_batch_job(state.job_id)
        if not state.succeeded:
            self._fail(f"batch job {state.job_id} is {state.status}: {state.error or 'no reason given'}", state)
        return state

    def execute_complete(self, context: Context, event: dict[str, Any]) -> dict[str, Any]:
        job = event.get("job")
        state = BatchJobState.from_dict(job) if job else None
        if event["status"] != "success":
            self._fail(event["message"], state, job_id=event["job_id"])
        assert state is not None  # a success event always carries the job
        return self._finished(state)

    def _finished(self, state: BatchJobState) -> dict[str, Any]:
        self.log.info("batch job %s completed: %s; outputs in %s", state.job_id, state.summary, state.output_uri)
        if state.failed_files:
            self.log.warning(
                "batch job %s completed with %d file(s) that failed every try (within error_threshold=%s): %s",
                state.job_id, len(state.failed_files), self.error_threshold, ", ".join(state.failed_files),
            )  # fmt: skip
        if state.skipped_files:
            self.log.warning("batch job %s skipped %d file(s): %s", state.job_id, len(state.skipped_files),
                             ", ".join(f"{name} ({why})" for name, why in state.skipped_files.items()))  # fmt: skip
        return {"job_id": state.job_id, "status": state.status, "output_uri": state.output_uri,
                "summary": state.summary, "failed_files": list(state.failed_files),
                "file_errors": dict(state.file_errors), "skipped_files": dict(state.skipped_files)}  # fmt: skip

    def _fail(self, message: str, state: BatchJobState | None, job_id: str | None = None) -> NoReturn:
        """A job still running when the wait gives up is canceled, so nothing writes outputs afterwards.

        A job that failed on its data or its code fails the task for good (no retry would help);
        anything else (a timeout, the platform unreachable, a restart) may be retried.
        """
        job_id = job_id or (state.job_id if state else None)
        if job_id and (state is None or not state.done):
            self._cancel(job_id)
        if state is not None and state.done and not state.retryable:
            raise AirflowFailException(f"{message} (not retried: running it again would fail the same way)")
        raise AirflowException(message)

    def _cancel(self, job_id: str) -> None:
        cancel = partial(self.platform.cancel_batch_job, job_id)
        canceled = remove_quietly(cancel, f"cancel batch job {job_id}", self.log)
        if canceled is not None:
            self.log.info("batch job %s is %s", job_id, canceled.status)

    def on_kill(self) -> None:
        """A killed task cancels the job it submitted."""
        if self._job_id:
            self._cancel(self._job_id)
