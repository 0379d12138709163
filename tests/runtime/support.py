"""A real local runtime as a child process of the tests, and helpers to deploy the sample model."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from deployflow.local.client import LocalRuntimeClient
from deployflow.runtime.serving.replicas import free_port

REPO = Path(__file__).resolve().parents[2]
SAMPLE_MODEL = REPO / "include" / "models" / "diabetes"
ENV_CACHE = REPO / ".cache" / "envs"
START_TIMEOUT_S = 30


@dataclass
class RuntimeProcess:
    """``python -m deployflow.runtime`` as a child of the test, restartable on the same ports."""

    data_dir: Path
    extra_args: list[str] = field(default_factory=list)
    control_port: int = field(default_factory=free_port)
    router_port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def log_path(self) -> Path:
        return self.data_dir.parent / f"{self.data_dir.name}-runtime.log"

    def start(self) -> None:
        args = [
            sys.executable, "-m", "deployflow.runtime", "--data-dir", str(self.data_dir),
            "--control-port", str(self.control_port), "--router-port", str(self.router_port),
            "--env-cache-dir", str(ENV_CACHE), *self.extra_args,
        ]  # fmt: skip
        # The repository's plugins first; what the caller had on PYTHONPATH stays importable after them.
        paths = [str(REPO / "plugins"), *filter(None, [os.environ.get("PYTHONPATH")])]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + START_TIMEOUT_S
        with LocalRuntimeClient(self.control_url, "-") as probe:
            while not probe.health():
                if self.process.poll() is not None:
                    raise RuntimeError(f"runtime exited with {self.process.returncode}:\n{self.log_path.read_text()}")
                if time.monotonic() > deadline:
                    raise TimeoutError(f"runtime not healthy within {START_TIMEOUT_S}s:\n{self.log_path.read_text()}")
                time.sleep(0.05)

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(sig)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    @property
    def control_url(self) -> str:
        return f"http://127.0.0.1:{self.control_port}"

    def client(self) -> LocalRuntimeClient:
        return LocalRuntimeClient(self.control_url, (self.data_dir / "admin-token").read_text().strip())


@contextmanager
def sample_runtime(data_dir: Path, *extra_args: str) -> Iterator[tuple[RuntimeProcess, LocalRuntimeClient]]:
    """A runtime of the test's own, started with ``extra_args``, the sample model registered as diabetes:1."""
    runtime = RuntimeProcess(data_dir, extra_args=list(extra_args))
    runtime.start()
    try:
        with runtime.client() as client:
            client.register_model("diabetes", SAMPLE_MODEL, version="1")
            yield runtime, client
    finally:
        runtime.stop()


def deploy(client: LocalRuntimeClient, endpoint: str, deployment: str, **spec: object) -> dict:
    """Create a deployment of the sample model and wait for it; fail with its error if it fails."""
    spec.setdefault("model", "diabetes:1")
    client.put_deployment(endpoint, deployment, **spec)
    result = client.wait_for_deployment(endpoint, deployment, timeout_s=900)
    assert result["provisioning_state"] == "Succeeded", result["error"]
    return result


@dataclass
class RawAnswer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> dict:
        return json.loads(self.body)


def read_answer(sock: socket.socket) -> RawAnswer | None:
    """The first HTTP/1.1 answer read off a raw socket, checked as it is read; None when the server
    closed without a byte. A malformed answer fails the test with what was read."""
    data = b""
    while (answer := split_answer(data)) is None:
        chunk = sock.recv(65536)
        if not chunk:
            assert not data, f"the connection closed inside an answer: {data[:300]!r}"
            return None
        data += chunk
    return answer[0]


def split_answer(data: bytes) -> tuple[RawAnswer, bytes] | None:
    """The answer at the start of ``data`` and the bytes after it, or None while it is incomplete."""
    if b"\r\n\r\n" not in data:
        return None
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    assert re.fullmatch(r"HTTP/1\.1 \d{3} [^\r\n]*", status_line), f"not an HTTP status line: {status_line!r}"
    headers = {}
    for line in lines:
        name, colon, value = line.partition(":")
        assert colon and name and name.strip() == name, f"not a header line: {line!r}"
        headers[name.lower()] = value.strip()
    assert headers.get("content-length", "").isdigit(), f"no content-length in {headers}"
    length = int(headers["content-length"])
    if len(body) < length:
        return None
    return RawAnswer(int(status_line.split()[1]), headers, body[:length]), body[length:]
