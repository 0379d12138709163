"""Warm worker templates: one per model environment, kept while in use and stopped when idle.

A template (``batch_template.py``) runs in the model's environment with the workers' exact
environment variables, so what it imports is what a fresh worker would have imported. It
learns what to import from the workers: each reports, once ready, the library modules its
script and ``init()`` loaded; the template imports them when it has no workers running (so a
job is never slowed by it), and the next job's workers start from there in milliseconds
instead of about a second. A template unused for ``idle_s`` seconds is stopped, the local
counterpart of a compute cluster scaling its idle nodes down.

Anything that goes wrong with a template (it cannot start, it runs threads, a fork fails)
makes the caller spawn a fresh worker instead, with a log line saying why.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import signal
import socket
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deployflow.runtime.child import CHILD_SCRIPTS
from deployflow.runtime.isolation import ChildUser
from deployflow.runtime.processes import dying_with_runtime, open_log

log = logging.getLogger(__name__)

TEMPLATE_SCRIPT = CHILD_SCRIPTS / "batch_template.py"
WORKER_SCRIPT = CHILD_SCRIPTS / "batch_worker.py"
START_TIMEOUT_S = 30.0
PRELOAD_TIMEOUT_S = 300.0
REPLY_TIMEOUT_S = 10.0
# Live templates at most (each holds its environment's imports: 122 MB resident for the sample model): past it,
# the least recently used idle one is stopped, and if none is idle the worker starts fresh.
MAX_TEMPLATES = 4
MAX_MESSAGE = 1 << 20


class TemplateError(RuntimeError):
    """The template cannot fork workers; the caller spawns a fresh process instead."""


@dataclass(frozen=True)
class TemplateKey:
    """What a template's imports depend on: the interpreter and every environment variable."""

    python: Path
    environment: tuple[tuple[str, str], ...]

    @classmethod
    def of(cls, python: Path, environment: Mapping[str, str]) -> TemplateKey:
        return cls(python, tuple(sorted(environment.items())))


