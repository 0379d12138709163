"""A profile split over the workers: the real-time DAG's three profile tasks, against a runtime endpoint the
test prepared (one candidate, a short search), so the test can look at the parts' XCom."""

from __future__ import annotations

from airflow.sdk import DAG, Param

from deployflow.operators.profile_split import PlanProfileSplitOperator, ProfileLoadOperator, ProfileResultOperator

with DAG(
    dag_id="profile_split",
    schedule=None,
    catchup=False,
    doc_md=__doc__,
    render_template_as_native_obj=True,
    default_args={"retries": 0},
    params={
        "endpoint_name": Param("profile-split", type="string"),
        "package_path": Param("", type="string"),
        "settings": Param({}, type="object"),
        "ready_timeout_s": Param(30, type="number"),
        "report_dir": Param(None, type=["null", "string"]),
    },
) as dag:
    plan = PlanProfileSplitOperator(
        task_id="profile_plan", settings="{{ params.settings }}", ready_timeout_s="{{ params.ready_timeout_s }}"
    )
    parts = ProfileLoadOperator.partial(
        task_id="profile_load",
        endpoint_name="{{ params.endpoint_name }}",
        model="diabetes:1",
        package_path="{{ params.package_path }}",
        candidates=[{"name": "one-core", "resources": {"cpu": 1.0, "memory_gb": 1.0}}],
        slo={"latency_ms": 2000, "percentile": 99, "max_error_percent": 1.0},
        target_rate=20,
        prices={"per_cpu_core_hour": 0.05, "per_gb_hour": 0.005},
        settings="{{ params.settings }}",
        report_dir="{{ params.report_dir }}",
    ).expand(part=plan.output)
    ProfileResultOperator(task_id="profile", parts=parts.output)
