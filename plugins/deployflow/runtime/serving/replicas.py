"""Replicas: Azure ML inference server processes, one per deployment instance.

Each replica is started from an argument list with its settings in the environment, in its
own process group, placed in its resource limits before exec, and dies with the runtime
(``PR_SET_PDEATHSIG``). Readiness is a poll of the server's health route that fails fast
when the process has already exited. Besides its loopback port, a replica listens on a Unix
socket in the runtime's data dir (when the path fits), which the router sends scoring requests to.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import signal
import socket
import subprocess
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import IO

from deployflow.packages import ModelPackage
from deployflow.runtime.child import CHILD_SCRIPTS
from deployflow.runtime.isolation import ChildUser, hand_over, minimal_environment
from deployflow.runtime.processes import dying_with_runtime, open_log, rotate_log, tail
from deployflow.runtime.serving.resources import Placement

log = logging.getLogger(__name__)

LAUNCHER = CHILD_SCRIPTS / "replica_main.py"
LOOPBACK = "127.0.0.1"
HEALTH_POLL_S = 0.1
STOP_GRACE_S = 5.0
REPLICA_MARKER_ENV = "DEPLOYFLOW_REPLICA_ID"
REPLICA_SOCKET_ENV = "DEPLOYFLOW_REPLICA_SOCKET"
# A Unix socket's path must fit in sockaddr_un (108 bytes with its terminating NUL); longer, the port alone is used.
MAX_SOCKET_PATH_BYTES = 107


class ReplicaState(StrEnum):
    STARTING = "starting"
    READY = "ready"
    DEAD = "dead"
    STOPPED = "stopped"


class ReplicaStartError(RuntimeError):
    """The scoring server exited or never answered its health route; the message has its log tail."""


def free_port(host: str = LOOPBACK) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


async def http_status(host: str, port: int, path: str = "/", timeout: float = 2.0) -> int | None:
    """Status code of a GET, or None when nothing answers in time."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    except (OSError, TimeoutError):
        return None
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        line = await asyncio.wait_for(reader.readline(), timeout)
        parts = line.split()
        return int(parts[1]) if len(parts) >= 2 and parts[1].isdigit() else None
    except (OSError, TimeoutError):
        return None
    finally:
        writer.close()


def server_command(python: Path, package_dir: Path, port: int, worker_count: int) -> list[str]:
    """azmlinfsrv for one package (its score.py, or the MLflow scoring script), through the launcher
    that binds it to loopback."""
    return [
        str(python), str(LAUNCHER),
        "--entry_script", str(ModelPackage(package_dir).scoring_script),
        "--model_dir", str(package_dir),
        "--port", str(port),
        "--worker_count", str(worker_count),
    ]  # fmt: skip


def server_environment(package_dir: Path, user: ChildUser | None = None) -> dict[str, str]:
    """Only what the server needs: nothing of the caller's environment (tokens, connections) reaches score.py."""
    return minimal_environment({"AML_APP_ROOT": str(package_dir)}, user=user)


def spawn_server(
    args: list[str],
    env: dict[str, str],
    package_dir: Path,
    log_file: IO[bytes],
    then: Callable[[], None] | None,
    user: ChildUser | None = None,
) -> subprocess.Popen[bytes]:
    """Start the server in its own process group, logging to ``log_file``, dying with its spawner;
    ``then`` runs in the child before exec (e.g. entering its resource limits), then it becomes ``user``."""
    return subprocess.Popen(
        args,
        env=env,
        cwd=package_dir,
        stdin=subprocess.DEVNULL,
        stdout=log_file,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        preexec_fn=dying_with_runtime(then, user),  # noqa: PLW1509 - cgroups, user, death signal
    )