class ForkedProcess:
    """A worker forked by a template: its pid, and its exit code once the template has reaped it."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self._exited: asyncio.Future[int | None] = asyncio.get_running_loop().create_future()

    @property
    def returncode(self) -> int | None:
        return self._exited.result() if self._exited.done() else None

    def poll(self) -> int | None:
        return self.returncode

    async def wait(self, timeout_s: float) -> int | None:
        """The exit code, or None if it is unknown (the template went away) or not in by ``timeout_s``."""
        try:
            return await asyncio.wait_for(asyncio.shield(self._exited), timeout_s)
        except TimeoutError:
            return None

    def exited(self, code: int | None) -> None:
        if not self._exited.done():
            self._exited.set_result(code)


class WorkerTemplate:
    """One template process and the workers it forked."""

    def __init__(
        self, key: TemplateKey, log_path: Path, on_idle: Callable[[WorkerTemplate], None], user: ChildUser | None
    ) -> None:
        self.key = key
        self.log_path = log_path
        self.user = user
        self.on_idle = on_idle
        self.process: subprocess.Popen[bytes] | None = None
        self.children: dict[int, ForkedProcess] = {}
        self.preloaded: set[str] = set()
        self.last_used = 0.0
        self._socket: socket.socket | None = None
        self._replies: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.preloading = False  # set by the registry while a preload is queued or running
        self.ready = False  # started and answering; until then the sweeper leaves it alone
        self._forking = 0  # forks asked for and not answered yet: in use, though no child is known yet
        self._lock = asyncio.Lock()
        self._closed = False

    @property
    def busy(self) -> bool:
        return self._forking > 0 or any(child.returncode is None for child in self.children.values())

    @property
    def starting(self) -> bool:
        return not self.ready and not self._closed

    @property
    def alive(self) -> bool:
        return not self._closed and self.process is not None and self.process.poll() is None

    async def start(self) -> None:
        """Spawn on the event loop's thread (the death signal follows the spawning thread) and wait for it."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            with open_log(self.log_path) as log_file:
                self.process = subprocess.Popen(
                    [str(self.key.python), "-P", str(TEMPLATE_SCRIPT), str(WORKER_SCRIPT), str(theirs.fileno())],
                    env=dict(self.key.environment),
                    stdin=subprocess.DEVNULL,
                    stdout=log_file,
                    stderr=log_file,
                    pass_fds=[theirs.fileno()],
                    start_new_session=True,
                    preexec_fn=dying_with_runtime(user=self.user),  # noqa: PLW1509 - user and death signal, as workers
                )
        except OSError as e:
            ours.close()
            raise TemplateError(f"could not start the worker template: {e}") from e
        finally:
            theirs.close()
        ours.setblocking(False)
        self._socket = ours
        asyncio.get_running_loop().add_reader(ours.fileno(), self._on_message)
        ready = await self._reply(START_TIMEOUT_S)
        if ready.get("event") != "ready":
            self.close()
            raise TemplateError(f"the worker template did not start; see {self.log_path}")
        if ready.get("threads", 1) > 1:
            self.close()
            raise TemplateError(f"the worker template runs {ready['threads']} threads at start and cannot fork safely")
        self.ready = True
        log.info("worker template %s started (pid %s)", self.log_path.stem, self.process.pid)

    async def preload(self, modules: list[str]) -> None:
        """Import these modules in the template; one that leaves it running threads makes it unfit to fork."""
        wanted = [name for name in modules if name not in self.preloaded]
        if not wanted:
            return
        async with self._lock:
            self._send({"op": "preload", "modules": wanted})
            answer = await self._reply(PRELOAD_TIMEOUT_S)
        self.preloaded.update(wanted)
        if answer.get("threads", 1) > 1:
            self.close()
            raise TemplateError(
                f"the worker template runs {answer['threads']} threads after importing the script's libraries, "
                "and a process with threads cannot fork safely; workers start fresh instead"
            )
        log.info("worker template %s imported %d module(s) (%d failed)", self.log_path.stem,
                 answer.get("imported", 0), answer.get("failed", 0))  # fmt: skip

    async def fork(self, script: Path, job_id: str, cwd: Path, stdio: tuple[int, int, int]) -> ForkedProcess:
        """A new worker with these fds as its stdin, stdout and stderr (the caller keeps its own copies)."""
        self._forking += 1
        try:
            async with self._lock:
                self._send({"op": "fork", "script": str(script), "job_id": job_id, "cwd": str(cwd)}, fds=list(stdio))
                answer = await self._reply(REPLY_TIMEOUT_S)
        finally:
            self._forking -= 1
        if answer.get("event") != "forked":
            raise TemplateError(f"the worker template could not fork: {answer.get('error', answer)}")
        child = self.children[answer["pid"]] = ForkedProcess(answer["pid"])
        self.last_used = asyncio.get_running_loop().time()
        return child

    def close(self) -> None:
        """Close the socket (the template kills its workers and exits) and kill its group to be sure."""
        if self._closed:
            return
        self._closed = True
        if self._socket is not None:
            asyncio.get_running_loop().remove_reader(self._socket.fileno())
            self._socket.close()
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        for child in self.children.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.pid, signal.SIGKILL)
            child.exited(None)
        self._replies.put_nowait({"event": "closed"})

    # ---- the socket ------------------------------------------------------------------

    def _send(self, message: dict[str, Any], fds: list[int] | None = None) -> None:
        if not self.alive or self._socket is None:
            raise TemplateError("the worker template is not running")
        try:
            socket.send_fds(self._socket, [json.dumps(message).encode()], fds or [])
        except OSError as e:
            self.close()
            raise TemplateError(f"the worker template stopped answering: {e}") from e

    async def _reply(self, timeout_s: float) -> dict[str, Any]:
        try:
            return await asyncio.wait_for(self._replies.get(), timeout_s)
        except TimeoutError:
            self.close()
            raise TemplateError(f"the worker template did not answer within {timeout_s:.0f}s") from None

    def _on_message(self) -> None:
        assert self._socket is not None
        while True:
            try:
                data = self._socket.recv(MAX_MESSAGE)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:  # the template is gone, and its workers with it (their death signal)
                log.warning("worker template %s exited; see %s", self.log_path.stem, self.log_path)
                self.close()
                return
            message = json.loads(data)
            if message.get("event") == "exited":
                child = self.children.pop(message["pid"], None)
                if child is not None:
                    child.exited(message["code"])
                if not self.busy:
                    self.on_idle(self)
            else:
                self._replies.put_nowait(message)


