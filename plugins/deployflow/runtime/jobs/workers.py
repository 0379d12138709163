"""Batch worker processes: ``batch_worker.py`` in the model's environment, one per concurrency slot.

A worker is forked from its environment's warm template (templates.py) when there is one,
else started from an argument list with a minimal environment. Either way it runs in its own
process group and dies with the runtime (``PR_SET_PDEATHSIG``, through the template for a
forked one), as replicas do. The runtime reads its answers without blocking the event loop,
and kills the whole group on a timeout, a cancel or the job's end, then waits until it is
gone, so no process outlives its job.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from deployflow.runtime.isolation import ChildUser, minimal_environment
from deployflow.runtime.jobs.templates import WORKER_SCRIPT, WorkerTemplates
from deployflow.runtime.processes import dying_with_runtime, log_descriptor, open_log

log = logging.getLogger(__name__)

WORKER_MARKER_ENV = "DEPLOYFLOW_BATCH_JOB"
MESSAGE_LIMIT = 1 << 20
STOP_GRACE_S = 2.0
REAP_TIMEOUT_S = 5.0


class WorkerInitError(RuntimeError):
    """The scoring script's import or ``init()`` failed, or init did not finish in time."""


@dataclass(frozen=True)
class Attempt:
    """How one run of a mini-batch went; ``broken`` means the process must be replaced."""

    ok: bool
    rows: int = 0
    error: str | None = None
    broken: bool = False


class WorkerProcess(Protocol):
    """What a worker needs of its process, spawned (``subprocess.Popen``) or forked (``ForkedProcess``)."""

    pid: int

    def poll(self) -> int | None: ...


