"""Stress test and profile operators, run with dag.test() against a real local runtime."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from airflow.sdk import DAG

from deployflow.loadtest import LatencyHistogram
from deployflow.local.client import LocalRuntimeClient
from deployflow.operators.load import ProfileOperator, StressTestOperator
from deployflow.operators.stress_split import PlanLoadSplitOperator, StressTestPartOperator, StressTestVerdictOperator
from tests.airflow_support import connected_runtime, run_dag, task_states, xcom
from tests.runtime.support import SAMPLE_MODEL, deploy

pytestmark = pytest.mark.slow
ENDPOINT = "load-ops"


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRuntimeClient]:
    with connected_runtime(tmp_path_factory.mktemp("load") / "data") as runtime, runtime.client() as client:
        client.register_model("diabetes", SAMPLE_MODEL)
        client.put_endpoint(ENDPOINT, compute="test")
        deploy(client, ENDPOINT, "blue")
        client.set_traffic(ENDPOINT, {"blue": 100})
        yield client


def test_stress_test_passes_a_reachable_slo_and_fails_an_impossible_one(client, tmp_path: Path) -> None:
    with DAG("stress_local", schedule=None, start_date=datetime(2026, 1, 1), catchup=False) as dag:
        common = {"endpoint_name": ENDPOINT, "package_path": str(SAMPLE_MODEL), "rate": 40, "duration_s": 2,
                  "report_dir": str(tmp_path)}  # fmt: skip
        StressTestOperator(task_id="reachable", slo={"latency_ms": 500, "percentile": 95}, **common)
        StressTestOperator(
            task_id="impossible", deployment_name="blue", slo={"latency_ms": 0.001, "percentile": 50}, **common
        )

    dag_run = run_dag(dag, retries=0)

    assert task_states(dag_run) == {"reachable": "success", "impossible": "failed"}
    summary = xcom(dag_run, "reachable")
    assert summary["passed"] and summary["achieved_rate"] == pytest.approx(40, rel=0.2)
    assert summary["success_rate"] == 1.0
    report = json.loads(Path(summary["report_path"]).read_text())
    assert report["result"]["ok"] == 80
    assert len(list(tmp_path.rglob("impossible.json"))) == 1  # the failed test still leaves its report


def test_a_split_stress_test_merges_its_parts_and_names_the_part_that_started_late(client, tmp_path: Path) -> None:
    """dag.test() runs mapped tasks one after another (in no set order): the part run second begins after
    the first has ended. The shared start is 5 s after planning, which the first part reaches on a busy
    machine too."""
    with DAG("stress_split_local", schedule=None, start_date=datetime(2026, 1, 1), catchup=False) as dag:
        schedule = {"rate": 40, "duration_s": 2}
        plan = PlanLoadSplitOperator(task_id="plan", max_rate_per_worker=25, start_lead_s=5, **schedule)
        parts = StressTestPartOperator.partial(
            task_id="part", endpoint_name=ENDPOINT, deployment_name="blue", package_path=str(SAMPLE_MODEL), **schedule
        ).expand(part=plan.output)
        StressTestVerdictOperator(
            task_id="verdict",
            parts=parts.output,
            endpoint_name=ENDPOINT,
            deployment_name="blue",
            slo={"latency_ms": 10_000, "percentile": 99},
            report_dir=str(tmp_path),
        )

    dag_run = run_dag(dag, retries=0)

    assert set(task_states(dag_run).values()) == {"success"}
    summary = xcom(dag_run, "verdict")
    assert summary["passed"] and summary["parts"] == 2 and len(summary["late_parts"]) == 1, summary
    second = summary["late_parts"][0]
    report = json.loads(Path(summary["report_path"]).read_text())
    late = report["split"]["by_part"][second]
    assert late["start_late_ms"] >= 1500, late  # it waited for the whole of the other part
    assert f"part {second} of 2" in report["split"]["notes"][0] and "late" in report["split"]["notes"][0]
    assert report["result"]["ok"] == 80 and report["result"]["workers"] == 2
    tis = {ti.map_index: ti for ti in dag_run.get_task_instances() if ti.task_id == "part"}
    added = LatencyHistogram()
    for index in (0, 1):
        part = tis[index].xcom_pull(task_ids="part", map_indexes=index)
        assert part["result"]["ok"] == 40 and "Authorization" not in json.dumps(part)  # no key through XCom
        added.add(LatencyHistogram.decode(part["result"]["histograms"]["latency"]))
    assert LatencyHistogram.decode(report["result"]["histograms"]["latency"]) == added


def test_profile_recommends_the_cheapest_config_and_leaves_no_deployment(client, tmp_path: Path) -> None:
    candidates = [
        {"name": "small", "resources": {"cpu": 0.25, "memory_gb": 1.0}},
        {"name": "large", "resources": {"cpu": 1.0, "memory_gb": 1.0}},
    ]
    with DAG("profile_local", schedule=None, start_date=datetime(2026, 1, 1), catchup=False) as dag:
        ProfileOperator(
            task_id="profile",
            endpoint_name=ENDPOINT,
            model="diabetes:1",
            package_path=str(SAMPLE_MODEL),
            candidates=candidates,
            # p99 of a 1 s step is about its slowest request: 250 ms, not 100, so that one descheduled
            # request on a machine running the rest of the suite does not end a whole core's search at 14/s
            slo={"latency_ms": 250, "percentile": 99, "max_error_percent": 1.0},
            target_rate=60,
            headroom=0.2,
            prices={"per_cpu_core_hour": 0.05, "per_gb_hour": 0.005},
            settings={"start_rate": 40, "max_rate": 640, "step_duration_s": 1.0, "settle_s": 0.3, "max_steps": 6},
            report_dir=str(tmp_path),
        )

    dag_run = run_dag(dag, retries=0)

    assert task_states(dag_run) == {"profile": "success"}
    summary = xcom(dag_run, "profile")
    report = json.loads(Path(summary["report_path"]).read_text())
    assert Path(summary["chart_path"]).read_text().count("<polyline") >= 2
    rates = {c["name"]: c["maxSustainableQueriesPerSecond"] for c in report["candidates"]}
    assert rates["large"] > rates["small"] > 0, rates  # a quarter core serves less than a whole one
    assert summary["recommendedConfig"] == "small"  # 0.25 cpu covers 72 requests/s at a fraction of the cost
    for field in ("recommendedCpu", "recommendedMemoryInGB", "latencyPercentile99InMs", "measuredQueriesPerSecond"):
        assert summary[field] is not None, field
    assert [d["name"] for d in client.list_deployments(ENDPOINT)] == ["blue"]


def test_a_profile_where_no_candidate_meets_the_slo_fails_once_saying_what_to_change(client, tmp_path: Path) -> None:
    with DAG("profile_impossible_local", schedule=None, start_date=datetime(2026, 1, 1), catchup=False) as dag:
        ProfileOperator(
            task_id="profile",
            endpoint_name=ENDPOINT,
            model="diabetes:1",
            package_path=str(SAMPLE_MODEL),
            candidates=[{"name": "small", "resources": {"cpu": 0.25, "memory_gb": 1.0}}],
            slo={"latency_ms": 0.01, "percentile": 99, "max_error_percent": 1.0},  # no model answers in 10 us
            target_rate=60,
            settings={"start_rate": 20, "max_rate": 40, "step_duration_s": 1.0, "settle_s": 0.3, "max_steps": 2},
            report_dir=str(tmp_path),
            retries=1,
            retry_delay=timedelta(0),
        )

    dag_run = run_dag(dag)

    ti = dag_run.get_task_instance("profile")
    assert (str(ti.state), ti.try_number) == ("failed", 1), "minutes of load for the same answer are not repeated"
    assert [d["name"] for d in client.list_deployments(ENDPOINT)] == ["blue"], "the candidate was removed"