class WorkerTemplates:
    """The templates of the runtime, by key; what workers reported loading; the idle scale-down."""

    def __init__(
        self, log_dir: Path, idle_s: float, max_templates: int = MAX_TEMPLATES, user: ChildUser | None = None
    ) -> None:
        self.log_dir = log_dir
        self.user = user
        self.idle_s = idle_s
        self.max_templates = max_templates
        self.templates: dict[TemplateKey, WorkerTemplate] = {}
        self.learned: dict[TemplateKey, list[str]] = {}
        self.unfit: set[TemplateKey] = set()
        self._sweeper: asyncio.Task[None] | None = None
        self._preloads: set[asyncio.Task[None]] = set()

    @property
    def enabled(self) -> bool:
        return self.idle_s > 0

    async def fork(
        self, python: Path, environment: Mapping[str, str], *, script: Path, job_id: str, cwd: Path,
        stdio: tuple[int, int, int],
    ) -> ForkedProcess | None:  # fmt: skip
        """A worker forked from this environment's template, or None: then the caller spawns one."""
        key = TemplateKey.of(python, environment)
        if not self.enabled or key in self.unfit:
            return None
        template = self.templates.get(key)
        try:
            if template is None or not template.alive:
                self.templates.pop(key, None)
                if not self._make_room():
                    log.info("job %s: %d worker templates are in use; starting a fresh worker process",
                             job_id, len(self.templates))  # fmt: skip
                    return None
                template = self.templates[key] = WorkerTemplate(
                    key, self._log_path(key), self._preload_learned, self.user
                )
                try:
                    await template.start()
                except TemplateError:
                    self.unfit.add(key)  # it would fail the same way for every worker: stop trying
                    raise
            return await template.fork(script, job_id, cwd, stdio)
        except TemplateError as e:
            log.warning("job %s: %s; starting a fresh worker process", job_id, e)
            self.templates.pop(key, None)
            return None
        finally:
            self._ensure_sweeper()

    def learn(self, python: Path, environment: Mapping[str, str], modules: list[str]) -> None:
        """Remember the modules a ready worker loaded; its template imports them once it is idle."""
        key = TemplateKey.of(python, environment)
        known = self.learned.setdefault(key, [])
        seen = set(known)
        known.extend(name for name in modules if name not in seen)

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            await asyncio.gather(self._sweeper, return_exceptions=True)
        for task in list(self._preloads):
            task.cancel()
        await asyncio.gather(*self._preloads, return_exceptions=True)
        for template in self.templates.values():
            template.close()
        self.templates.clear()

    # ---- idle templates --------------------------------------------------------------

    def _make_room(self) -> bool:
        """Whether another template may start, stopping the least recently used idle one if need be."""
        if len(self.templates) < self.max_templates:
            return True
        idle = [t for t in self.templates.values() if t.ready and not t.busy and not t.preloading]
        if not idle:
            return False
        oldest = min(idle, key=lambda t: t.last_used)
        log.info("stopping worker template %s, the least recently used, to make room", oldest.log_path.stem)
        oldest.close()
        del self.templates[oldest.key]
        return True

    def _ensure_sweeper(self) -> None:
        if self._sweeper is None or self._sweeper.done():
            self._sweeper = asyncio.create_task(self._sweep())

    async def _sweep(self) -> None:
        """Stop templates idle for ``idle_s`` (and preload any that missed it); end when none is left."""
        loop = asyncio.get_running_loop()
        tick = min(1.0, self.idle_s / 2)
        while self.templates:
            await asyncio.sleep(tick)
            for key, template in list(self.templates.items()):
                if template.starting:
                    continue  # its job is about to fork from it
                if not template.alive:
                    del self.templates[key]
                elif template.busy:
                    template.last_used = loop.time()
                elif loop.time() - template.last_used >= self.idle_s:
                    log.info("worker template %s idle for %.0fs; stopping it", template.log_path.stem, self.idle_s)
                    template.close()
                    del self.templates[key]
                else:
                    self._preload_learned(template)

    def _preload_learned(self, template: WorkerTemplate) -> None:
        """Once a template has no workers left, import in it what its workers have reported loading."""
        key = template.key
        if not template.alive or template.preloading or not set(self.learned.get(key, ())) - template.preloaded:
            return

        async def preload() -> None:
            try:
                await template.preload(list(self.learned[key]))
            except TemplateError as e:
                log.warning("%s", e)
                self.unfit.add(key)
                if self.templates.get(key) is template:
                    del self.templates[key]
            finally:
                template.preloading = False

        template.preloading = True

        task = asyncio.create_task(preload())
        self._preloads.add(task)
        task.add_done_callback(self._preloads.discard)

    def _log_path(self, key: TemplateKey) -> Path:
        digest = hashlib.sha256(repr(key).encode()).hexdigest()[:12]
        return self.log_dir / f"template-{digest}.log"
