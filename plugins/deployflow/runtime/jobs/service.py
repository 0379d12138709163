"""Batch jobs in the local runtime: submit, read, list, cancel and logs, with their state in SQLite.

A job runs as a task on the runtime's event loop (``job_run.JobRun``) once it holds its worker
slots (``slots.SlotPool``; until then it is Queued). The storage connection string a job is
submitted with stays in memory for the job's lifetime only: it is never stored, logged or
returned. Jobs are not resumed after a restart: those the runtime left NotStarted, Queued or
Running are marked Failed when it starts again.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import shutil
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from deployflow.packages import MLFLOW_BATCH_SCRIPT, ModelPackage, ModelPackageError
from deployflow.runtime.config import RuntimeConfig
from deployflow.runtime.environments import EnvironmentBuildError, EnvironmentCache
from deployflow.runtime.errors import Conflict, Invalid, NotFound, invalid_fields
from deployflow.runtime.isolation import ChildUser
from deployflow.runtime.jobs.blob_io import StorageError, check_reachable, connection_string_for, parse_location
from deployflow.runtime.jobs.run import JobFailed, JobLog, JobPlan, JobRun
from deployflow.runtime.jobs.slots import SlotPool
from deployflow.runtime.jobs.templates import WorkerTemplates
from deployflow.runtime.processes import tail
from deployflow.runtime.schemas import JOB_ACTIVE_STATUSES, Job, JobSpec, JobStatus, JobSummary, Model
from deployflow.runtime.state_db import Store

log = logging.getLogger(__name__)

SECRET_FIELD = "storage_connection_string"
RESTART_ERROR = "the runtime restarted while this job was {status}; jobs are not resumed: submit it again"


def parse_submission(document: dict[str, Any]) -> tuple[JobSpec, str | None]:
    """Split a submission into the job spec and the connection string; errors never echo the input."""
    document = dict(document)
    secret = document.pop(SECRET_FIELD, None)
    if secret is not None and not isinstance(secret, str):
        raise Invalid(f"{SECRET_FIELD} must be a string")
    try:
        return JobSpec.model_validate(document), secret or None
    except ValidationError as e:
        problems = invalid_fields(e.errors(include_input=False, include_url=False))
        raise Invalid(f"the job spec is not valid: {problems}") from None


class JobRecord:
    """A job as the runtime holds it: its document, plus what only lives while it runs."""

    def __init__(self, job: Job, connection_string: str | None = None) -> None:
        self.job = job
        self.connection_string = connection_string
        self.task: asyncio.Task[None] | None = None
        self.run: JobRun | None = None
        self.cancel_requested = False


class JobService:
    """Plays the part of Azure ML's job service for batch scoring on one machine."""

    def __init__(
        self,
        config: RuntimeConfig,
        store: Store,
        environments: EnvironmentCache,
        find_model: Callable[[str, str], Model],
        user: ChildUser | None = None,
    ) -> None:
        self.config = config
        self.user = user
        self.store = store
        self.environments = environments
        self.find_model = find_model
        self.records: dict[str, JobRecord] = {}
        self.templates = WorkerTemplates(
            config.data_dir / "logs" / "batch-templates", config.batch_warm_idle_s, user=user
        )
        self.slots = SlotPool(config.batch_slots)

    # ---- lifecycle -------------------------------------------------------------------

    def restore(self) -> None:
        """Load every job; mark those a previous runtime left unfinished as Failed, and clear their work."""
        for document in self.store.jobs():
            job = Job(**document)
            if job.status in JOB_ACTIVE_STATUSES:
                error = RESTART_ERROR.format(status=job.status.value)
                job.status, job.error, job.ended_at, job.retryable = JobStatus.FAILED, error, _now(), True
                self._persist(job)
                JobLog(self._log_dir(job.id) / "job.log", job.id).error("%s", error)
                shutil.rmtree(self._work_dir(job.id), ignore_errors=True)
            self.records[job.id] = JobRecord(job)

    async def close(self) -> None:
        """Stop running jobs (their workers are killed); they stay Running on disk until the next start."""
        tasks = [r.task for r in self.records.values() if r.task is not None and not r.task.done()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.templates.close()

    # ---- the API ---------------------------------------------------------------------

    def submit(self, document: dict[str, Any]) -> Job:
        """Check what can be checked at once, store the job as NotStarted and start it in the background."""
        spec, secret = parse_submission(document)
        try:
            model = self.find_model(spec.model.name, spec.model.version)
        except NotFound as e:
            raise Invalid(str(e)) from e
        package = Path(spec.package_path)
        if not package.is_dir():
            raise Invalid(f"package {package} not found; package_path must be a folder the runtime can read")
        try:
            ModelPackage(package).batch_script(spec.scoring_script)
        except ModelPackageError as e:
            raise Invalid(str(e)) from e
        if not (package / "requirements.txt").is_file():
            raise Invalid(f"package {package} has no requirements.txt; the job's environment is built from it")
        try:
            check_reachable(parse_location(spec.input.uri), secret)
            output = parse_location(spec.output_uri)
            if output.is_blob:
                connection_string_for(secret, output)
        except StorageError as e:
            raise Invalid(str(e)) from e
        job_id = f"{spec.name}-{secrets.token_hex(4)}"
        job = Job(**spec.model_dump(), id=job_id, status=JobStatus.NOT_STARTED, summary=JobSummary(),
                  created_at=_now())  # fmt: skip
        self._persist(job)
        record = self.records[job_id] = JobRecord(job, secret)
        record.task = asyncio.create_task(self._run(record, Path(model.path)))
        return job

    def get(self, job_id: str) -> Job:
        return self._record(job_id).job

    def list(self) -> list[Job]:
        return [r.job for r in self.records.values()]

    async def cancel(self, job_id: str) -> Job:
        """Cancel a job and wait until its workers are gone; a finished job is returned as it is."""
        record = self._record(job_id)
        if record.job.status not in JOB_ACTIVE_STATUSES or record.task is None:
            return record.job
        if record.run is not None and record.run.publishing:
            raise Conflict(f"job {job_id} is writing its outputs and about to complete; it cannot be canceled now")
        record.cancel_requested = True
        record.task.cancel()
        await asyncio.gather(record.task, return_exceptions=True)
        if record.job.status in JOB_ACTIVE_STATUSES:  # canceled before it started running
            self._finish(record.job, JobStatus.CANCELED, "canceled on request")
        return record.job

    def logs(self, job_id: str, lines: int) -> str:
        self._record(job_id)
        folder = self._log_dir(job_id)
        parts = [f"==> job <==\n{tail(folder / 'job.log', lines)}"]
        for worker_log in sorted(folder.glob("worker-*.log")):
            parts.append(f"==> {worker_log.stem} <==\n{tail(worker_log, lines)}")
        return "\n".join(parts)

    # ---- running ---------------------------------------------------------------------

    async def _run(self, record: JobRecord, model_dir: Path) -> None:
        job = record.job
        package = Path(job.package_path)
        job_log = JobLog(self._log_dir(job.id) / "job.log", job.id)
        work_dir = self._work_dir(job.id)
        try:
            job_log.info("preparing the model environment from %s", package / "requirements.txt")
            python = await asyncio.to_thread(self._environment, package)
            wanted = job.instance_count * job.max_concurrency_per_instance
            if not self.slots.available_now(wanted):
                job.status = JobStatus.QUEUED
                self._persist(job)
                job_log.info("queued: waiting for %d worker slot(s) of the runtime's %d, which other jobs hold",
                             self.slots.granted(wanted), self.slots.capacity)  # fmt: skip
            async with self.slots.acquire(wanted) as granted:
                if granted < wanted:
                    job_log.warning("%d worker slots asked for, the runtime has %d (--batch-slots): running on %d",
                                    wanted, self.slots.capacity, granted)  # fmt: skip
                job.status, job.started_at = JobStatus.RUNNING, _now()
                self._persist(job)
                script = ModelPackage(package).batch_script(job.scoring_script)
                if script == MLFLOW_BATCH_SCRIPT:
                    job_log.info("MLflow model with no scoring script: scoring with %s", script.name)
                plan = JobPlan(python, script, model_dir, work_dir, self._log_dir(job.id))
                record.run = JobRun(job, plan, record.connection_string, job_log, templates=self.templates,
                                    log_cap_bytes=self.config.log_cap_bytes, max_slots=granted,
                                    user=self.user)  # fmt: skip
                await record.run.execute()
        except asyncio.CancelledError:
            if not record.cancel_requested:
                raise  # the runtime is stopping: the next start marks the job Failed
            self._finish(job, JobStatus.CANCELED, "canceled on request", job_log)
        except JobFailed as e:
            self._finish(job, JobStatus.FAILED, str(e), job_log, retryable=e.retryable)
        except (EnvironmentBuildError, ModelPackageError) as e:  # the package is at fault: the same next time
            self._finish(job, JobStatus.FAILED, str(e), job_log, retryable=False)
        except (StorageError, OSError) as e:
            self._finish(job, JobStatus.FAILED, str(e), job_log, retryable=True)
        except Exception as e:  # a defect must not leave the job Running for ever
            log.exception("job %s failed unexpectedly", job.id)
            self._finish(job, JobStatus.FAILED, f"internal error in the runtime: {e!r}", job_log, retryable=True)
        else:
            self._finish(job, JobStatus.COMPLETED, None, job_log)
        finally:
            record.connection_string = None
            shutil.rmtree(work_dir, ignore_errors=True)

    def _finish(
        self, job: Job, status: JobStatus, error: str | None, job_log: JobLog | None = None, *,
        retryable: bool | None = None,
    ) -> None:  # fmt: skip
        job.status, job.error, job.ended_at, job.retryable = status, error, _now(), retryable
        self._persist(job)
        job_log = job_log or JobLog(self._log_dir(job.id) / "job.log", job.id)
        if error:
            job_log.error("%s: %s", status.value, error)
        else:
            job_log.info("%s: %d item(s) scored, %d failed", status.value, job.summary.succeeded, job.summary.failed)

    # ---- helpers ---------------------------------------------------------------------

    def _environment(self, package: Path) -> Path:
        """The job's interpreter: the package's requirements, or, for an MLflow model, what serves it
        (its requirements with mlflow-skinny and pandas: the same environment its replicas run in)."""
        model_package = ModelPackage(package)
        if model_package.is_mlflow:
            return self.environments.ensure_requirements(model_package.serving_requirements())
        return self.environments.ensure(package / "requirements.txt")

    def _record(self, job_id: str) -> JobRecord:
        try:
            return self.records[job_id]
        except KeyError:
            raise NotFound(f"no batch job with id {job_id}") from None

    def _persist(self, job: Job) -> None:
        self.store.put_job(job.id, job.model_dump(mode="json"))

    def _work_dir(self, job_id: str) -> Path:
        return self.config.data_dir / "jobs" / job_id

    def _log_dir(self, job_id: str) -> Path:
        return self.config.data_dir / "logs" / "jobs" / job_id


def _now() -> str:
    return datetime.now(UTC).isoformat()
