"""Azurite's blob service for tests: a real emulator on a free loopback port, stopped afterwards.

Use the fixture by importing it into a test module (``from tests.azurite import azurite``);
it yields the connection string of the well-known development account.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from azure.storage.blob import BlobServiceClient

from deployflow.azurite import connection_string
from deployflow.runtime.serving.replicas import free_port

REPO = Path(__file__).resolve().parents[1]
AZURITE_BLOB = REPO / "node_modules" / ".bin" / "azurite-blob"
START_TIMEOUT_S = 20
STOP_GRACE_S = 1.0


@contextmanager
def azurite_blob(location: Path) -> Iterator[str]:
    """Run ``azurite-blob`` with its data in ``location``; yield its connection string."""
    if not AZURITE_BLOB.exists():
        pytest.skip(f"{AZURITE_BLOB} is missing; `./dev test` installs it (npm install)")
    port = free_port()
    args = [
        str(AZURITE_BLOB), "--blobHost", "127.0.0.1", "--blobPort", str(port),
        "--location", str(location), "--skipApiVersionCheck", "--loose", "--silent",
    ]  # fmt: skip
    log_path = location.with_name(f"{location.name}-azurite.log")
    with open(log_path, "ab") as log:
        process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _wait_listening(port, process, log_path)
        yield connection_string(port)
    finally:
        _stop(process)


@contextmanager
def azurite_service(location: Path, wasb_conn_id: str) -> Iterator[BlobServiceClient]:
    """Azurite with an Airflow ``wasb`` connection (from the environment) to it; yields a client to it."""
    variable = f"AIRFLOW_CONN_{wasb_conn_id.upper()}"
    with azurite_blob(location) as conn:
        os.environ[variable] = json.dumps({"conn_type": "wasb", "extra": {"connection_string": conn}})
        try:
            with BlobServiceClient.from_connection_string(conn) as service:
                yield service
        finally:
            os.environ.pop(variable, None)


@pytest.fixture(scope="module")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A fresh Azurite per test module: yields a storage connection string."""
    with azurite_blob(tmp_path_factory.mktemp("azurite")) as conn:
        yield conn


def _wait_listening(port: int, process: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"azurite exited with {process.returncode}:\n{log_path.read_text()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"azurite not listening within {START_TIMEOUT_S}s:\n{log_path.read_text()}"
                ) from None
            time.sleep(0.05)


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL: Azurite lingers ~5 s on a graceful close, and its data is a throwaway folder."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
