"""A real local runtime as a child process of the tests, and helpers to deploy the sample model."""

from __future__ import annotations

import os
import signal
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
