"""A stress test split over two real Celery workers (Redis broker, one slot each): two parts start
together, keep the target rate together, and merge bucket for bucket; a third part finds no free
worker at the start, and the verdict names it and fails the rate objective."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from deployflow.loadtest import LatencyHistogram
from deployflow.reports import report_path
from tests.loadtest.conftest import Behaviour, StubServer
from tests.real_airflow import RealAirflow
from tests.redis_server import RedisServer, skip_without_redis

pytestmark = pytest.mark.slow

DAGS = Path(__file__).resolve().parent / "dags"
DAG_ID = "split_load"
PER_WORKER, SECONDS = 200, 4  # each part 200 requests/s
START_LEAD_S = 12


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RealAirflow, StubServer, Path]]:
    skip_without_redis()
    tmp = tmp_path_factory.mktemp("celery")
    dags_folder = tmp / "dags"
    dags_folder.mkdir()
    shutil.copy(DAGS / "split_load.py", dags_folder)
    server = StubServer(Behaviour()).start()
    try:
        with (
            RedisServer(tmp / "redis") as redis,
            RealAirflow(tmp / "home", dags_folder, executor="CeleryExecutor", broker_url=redis.url) as airflow,
        ):
            yield airflow, server, tmp / "reports"
    finally:
        server.stop()


def run_split(deployment: tuple[RealAirflow, StubServer, Path], rate: int, state: str) -> tuple[Any, list[Any]]:
    """Trigger a split load of `rate` requests/s, wait for the run to end in `state`; its report and parts."""
    airflow, server, reports = deployment
    conf = {"url": server.url, "rate": rate, "duration_s": SECONDS, "max_rate_per_worker": PER_WORKER,
            "start_lead_s": START_LEAD_S, "report_dir": str(reports)}  # fmt: skip
    run_id = airflow.trigger(DAG_ID, conf)
    airflow.wait_for(DAG_ID, run_id, {state}, timeout=120)
    path = report_path(reports, DAG_ID, run_id, "stress_test", suffix=".json")
    parts = [xcom_value(airflow, run_id, "stress_load", i) for i in range(rate // PER_WORKER)]
    return json.loads(path.read_text()), parts


def xcom_value(airflow: RealAirflow, run_id: str, task_id: str, map_index: int = -1) -> Any:
    path = f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/return_value"
    value = airflow.get(path, map_index=map_index)["value"]
    return json.loads(value) if isinstance(value, str) else value


def added_histograms(parts: list[Any]) -> LatencyHistogram:
    union = LatencyHistogram()
    for part in parts:
        union.add(LatencyHistogram.decode(part["result"]["histograms"]["latency"]))
    return union


def test_two_parts_run_on_two_workers_at_once_keep_the_rate_and_merge_exactly(deployment) -> None:
    server = deployment[1]
    before = server.requests

    report, parts = run_split(deployment, 2 * PER_WORKER, "success")

    # one part on each worker, both on time: with one slot per worker they ran side by side
    assert {p["host"] for p in parts} == {"celery-worker-1", "celery-worker-2"}
    assert [p["start_late_ms"] for p in parts] == [0.0, 0.0]
    assert report["summary"]["passed"] and report["split"]["late_parts"] == [], report["split"]
    assert report["result"]["ok"] == server.requests - before == 2 * PER_WORKER * SECONDS
    assert report["result"]["achieved_rate"] >= 0.95 * 2 * PER_WORKER, report["result"]
    assert all(p["result"]["ok"] == PER_WORKER * SECONDS for p in parts)
    assert LatencyHistogram.decode(report["result"]["histograms"]["latency"]) == added_histograms(parts)


def test_a_part_that_finds_no_free_worker_at_the_start_is_named_and_the_rate_is_missed(deployment) -> None:
    report, parts = run_split(deployment, 3 * PER_WORKER, "failed")

    late = report["split"]["late_parts"]
    assert len(late) == 1, report["split"]  # two slots: the third part waited for one of them
    (late_part,) = (p for p in parts if p["part"]["index"] == late[0])
    assert late_part["start_late_ms"] >= SECONDS * 1000 * 0.9
    assert "started" in report["split"]["notes"][0] and "late" in report["split"]["notes"][0]
    assert not report["summary"]["passed"]
    assert any("achieved" in reason and "misses" in reason for reason in report["summary"]["reasons"])
    assert report["result"]["ok"] == 3 * PER_WORKER * SECONDS  # late, not lost: its latency counts the wait
    assert LatencyHistogram.decode(report["result"]["histograms"]["latency"]) == added_histograms(parts)
