"""A stress load split over the workers: the real plan and verdict operators around parts that drive a
plain loopback URL (the test's stub server), where the real-time DAG's parts drive a platform endpoint."""

from __future__ import annotations

from airflow.sdk import DAG, Param, task

from deployflow.operators.stress_split import PlanLoadSplitOperator, StressTestVerdictOperator

with DAG(
    dag_id="split_load",
    schedule=None,
    catchup=False,
    doc_md=__doc__,
    render_template_as_native_obj=True,
    default_args={"retries": 0},
    params={
        "url": Param("http://127.0.0.1:1/score", type="string"),
        "rate": Param(100, type="number"),
        "duration_s": Param(2, type="number"),
        "max_rate_per_worker": Param(50, type="number"),
        "start_lead_s": Param(10, type="number"),
        "report_dir": Param(None, type=["null", "string"]),
    },
) as dag:
    plan = PlanLoadSplitOperator(
        task_id="stress_plan",
        rate="{{ params.rate }}",
        duration_s="{{ params.duration_s }}",
        max_rate_per_worker="{{ params.max_rate_per_worker }}",
        start_lead_s="{{ params.start_lead_s }}",
    )

    @task(multiple_outputs=False)
    def stress_load(part: dict, params=None) -> dict:  # noqa: ANN001 - Airflow injects the params
        """One part, on whichever worker took it; the worker's name (set by tests/real_airflow.py) as its host."""
        import os

        from deployflow.loadtest import RequestSpec, Schedule
        from deployflow.loadtest.split import LoadPart, run_part

        schedule = Schedule.constant(float(params["rate"]), float(params["duration_s"]))
        host = os.environ.get("REAL_AIRFLOW_WORKER")
        return run_part(RequestSpec(params["url"], body=b"{}"), schedule, LoadPart.from_dict(part), host=host).to_dict()

    StressTestVerdictOperator(
        task_id="stress_test",
        parts=stress_load.expand(part=plan.output),
        endpoint_name="stub",
        slo={"latency_ms": 1000, "percentile": 99, "max_error_percent": 0.0, "min_rate_fraction": 0.95},
        report_dir="{{ params.report_dir }}",
    )
