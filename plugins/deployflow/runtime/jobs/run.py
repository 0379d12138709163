"""One batch job's execution: files → mini-batches → worker slots → predictions.csv + summary.json.

Plays Azure ML's parallel run step: ``instance_count × max_concurrency_per_instance`` slots
each keep one worker process, take mini-batches from a shared queue, retry a failed one up
to ``max_retries`` times (a timed-out or crashed worker is replaced), and count the files of
a mini-batch that kept failing as failed items. Past ``error_threshold`` the job stops.
Outputs are assembled in mini-batch order and published only once every mini-batch is done.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

from deployflow.platform.batch import PREDICTIONS_FILE, SUMMARY_FILE
from deployflow.runtime.jobs.blob_io import fetch, list_files, parse_location, publish
from deployflow.runtime.jobs.templates import WorkerTemplates
from deployflow.runtime.jobs.workers import Attempt, BatchWorker, WorkerInitError
from deployflow.runtime.processes import rotate_log
from deployflow.runtime.schemas import Job

log = logging.getLogger(__name__)

INIT_TIMEOUT_S = 600.0
LOG_CAP_TICK_S = 1.0


class JobLog:
    """A job's own log file (timestamped lines), echoed to the runtime's log."""

    def __init__(self, path: Path, job_id: str) -> None:
        self.path = path
        self.job_id = job_id
        path.parent.mkdir(parents=True, exist_ok=True)

    def info(self, message: str, *args: object) -> None:
        self._write(logging.INFO, message, args)

    def warning(self, message: str, *args: object) -> None:
        self._write(logging.WARNING, message, args)

    def error(self, message: str, *args: object) -> None:
        self._write(logging.ERROR, message, args)

    def _write(self, level: int, message: str, args: tuple[object, ...]) -> None:
        log.log(level, "job %s: " + message, self.job_id, *args)
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
        with open(self.path, "a") as f:
            f.write(f"{stamp} {logging.getLevelName(level)} {message % args if args else message}\n")


class JobFailed(RuntimeError):
    """The job cannot complete; the message is the job's error."""


@dataclass(frozen=True)
class MiniBatch:
    index: int
    files: list[str]


@dataclass(frozen=True)
class JobPlan:
    """What the runtime resolved for the job: interpreter, script, model folder, places on disk."""

    python: Path
    script: Path
    model_dir: Path
    work_dir: Path
    log_dir: Path


