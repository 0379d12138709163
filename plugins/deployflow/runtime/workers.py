"""Batch worker processes: ``batch_worker.py`` in the model's environment, one per concurrency slot.

A worker is started from an argument list with a minimal environment, in its own process
group, and dies with the runtime (``PR_SET_PDEATHSIG``), as replicas do. The runtime reads
its answers without blocking the event loop, and kills the whole group on a timeout, a
cancel or the job's end, so no process outlives its job.
"""

from __future__ import annotations

import asyncio
import ctypes
import json
import logging
import os
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deployflow.runtime.replicas import PR_SET_PDEATHSIG

log = logging.getLogger(__name__)

WORKER_SCRIPT = Path(__file__).with_name("batch_worker.py")
WORKER_MARKER_ENV = "DEPLOYFLOW_BATCH_JOB"
MESSAGE_LIMIT = 1 << 20
STOP_GRACE_S = 2.0

_libc = ctypes.CDLL(None, use_errno=True)


class WorkerInitError(RuntimeError):
    """The scoring script's import or ``init()`` failed, or init did not finish in time."""


@dataclass(frozen=True)
class Attempt:
    """How one run of a mini-batch went; ``broken`` means the process must be replaced."""

    ok: bool
    rows: int = 0
    error: str | None = None
    broken: bool = False


class BatchWorker:
    """One worker process: started, made ready (``init()``), fed mini-batches, then stopped or killed."""

    def __init__(self, job_id: str, slot: int, *, python: Path, script: Path, environment: dict[str, str],
                 log_path: Path) -> None:  # fmt: skip
        self.job_id = job_id
        self.slot = slot
        self.python = python
        self.script = script
        self.environment = environment
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None
        self._reader: asyncio.StreamReader | None = None
        self._transport: asyncio.BaseTransport | None = None
        self._killed = False

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    async def start(self, init_timeout_s: float) -> None:
        """Spawn on the event loop's thread (the death signal follows the spawning thread) and wait for init()."""
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": os.environ.get("HOME", "/tmp"),
            "LANG": "C.UTF-8",
            "PYTHONUNBUFFERED": "1",
            WORKER_MARKER_ENV: self.job_id,
            **self.environment,
        }
        parent = os.getpid()

        def in_child() -> None:
            _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
            if os.getppid() != parent:
                os._exit(1)

        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log_file:
            self.process = subprocess.Popen(
                [str(self.python), "-P", str(WORKER_SCRIPT), str(self.script), self.job_id],
                env=env,
                cwd=self.script.parent,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log_file,
                start_new_session=True,
                preexec_fn=in_child,  # noqa: PLW1509 - sets the death signal, as replicas do
            )
        loop = asyncio.get_running_loop()
        self._reader = asyncio.StreamReader(limit=MESSAGE_LIMIT)
        self._transport, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(self._reader), self.process.stdout
        )
        log.info("job %s: worker %d started (pid %s)", self.job_id, self.slot, self.process.pid)
        try:
            message = await asyncio.wait_for(self._receive(), init_timeout_s)
        except TimeoutError:
            self.kill()
            raise WorkerInitError(f"init() did not finish within {init_timeout_s:.0f}s") from None
        if message.get("event") != "ready":
            self.kill()
            raise WorkerInitError(f"init() of {self.script.name} failed:\n{message.get('error', '(no error text)')}")

    async def run(self, mini_batch: list[Path], output: Path, timeout_s: float) -> Attempt:
        """Send one mini-batch and wait for the answer; kill the worker when it overruns ``timeout_s``."""
        assert self.process is not None and self.process.stdin is not None
        request = {"mini_batch": [str(p) for p in mini_batch], "output": str(output)}
        try:
            self.process.stdin.write((json.dumps(request) + "\n").encode())
            self.process.stdin.flush()
        except OSError:
            return Attempt(ok=False, error=self._exit_text(), broken=True)
        try:
            message = await asyncio.wait_for(self._receive(), timeout_s)
        except TimeoutError:
            self.kill()
            return Attempt(ok=False, error=f"run() timed out after {timeout_s:g}s; the worker was killed", broken=True)
        if message.get("event") == "done":
            return Attempt(ok=True, rows=int(message.get("rows", 0)))
        if message.get("event") == "failed":
            return Attempt(ok=False, error=message.get("error"))
        return Attempt(ok=False, error=self._exit_text(), broken=True)

    async def _receive(self) -> dict[str, Any]:
        """The next protocol message, or ``{"event": "exited"}`` when the worker closed its end."""
        assert self._reader is not None
        line = await self._reader.readline()
        if not line:
            return {"event": "exited"}
        return json.loads(line)

    def _exit_text(self) -> str:
        code = self.process.wait() if self.process else None
        return f"the worker exited with code {code}; see the job's logs"

    async def stop(self) -> None:
        """Close its input so it runs ``shutdown()`` and exits; kill the group if it lingers."""
        if self.process is not None and self.process.stdin is not None and self.alive:
            try:
                self.process.stdin.close()
            except OSError:
                pass
            loop = asyncio.get_running_loop()
            deadline = loop.time() + STOP_GRACE_S
            while self.alive and loop.time() < deadline:
                await asyncio.sleep(0.02)
        self.kill()

    def kill(self) -> None:
        """SIGKILL the worker's process group and reap it."""
        process = self.process
        if process is None or self._killed:
            return
        self._killed = True
        try:
            os.killpg(process.pid, signal.SIGKILL)  # the group: whatever the script started goes too
        except ProcessLookupError:
            pass
        process.wait()
        if self._transport is not None:
            self._transport.close()
            self._transport = None
        if process.stdin is not None:
            try:
                process.stdin.close()
            except OSError:
                pass