class Replica:
    """One scoring-server process group serving one deployment instance on a loopback port."""

    def __init__(
        self,
        replica_id: str,
        *,
        python: Path,
        package_dir: Path,
        worker_count: int,
        environment: dict[str, str],
        placement_factory: Callable[[], Placement],
        log_path: Path,
        user: ChildUser | None = None,
        socket_dir: Path | None = None,
    ) -> None:
        self.replica_id = replica_id
        self.python = python
        self.package_dir = package_dir
        self.worker_count = worker_count
        self.environment = environment
        self.placement_factory = placement_factory
        self.log_path = log_path
        self.user = user
        self.host = LOOPBACK
        self.port = 0
        self.socket_dir = socket_dir
        # The Unix socket the router connects to: set once the server is ready and listens on it, else None.
        self.socket_path: str | None = None
        self._socket_file: Path | None = None
        self.state = ReplicaState.STOPPED
        self.process: subprocess.Popen[bytes] | None = None
        self.placement: Placement | None = None
        self.inflight = 0
        self.restarts = 0

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def exited(self) -> bool:
        return self.process is None or self.process.poll() is not None

    def spawn(self) -> None:
        """Start the server from the event loop's thread: the death signal follows the spawning thread."""
        self.port = free_port()
        self.socket_path = None
        self._socket_file = self._unix_socket_file()
        self.placement = self.placement_factory()
        args = server_command(self.python, self.package_dir, self.port, self.worker_count)
        env = {**server_environment(self.package_dir, self.user), REPLICA_MARKER_ENV: self.replica_id,
               **self.environment}  # fmt: skip
        if self._socket_file is not None:
            env[REPLICA_SOCKET_ENV] = str(self._socket_file)
        with open_log(self.log_path) as log_file:
            self.process = spawn_server(
                args, env, self.package_dir, log_file, self.placement.apply_in_child, self.user
            )  # fmt: skip
        self.state = ReplicaState.STARTING
        log.info("replica %s started (pid %s, port %s)", self.replica_id, self.process.pid, self.port)

    def _unix_socket_file(self) -> Path | None:
        """Where the server is to listen besides its port: a folder only the model's user and root can enter."""
        if self.socket_dir is None:
            return None
        path = self.socket_dir / f"{hashlib.sha256(self.replica_id.encode()).hexdigest()[:16]}.sock"
        if len(os.fsencode(path)) > MAX_SOCKET_PATH_BYTES:
            return None
        self.socket_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        if self.user is not None:
            hand_over(self.socket_dir, self.user)  # the server, run as the user, creates the socket there
        return path

    async def wait_ready(self, timeout_s: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while loop.time() < deadline:
            if self.exited():
                code = self.process.returncode if self.process else None
                self.state = ReplicaState.DEAD
                raise ReplicaStartError(
                    f"replica {self.replica_id} exited with code {code} before it was ready; "
                    f"last log lines:\n{tail(self.log_path)}"
                )
            if await http_status(self.host, self.port, "/", timeout=1.0) == 200:
                if self._socket_file is not None and self._socket_file.is_socket():
                    self.socket_path = str(self._socket_file)
                self.state = ReplicaState.READY
                return
            await asyncio.sleep(HEALTH_POLL_S)
        self.state = ReplicaState.DEAD
        raise ReplicaStartError(
            f"replica {self.replica_id} did not answer its health route within {timeout_s:.0f}s; "
            f"last log lines:\n{tail(self.log_path)}"
        )

    def mark_dead(self) -> None:
        if self.state is not ReplicaState.STOPPED:
            self.state = ReplicaState.DEAD

    async def stop(self, grace_s: float = STOP_GRACE_S) -> None:
        """Terminate the process group, kill it after the grace period, and release its limits."""
        self.state = ReplicaState.STOPPED
        process = self.process
        if process is not None and process.poll() is None:
            _signal_group(process.pid, signal.SIGTERM)
            loop = asyncio.get_running_loop()
            deadline = loop.time() + grace_s
            while process.poll() is None and loop.time() < deadline:
                await asyncio.sleep(0.05)
            _signal_group(process.pid, signal.SIGKILL)
            process.wait()
        elif process is not None:
            _signal_group(process.pid, signal.SIGKILL)  # workers may outlive a crashed master
        if self.placement is not None:
            await _wait_group_gone(process.pid if process else None)
            self.placement.release()
            self.placement = None

    def rotate_log(self, cap_bytes: int) -> None:
        rotate_log(self.log_path, cap_bytes)


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


async def _wait_group_gone(pgid: int | None, timeout_s: float = 2.0) -> None:
    """Gunicorn workers leave shortly after their master; wait so their cgroup can be removed."""
    if pgid is None:
        return
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while loop.time() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        await asyncio.sleep(0.05)
