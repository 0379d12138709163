"""One batch job's execution: files → mini-batches → worker slots → predictions.csv + summary.json.

Plays Azure ML's parallel run step: ``instance_count × max_concurrency_per_instance`` slots
each keep one worker process, take mini-batches from a shared queue, retry a failed one up
to ``max_retries`` times (a timed-out or crashed worker is replaced), then score the files of a
mini-batch that kept failing one by one, so a bad file fails alone and the others are scored.
Failed files are counted as failed items, with their error; empty files are skipped, with the
reason. Past ``error_threshold`` the job stops. Outputs are assembled in mini-batch order and
published only once every mini-batch is done: nothing is half-visible as scored.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from deployflow.platform.batch import PREDICTIONS_FILE, SUMMARY_FILE
from deployflow.runtime.child import CHILD_SCRIPTS
from deployflow.runtime.isolation import ChildUser, hand_over
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
        with open(os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600), "a") as f:
            f.write(f"{stamp} {logging.getLevelName(level)} {message % args if args else message}\n")


class JobFailed(RuntimeError):
    """The job cannot complete; the message is the job's error. ``retryable`` is False when running
    it again would fail the same way (its data or its code), so the flow must not retry it."""

    def __init__(self, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable


EMPTY_FILE = "empty file (0 bytes): nothing to score"


@dataclass(frozen=True)
class MiniBatch:
    """Files scored together; ``part`` numbers the files of a failed mini-batch, scored one by one."""

    index: int
    files: list[str]
    part: int | None = None

    @property
    def output_name(self) -> str:
        return f"{self.index:06d}.csv" if self.part is None else f"{self.index:06d}.{self.part:06d}.csv"


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
        user: ChildUser | None = None,
    ) -> None:
        self.job = job
        self.user = user
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
            if self.user is not None:
                await asyncio.to_thread(self._hand_over_package)
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
        await asyncio.to_thread(self._publish)

    async def _plan_batches(self) -> list[MiniBatch]:
        spec, summary = self.job, self.job.summary
        names = await asyncio.to_thread(list_files, self.input, spec.input.files, self.connection_string)
        if not names:
            raise JobFailed(f"no input files under {spec.input.uri}; check the folder or blob prefix", retryable=True)
        batches = [
            MiniBatch(i, names[start : start + spec.mini_batch_size])
            for i, start in enumerate(range(0, len(names), spec.mini_batch_size))
        ]
        summary.items, summary.mini_batches, summary.input_files = len(names), len(batches), names
        for batch in batches:
            self.queue.put_nowait(batch)
        self.results.mkdir(parents=True, exist_ok=True)
        if self.user is not None:
            hand_over(self.results, self.user)
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
        """Score a mini-batch; when every try fails, score its files one by one, so one bad file fails alone.

        Empty files are skipped (recorded with the reason). A file that fails alone counts as a failed item.
        """
        summary = self.job.summary
        paths = await asyncio.to_thread(self._fetch, batch)
        files, kept = [], []
        for name, path in zip(batch.files, paths, strict=True):
            if path.stat().st_size == 0:
                summary.skipped_files[name] = EMPTY_FILE
                self.job_log.warning("%s skipped: %s", name, EMPTY_FILE)
            else:
                files.append(name)
                kept.append(path)
        if not files:
            return
        retries = self.job.max_retries if batch.part is None else 0  # a file alone had its tries in the batch
        attempt = await self._attempts(MiniBatch(batch.index, files, batch.part), kept, slot, retries)
        if attempt.ok:
            return
        if len(files) > 1:
            self.job_log.info("mini-batch %d failed; scoring its %d files one by one", batch.index, len(files))
            for part, (name, path) in enumerate(zip(files, kept, strict=True)):
                alone = await self._attempts(MiniBatch(batch.index, [name], part), [path], slot, 0)
                if not alone.ok:
                    self._failed(name, alone.error)
            return
        self._failed(files[0], attempt.error)

    async def _attempts(self, batch: MiniBatch, paths: list[Path], slot: int, retries: int) -> Attempt:
        """Run a mini-batch up to ``1 + retries`` times; its output stays only if one run succeeds."""
        spec, summary = self.job, self.job.summary
        output = self.results / batch.output_name
        attempt = Attempt(ok=False)
        for number in range(1 + retries):
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
                return attempt
            self.job_log.warning(
                "mini-batch %d (%s) attempt %d of %d failed: %s (traceback in the worker's log)",
                batch.index, ", ".join(batch.files), number + 1, 1 + retries, _last_line(attempt.error),
            )  # fmt: skip
            if attempt.broken:
                await worker.kill()
        output.unlink(missing_ok=True)
        return attempt

    def _failed(self, name: str, error: str | None) -> None:
        spec, summary = self.job, self.job.summary
        summary.failed += 1
        summary.failed_files.append(name)
        summary.file_errors[name] = _last_line(error)
        self.errors.append(f"{name}: {_last_line(error)}")
        if spec.error_threshold != -1 and summary.failed > spec.error_threshold:
            raise JobFailed(
                f"{summary.failed} item(s) failed, more than error_threshold={spec.error_threshold}; "
                f"first error: {self.errors[0]}. See the job's logs for the tracebacks"
            )

    def _hand_over_package(self) -> None:
        """Model code runs as the child user: it gets a copy of the package in the job's folder, which it owns."""
        assert self.user is not None
        package = self.plan.work_dir / "package"
        shutil.rmtree(package, ignore_errors=True)
        if self.plan.script.parent == CHILD_SCRIPTS:  # the platform's MLflow script: it reads only the model
            package.mkdir(parents=True)
            shutil.copyfile(self.plan.script, package / self.plan.script.name)
        else:
            shutil.copytree(self.plan.script.parent, package, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        hand_over(self.plan.work_dir, self.user)
        self.plan = dataclasses.replace(self.plan, script=package / self.plan.script.name)

    def _fetch(self, batch: MiniBatch) -> list[Path]:
        """The mini-batch's files on disk; copies the child user owns when model code runs as one."""
        dest = self.plan.work_dir / "inputs" / str(batch.index)
        paths = fetch(self.input, batch.files, dest, self.connection_string, copy=self.user is not None)
        if self.user is not None:
            # ``inputs/`` itself too: made here (for blobs, after the job's folder was handed over), it would
            # be the runtime's owner-only folder, and the worker could not pass through it to its files.
            os.lchown(dest.parent, self.user.uid, self.user.gid)
            hand_over(dest, self.user)
        return paths

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
            log_path=self.plan.log_dir / f"worker-{slot}.log", templates=self.templates, user=self.user,
        )  # fmt: skip

    def _publish(self) -> None:
        """Assemble predictions in mini-batch order, then publish predictions first and summary last."""
        staging = self.plan.work_dir / "output"
        staging.mkdir(parents=True, exist_ok=True)
        with open(staging / PREDICTIONS_FILE, "wb") as out:
            for part in sorted(self.results.glob("*.csv")):  # mini-batch order; a split one's files in order
                out.write(part.read_bytes())
        summary = {"job_id": self.job.id, **self.job.summary.model_dump(), "errors": self.errors}
        (staging / SUMMARY_FILE).write_text(json.dumps(summary, indent=2) + "\n")
        files = {PREDICTIONS_FILE: staging / PREDICTIONS_FILE, SUMMARY_FILE: staging / SUMMARY_FILE}
        publish(self.output, files, self.connection_string)


def _last_line(error: str | None) -> str:
    lines = [line for line in (error or "").strip().splitlines() if line.strip()]
    return lines[-1] if lines else "unknown error"