class BatchWorker:
    """One worker process: started, made ready (``init()``), fed mini-batches, then stopped or killed."""

    def __init__(self, job_id: str, slot: int, *, python: Path, script: Path, environment: dict[str, str],
                 log_path: Path, templates: WorkerTemplates | None = None,
                 user: ChildUser | None = None) -> None:  # fmt: skip
        self.job_id = job_id
        self.slot = slot
        self.python = python
        self.script = script
        self.user = user
        self.environment = minimal_environment(environment, user=user)
        self.log_path = log_path
        self.templates = templates
        self.process: WorkerProcess | None = None
        self.forked = False
        self._stdin: BinaryIO | None = None
        self._reader: asyncio.StreamReader | None = None
        self._transport: asyncio.BaseTransport | None = None
        self._killed = False

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    async def start(self, init_timeout_s: float) -> None:
        """Fork from the template, or spawn on the event loop's thread (the death signal follows it); await init()."""
        stdout = await self._fork() if self.templates is not None else None
        if stdout is None:
            stdout = self._spawn()
        loop = asyncio.get_running_loop()
        self._reader = asyncio.StreamReader(limit=MESSAGE_LIMIT)
        self._transport, _ = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(self._reader), stdout)
        assert self.process is not None
        how = "forked from its template" if self.forked else "started"
        log.info("job %s: worker %d %s (pid %s)", self.job_id, self.slot, how, self.process.pid)
        try:
            message = await asyncio.wait_for(self._receive(), init_timeout_s)
        except TimeoutError:
            await self.kill()
            raise WorkerInitError(f"init() did not finish within {init_timeout_s:.0f}s") from None
        if message.get("event") != "ready":
            await self.kill()
            raise WorkerInitError(f"init() of {self.script.name} failed:\n{message.get('error', '(no error text)')}")
        if self.templates is not None and message.get("modules"):
            self.templates.learn(self.python, self.environment, list(message["modules"]))

    async def _fork(self) -> BinaryIO | None:
        """A worker from the warm template, talking over fresh pipes; None when there is no template to fork."""
        assert self.templates is not None
        stdin_r, stdin_w = os.pipe()
        stdout_r, stdout_w = os.pipe()
        log_fd = log_descriptor(self.log_path)
        try:
            process = await self.templates.fork(
                self.python, self.environment, script=self.script, job_id=self.job_id, cwd=self.script.parent,
                stdio=(stdin_r, stdout_w, log_fd),
            )  # fmt: skip
        finally:
            for fd in (stdin_r, stdout_w, log_fd):  # the template has its own copies now
                os.close(fd)
        if process is None:
            os.close(stdin_w)
            os.close(stdout_r)
            return None
        self.process, self.forked = process, True
        self._stdin = os.fdopen(stdin_w, "wb", buffering=0)
        return os.fdopen(stdout_r, "rb", buffering=0)

    def _spawn(self) -> BinaryIO:
        with open_log(self.log_path) as log_file:
            process = subprocess.Popen(
                [str(self.python), "-P", str(WORKER_SCRIPT), str(self.script), self.job_id],
                env={**self.environment, WORKER_MARKER_ENV: self.job_id},
                cwd=self.script.parent,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log_file,
                start_new_session=True,
                preexec_fn=dying_with_runtime(user=self.user),  # noqa: PLW1509 - user and death signal, as replicas
            )
        assert process.stdin is not None and process.stdout is not None
        self.process, self._stdin = process, process.stdin
        return process.stdout

    async def run(self, mini_batch: list[Path], output: Path, timeout_s: float) -> Attempt:
        """Send one mini-batch and wait for the answer; kill the worker when it overruns ``timeout_s``."""
        assert self._stdin is not None
        request = {"mini_batch": [str(p) for p in mini_batch], "output": str(output)}
        try:
            self._stdin.write((json.dumps(request) + "\n").encode())
            self._stdin.flush()
        except OSError:
            return Attempt(ok=False, error=await self._exit_text(), broken=True)
        try:
            message = await asyncio.wait_for(self._receive(), timeout_s)
        except TimeoutError:
            await self.kill()
            return Attempt(ok=False, error=f"run() timed out after {timeout_s:g}s; the worker was killed", broken=True)
        if message.get("event") == "done":
            return Attempt(ok=True, rows=int(message.get("rows", 0)))
        if message.get("event") == "failed":
            return Attempt(ok=False, error=message.get("error"))
        return Attempt(ok=False, error=await self._exit_text(), broken=True)

    async def _receive(self) -> dict[str, Any]:
        """The next protocol message, or ``{"event": "exited"}`` when the worker closed its end."""
        assert self._reader is not None
        line = await self._reader.readline()
        if not line:
            return {"event": "exited"}
        return json.loads(line)

    async def _exit_text(self) -> str:
        code = await self._wait(REAP_TIMEOUT_S)
        how = f"with code {code}" if code is not None else "(exit code unknown)"
        return f"the worker exited {how}; see the job's logs"

    async def stop(self) -> None:
        """Close its input so it runs ``shutdown()`` and exits; kill the group if it lingers."""
        if self._stdin is not None and self.alive:
            try:
                self._stdin.close()
            except OSError:
                pass
            loop = asyncio.get_running_loop()
            deadline = loop.time() + STOP_GRACE_S
            while self.alive and loop.time() < deadline:
                await asyncio.sleep(0.02)
        await self.kill()

    async def kill(self) -> None:
        """SIGKILL the worker's process group and wait until it has been reaped."""
        process = self.process
        if process is None or self._killed:
            return
        self._killed = True
        try:
            os.killpg(process.pid, signal.SIGKILL)  # the group: whatever the script started goes too
        except ProcessLookupError:
            pass
        try:
            await self._wait(REAP_TIMEOUT_S)
        finally:
            if self._transport is not None:
                self._transport.close()
                self._transport = None
            if self._stdin is not None:
                try:
                    self._stdin.close()
                except OSError:
                    pass

    async def _wait(self, timeout_s: float) -> int | None:
        process = self.process
        if process is None:
            return None
        if isinstance(process, subprocess.Popen):
            try:
                return await asyncio.to_thread(process.wait, timeout_s)
            except subprocess.TimeoutExpired:
                return None
        return await process.wait(timeout_s)
