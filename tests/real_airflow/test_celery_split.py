"""A stress test split in two on two real Celery workers (Redis broker): both parts start together,
together they keep the target rate, and the merged histogram is the parts' added bucket for bucket."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from deployflow.loadtest import LatencyHistogram
from tests.loadtest.conftest import Behaviour, StubServer
from tests.real_airflow import RealAirflow
from tests.redis_server import RedisServer, skip_without_redis

pytestmark = pytest.mark.slow

DAGS = Path(__file__).resolve().parent / "dags"
DAG_ID = "split_load"
RATE, SECONDS, PER_WORKER = 400, 4, 200  # two parts of 200 requests/s


def xcom_value(airflow: RealAirflow, run_id: str, task_id: str, map_index: int = -1) -> Any:
    path = f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/return_value"
    value = airflow.get(path, map_index=map_index)["value"]
    return json.loads(value) if isinstance(value, str) else value


def test_a_stress_test_split_in_two_runs_on_two_celery_workers_at_once_and_merges_exactly(tmp_path: Path) -> None:
    skip_without_redis()
    dags_folder = tmp_path / "dags"
    dags_folder.mkdir()
    shutil.copy(DAGS / "split_load.py", dags_folder)
    server = StubServer(Behaviour()).start()
    try:
        with (
            RedisServer(tmp_path / "redis") as redis,
            RealAirflow(
                tmp_path / "home", dags_folder, executor="CeleryExecutor", broker_url=redis.url, celery_workers=2
            ) as airflow,
        ):
            conf = {"url": server.url, "rate": RATE, "duration_s": SECONDS, "max_rate_per_worker": PER_WORKER,
                    "start_lead_s": 12, "report_dir": str(tmp_path / "reports")}  # fmt: skip
            run_id = airflow.trigger(DAG_ID, conf)
            airflow.wait_for(DAG_ID, run_id, {"success"}, timeout=120)
            summary = xcom_value(airflow, run_id, "stress_test")
            parts = [xcom_value(airflow, run_id, "stress_load", i) for i in range(2)]
            tis = airflow.get(f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances", limit=100)["task_instances"]
    finally:
        server.stop()

    assert sorted(ti["map_index"] for ti in tis if ti["task_id"] == "stress_load") == [0, 1]
    # one part on each worker, both on time: with one slot per worker they ran side by side
    assert {p["host"] for p in parts} == {"celery-worker-1", "celery-worker-2"}
    assert [p["start_late_ms"] for p in parts] == [0.0, 0.0]
    assert summary["parts"] == 2 and summary["late_parts"] == [] and summary["passed"], summary
    report = json.loads(Path(summary["report_path"]).read_text())
    assert report["result"]["ok"] == server.requests == RATE * SECONDS
    assert report["result"]["achieved_rate"] >= 0.95 * RATE, report["result"]
    union = LatencyHistogram()
    for part in parts:
        assert part["result"]["ok"] == RATE * SECONDS // 2
        union.add(LatencyHistogram.decode(part["result"]["histograms"]["latency"]))
    assert LatencyHistogram.decode(report["result"]["histograms"]["latency"]) == union  # bucket for bucket
    assert union.count == RATE * SECONDS
