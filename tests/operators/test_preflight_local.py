"""Preflight on the local runtime: a runtime that does not answer fails the run before anything else."""

from __future__ import annotations

import json
import socket

import pytest
from airflow.sdk.exceptions import AirflowFailException

from deployflow.operators.preflight import PreflightOperator


def test_a_runtime_that_does_not_answer_fails_the_preflight(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as probe:  # a loopback port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    connection = {"conn_type": "deployflow_local", "host": "127.0.0.1", "port": port, "password": "token"}
    monkeypatch.setenv("AIRFLOW_CONN_RUNTIME_DOWN", json.dumps(connection))
    operator = PreflightOperator(task_id="preflight", ml_platform_conn_id="runtime_down")

    with pytest.raises(AirflowFailException, match=rf"local runtime at http://127.0.0.1:{port} does not answer"):
        operator.execute({})
