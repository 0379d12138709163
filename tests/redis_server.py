"""A Redis server of a test's own (Debian's ``redis-server``), on a free loopback port, data in a tmp folder.

    with RedisServer(tmp_path / "redis") as redis:
        broker_url = redis.url          # redis://127.0.0.1:<port>/0

Nothing is persisted (no RDB snapshots, no append-only file). ``skip_without_redis()`` skips a test
with the command that installs it, where the machine has none (``./dev test`` installs it).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from deployflow.runtime.processes import dying_with_runtime, tail
from deployflow.runtime.serving.replicas import free_port

START_TIMEOUT_S = 15.0


def skip_without_redis() -> str:
    """The redis-server command, or a skip saying how to get it."""
    found = shutil.which("redis-server")
    if found is None:
        pytest.skip("redis-server is not installed (Debian: apt-get install -y redis-server; ./dev test does it)")
    return found


class RedisServer:
    """One redis-server process bound to 127.0.0.1, stopped (and reaped) on exit."""

    def __init__(self, data_dir: Path) -> None:
        self.command = skip_without_redis()
        self.data_dir = Path(data_dir)
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def log_path(self) -> Path:
        return self.data_dir / "redis.log"

    def __enter__(self) -> RedisServer:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        args = [self.command, "--bind", "127.0.0.1", "--port", str(self.port), "--dir", str(self.data_dir)]
        args += ["--save", "", "--appendonly", "no", "--protected-mode", "yes", "--daemonize", "no"]
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                args, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, preexec_fn=dying_with_runtime()
            )
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self.ping():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.__exit__()
                raise RuntimeError(f"redis-server did not answer PING on :{self.port}:\n{tail(self.log_path, 20)}")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)

    def ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith(b"+PONG")
        except OSError:
            return False
