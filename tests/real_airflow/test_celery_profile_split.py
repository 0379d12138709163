"""A profile split over two real Celery workers (Redis broker, one slot each) against the local runtime's
real replicas: part 0 leads the search, part 1 sends half of each step above max_rate_per_worker; each
merged step histogram is the union of the two parts' (bucket for bucket), and the parts ran on two workers."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from deployflow.loadtest import LatencyHistogram
from deployflow.local.client import LocalRuntimeClient
from tests.airflow_support import local_connection
from tests.real_airflow import RealAirflow
from tests.redis_server import RedisServer, skip_without_redis
from tests.runtime.support import ENV_CACHE, SAMPLE_MODEL, RuntimeProcess

pytestmark = pytest.mark.slow

DAGS = Path(__file__).resolve().parent / "dags"
DAG_ID = "profile_split"
ENDPOINT = "profile-split"
PER_WORKER = 40  # requests/s: the 60 and 80/s steps need two parts, the 30/s one does not
SETTINGS = {"start_rate": 30, "max_rate": 80, "max_rate_per_worker": PER_WORKER, "step_duration_s": 2.0,
            "settle_s": 0.3, "max_steps": 4, "step_start_lead_s": 2.0}  # fmt: skip


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RealAirflow, LocalRuntimeClient, Path]]:
    skip_without_redis()
    tmp = tmp_path_factory.mktemp("celery-profile")
    dags_folder = tmp / "dags"
    dags_folder.mkdir()
    shutil.copy(DAGS / "profile_split.py", dags_folder)
    runtime = RuntimeProcess(tmp / "runtime")
    runtime.start()
    try:
        with runtime.client() as client, local_connection(runtime) as conn_id:
            client.register_model("diabetes", SAMPLE_MODEL)
            client.put_endpoint(ENDPOINT, compute="test")
            variable = f"AIRFLOW_CONN_{conn_id.upper()}"
            env = {variable: os.environ[variable], "DEPLOYFLOW_ENV_CACHE": str(ENV_CACHE)}
            with (
                RedisServer(tmp / "redis") as redis,
                RealAirflow(tmp / "home", dags_folder, env=env, executor="CeleryExecutor", broker_url=redis.url) as af,
            ):
                yield af, client, tmp / "reports"
    finally:
        runtime.stop()


def xcom(airflow: RealAirflow, run_id: str, task_id: str, key: str = "return_value", map_index: int = -1) -> Any:
    path = f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/{key}"
    value = airflow.get(path, map_index=map_index)["value"]
    return json.loads(value) if isinstance(value, str) else value


def celery_worker_of(airflow: RealAirflow, pid: int) -> str | None:
    """The Celery worker (component) whose process tree holds `pid`'s parent, the part's supervisor."""
    workers = {airflow.processes_by_component[w].pid: w for w in airflow.workers}
    for process in [psutil.Process(pid), *psutil.Process(pid).parents()]:
        if process.pid in workers:
            return workers[process.pid]
    return None


def test_a_profile_split_in_two_runs_its_fast_steps_on_two_workers_and_merges_them_exactly(deployment) -> None:
    airflow, client, reports = deployment
    conf = {"endpoint_name": ENDPOINT, "package_path": str(SAMPLE_MODEL), "settings": SETTINGS,
            "report_dir": str(reports)}  # fmt: skip

    run_id = airflow.trigger(DAG_ID, conf)
    state = airflow.wait_for(DAG_ID, run_id, {"success", "failed"}, timeout=170)

    assert state == "success", airflow.task_instances(DAG_ID, run_id)
    assert xcom(airflow, run_id, "profile_plan") == [{"index": i, "parts": 2, "ready_timeout_s": 30.0} for i in (0, 1)]
    summary = xcom(airflow, run_id, "profile")
    assert summary["recommendedConfig"] == "one-core"
    report = json.loads(Path(summary["report_path"]).read_text())
    steps = report["candidates"][0]["steps"]
    assert [s["requestedQueriesPerSecond"] for s in steps] == [30, 60, 80], steps
    assert [s["split"] is None for s in steps] == [True, False, False]  # only the steps above 40/s
    follower = xcom(airflow, run_id, "profile_load", map_index=1)
    assert follower["follower"] and follower["steps_served"] == [1, 2] and follower["left"] == "the leader is done"

    for number, step in enumerate(steps[1:], start=1):
        split = step["split"]
        parts = [xcom(airflow, run_id, "profile_load", f"result-{number}", i) for i in (0, 1)]
        assert [p["part"]["index"] for p in parts] == [0, 1] and split["parts"] == 2
        union = LatencyHistogram()
        for part in parts:
            assert part["result"]["ok"] == step["requestedQueriesPerSecond"]  # half of 2 s at the step's rate
            union.add(LatencyHistogram.decode(part["result"]["histograms"]["latency"]))
        assert LatencyHistogram.decode(split["histograms"]["latency"]) == union, f"step {number}"
        assert union.count == 2 * step["requestedQueriesPerSecond"]
        assert split["late_parts"] == [] and split["clock_ahead_parts"] == [], split
        print(f"step {number}: {step['requestedQueriesPerSecond']} -> {step['measuredQueriesPerSecond']} requests/s "
              f"in 2 parts, p99 {step['latencyMs']['p99']} ms")  # fmt: skip
    print(f"profile of 3 steps (2 split) in {report['wallTimeSeconds']} s")

    ready = [xcom(airflow, run_id, "profile_load", "ready", i) for i in (0, 1)]
    assert ready[0]["pid"] != ready[1]["pid"]
    assert {celery_worker_of(airflow, r["parent_pid"]) for r in ready} == {"celery-worker-1", "celery-worker-2"}
    everything = json.dumps([ready, follower, report])
    assert "Bearer" not in everything and "Authorization" not in everything  # no key through XCom
    assert [d["name"] for d in client.list_deployments(ENDPOINT)] == []  # the candidate was removed