class JobRun:
    """Runs one job to completion; raises JobFailed, or CancelledError when canceled."""

    def __init__(
        self,
        job: Job,
        plan: JobPlan,
        connection_string: str | None,
        job_log: JobLog,
        *,
        templates: WorkerTemplates,
        log_cap_bytes: int,
        max_slots: int,
    ) -> None:
        self.job = job
        self.max_slots = max_slots
        self.plan = plan
        self.templates = templates
        self.log_cap_bytes = log_cap_bytes
        self.connection_string = connection_string
        self.job_log = job_log
        self.input = parse_location(job.input.uri)
        self.output = parse_location(job.output_uri)
        self.queue: asyncio.Queue[MiniBatch] = asyncio.Queue()
        self.results = plan.work_dir / "results"
        self.errors: list[str] = []
        self.workers: dict[int, BatchWorker] = {}
        self.publishing = False

    async def execute(self) -> None:
        started = time.monotonic()
        try:
            batches = await self._plan_batches()
            slots = min(self.max_slots, len(batches))
            self.job_log.info("%d mini-batch(es) on %d worker(s)", len(batches), slots)
            capping = asyncio.create_task(self._cap_worker_logs())
            try:
                async with asyncio.TaskGroup() as group:
                    for slot in range(slots):
                        group.create_task(self._slot(slot))
            finally:
                capping.cancel()
        except ExceptionGroup as group:
            raise group.exceptions[0] from None
        finally:
            self.job.summary.duration_s = round(time.monotonic() - started, 3)
        self.publishing = True
        await asyncio.to_thread(self._publish, batches)

    async def _plan_batches(self) -> list[MiniBatch]:
        spec, summary = self.job, self.job.summary
        names = await asyncio.to_thread(list_files, self.input, spec.input.files, self.connection_string)
        if not names:
            raise JobFailed(f"no input files under {spec.input.uri}; check the folder or blob prefix")
        batches = [
            MiniBatch(i, names[start : start + spec.mini_batch_size])
            for i, start in enumerate(range(0, len(names), spec.mini_batch_size))
        ]
        summary.items, summary.mini_batches, summary.input_files = len(names), len(batches), names
        for batch in batches:
            self.queue.put_nowait(batch)
        self.results.mkdir(parents=True, exist_ok=True)
        self.job_log.info("%d input file(s) under %s", len(names), spec.input.uri)
        return batches

    async def _slot(self, slot: int) -> None:
        """Keep one worker; take mini-batches until the queue is empty; never leave the worker behind."""
        try:
            while not self.queue.empty():
                await self._score(self.queue.get_nowait(), slot)
        except BaseException:
            worker = self.workers.pop(slot, None)
            if worker is not None:
                await worker.kill()
            raise
        worker = self.workers.pop(slot, None)
        if worker is not None:
            await worker.stop()

    async def _score(self, batch: MiniBatch, slot: int) -> None:
        """Try a mini-batch up to 1 + max_retries times; count its files as failed if every try fails."""
        spec, summary = self.job, self.job.summary
        paths = await asyncio.to_thread(
            fetch, self.input, batch.files, self.plan.work_dir / "inputs" / str(batch.index), self.connection_string
        )
        output = self.results / f"{batch.index:06d}.csv"
        attempt = Attempt(ok=False)
        for number in range(1 + spec.max_retries):
            if number:
                summary.retries += 1
            worker = self.workers.get(slot)
            if worker is None or not worker.alive:
                worker = self.workers[slot] = self._new_worker(slot)
                try:
                    await worker.start(max(INIT_TIMEOUT_S, spec.timeout_s))
                except WorkerInitError as e:
                    raise JobFailed(f"worker {slot}: {e}") from e
            attempt = await worker.run(paths, output, spec.timeout_s)
            if attempt.ok:
                summary.succeeded += len(batch.files)
                summary.rows += attempt.rows
                return
            self.job_log.warning(
                "mini-batch %d (%s) attempt %d of %d failed: %s (traceback in the worker's log)",
                batch.index, ", ".join(batch.files), number + 1, 1 + spec.max_retries, _last_line(attempt.error),
            )  # fmt: skip
            if attempt.broken:
                await worker.kill()
        output.unlink(missing_ok=True)
        summary.failed += len(batch.files)
        summary.failed_files.extend(batch.files)
        self.errors.append(f"mini-batch {batch.index} ({', '.join(batch.files)}): {_last_line(attempt.error)}")
        if spec.error_threshold != -1 and summary.failed > spec.error_threshold:
            raise JobFailed(
                f"{summary.failed} item(s) failed, more than error_threshold={spec.error_threshold}; "
                f"first error: {self.errors[0]}. See the job's logs for the tracebacks"
            )

    async def _cap_worker_logs(self) -> None:
        """Keep each worker's log near the runtime's cap, as replica logs are: a chatty script cannot fill the disk."""
        while True:
            await asyncio.sleep(LOG_CAP_TICK_S)
            for path in self.plan.log_dir.glob("worker-*.log"):
                rotate_log(path, self.log_cap_bytes)

    def _new_worker(self, slot: int) -> BatchWorker:
        spec = self.job
        environment = {
            "AZUREML_MODEL_DIR": str(self.plan.model_dir),
            "OMP_NUM_THREADS": "1",
            "OPENBLAS_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1",
            **spec.environment_variables,
        }
        return BatchWorker(
            spec.id, slot, python=self.plan.python, script=self.plan.script, environment=environment,
            log_path=self.plan.log_dir / f"worker-{slot}.log", templates=self.templates,
        )  # fmt: skip

    def _publish(self, batches: list[MiniBatch]) -> None:
        """Assemble predictions in mini-batch order, then publish predictions first and summary last."""
        staging = self.plan.work_dir / "output"
        staging.mkdir(parents=True, exist_ok=True)
        with open(staging / PREDICTIONS_FILE, "wb") as out:
            for batch in batches:
                part = self.results / f"{batch.index:06d}.csv"
                if part.exists():
                    out.write(part.read_bytes())
        summary = {"job_id": self.job.id, **self.job.summary.model_dump(), "errors": self.errors}
        (staging / SUMMARY_FILE).write_text(json.dumps(summary, indent=2) + "\n")
        files = {PREDICTIONS_FILE: staging / PREDICTIONS_FILE, SUMMARY_FILE: staging / SUMMARY_FILE}
        publish(self.output, files, self.connection_string)


def _last_line(error: str | None) -> str:
    lines = [line for line in (error or "").strip().splitlines() if line.strip()]
    return lines[-1] if lines else "unknown error"
