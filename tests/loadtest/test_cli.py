"""`python -m deployflow.loadtest` runs a test and prints a result that loads back."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import deployflow.loadtest
from deployflow.loadtest import LoadResult

StartServer = Callable[..., Any]
PLUGINS = Path(deployflow.loadtest.__file__).resolve().parents[2]


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(PLUGINS)}
    return subprocess.run(
        [sys.executable, "-m", "deployflow.loadtest", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )


def test_cli_runs_a_stepped_test_and_prints_json(stub_server: StartServer, tmp_path: Path) -> None:
    server = stub_server(exec_ms_header=True)
    body = tmp_path / "sample.json"
    body.write_bytes(b'{"data": [[1, 2, 3]]}')

    proc = _cli(
        "--url", server.url,
        "--step", "20:0.5",
        "--step", "40:0.5",
        "--body-file", str(body),
        "--header", "azureml-model-deployment: blue",
        "--header", "Authorization: Bearer k3y",
    )  # fmt: skip

    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["scheduled"] == data["ok"] == 30
    assert data["requested_rate"] == 30.0
    assert LoadResult.from_dict(data).server_time.count == 30
    assert b"azureml-model-deployment: blue\r\n" in server.last_head
    assert b"Content-Length: 21\r\n" in server.last_head


def test_cli_closed_loop_mode(stub_server: StartServer) -> None:
    server = stub_server()

    proc = _cli("--url", server.url, "--closed-loop", "--duration", "0.3", "--no-histograms")

    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["mode"] == "closed" and data["ok"] > 10
    assert "histograms" not in data


def test_cli_says_what_is_missing() -> None:
    proc = _cli("--url", "http://127.0.0.1:9/score", "--rate", "10")

    assert proc.returncode == 2
    assert "--rate and --duration" in proc.stderr


def test_cli_refuses_a_remote_target_unless_told() -> None:
    proc = _cli("--url", "http://10.0.0.1/score", "--rate", "10", "--duration", "1")

    assert proc.returncode == 2
    assert "not a loopback address" in proc.stderr


def test_cli_refuses_a_rate_beyond_the_cap() -> None:
    proc = _cli("--url", "http://127.0.0.1:9/score", "--rate", "1e6", "--duration", "1")

    assert proc.returncode == 2
    assert "exceeds the load generator's limit" in proc.stderr
