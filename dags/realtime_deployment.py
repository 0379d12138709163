"""
# Real-time deployment

Carries a model package through Azure ML's real-time deployment practice, behind one stable
endpoint whose URL and keys never change:

1. **validate** — the package is complete; Azure ML's inference server, started on it in the
   model's own environment, answers every sample as expected. **register** the model version.
   A package is a `score.py` package or an MLflow model folder (`MLmodel`, no `score.py`); or
   give `model` (`name:version`, or `name` for the latest) to deploy a version the platform
   already has: it is validated from its registered files and not registered again.
2. **test deployment** (the old "ACI test": a managed online endpoint on Azure ML, a local
   endpoint on the runtime), input/output **smoke tests** through `azureml-model-deployment`;
   its endpoint is torn down whatever happens.
3. **stress test** on the test pool (the old "test AKS") against the SLO; above
   `stress.max_rate_per_worker` requests/s the load is split into mapped parts (one per worker)
   that start at one wall-clock moment, and their latency histograms are merged exactly.
4. **profile**: each candidate configuration (cpu, memory, gpu, workers) on the test pool, its
   highest rate within the SLO, the cheapest plan that serves the target rate. When
   `profile_settings.max_rate` is above `profile_settings.max_rate_per_worker`, `profile_load` runs
   as several mapped parts at once: part 0 searches, the others send their shares of the steps
   too fast for one worker (merged exactly, as the stress test's). The stress endpoint is torn
   down whatever happens.
5. **promote** to the production endpoint by a controlled rollout with the profiled
   resources: mirror and traffic steps with gates, optional approval (human in the loop),
   automatic rollback. A first release takes all traffic after its smoke test. An approval nobody
   answers within `approval_timeout_minutes` (a day by default) is a rejection: rolled back.
6. **summary** — endpoint URL, chosen configuration, rollout verdicts, report paths.

Runs for different endpoints run side by side. A run **claims** its endpoint (a tag on the
endpoint, created empty if need be) after validation and **releases** it at the end, whatever
happened: a second run for the same endpoint waits for it, deferred, holding no worker slot.

Which platform answers is the `ml_platform_conn_id` connection's business: `deployflow_local`
(the local runtime) or an `azure_ml` connection. Trigger from the UI's form or the REST API.

**preflight** runs first: the credential, the workspace, the computes, the instance types and
the quota the run will need, checked before anything is created. With `dry_run` (Azure ML only)
every request is built, checked against the REST specification and recorded, and none is sent;
scoring requests are recorded too, and what their answers would decide (smoke tests, stress test,
profile, rollout gates) is "not judged (dry run)" or assumed, so the promotion's requests are listed.
"""

from __future__ import annotations

from pathlib import Path

from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import DAG, Param, TriggerRule, task

from deployflow import forms
from deployflow.hooks.ml_platform import DRY_RUN_PREFIX
from deployflow.operators.approval import DEFAULT_TIMEOUT_MINUTES, RolloutApprovalOperator
from deployflow.operators.claim import ClaimEndpointOperator, ReleaseEndpointOperator
from deployflow.operators.deployment import CreateDeploymentOperator, SmokeTestOperator
from deployflow.operators.endpoint import CreateOrUpdateEndpointOperator, DeleteEndpointOperator
from deployflow.operators.model import RegisterModelOperator, ValidateModelPackageOperator
from deployflow.operators.preflight import PreflightOperator
from deployflow.operators.profile_split import PlanProfileSplitOperator, ProfileLoadOperator, ProfileResultOperator
from deployflow.operators.rollout import AWAITING_APPROVAL, RollBackRejectedRolloutOperator, RolloutOperator
from deployflow.operators.stress_split import (
    PlanLoadSplitOperator,
    StressTestPartOperator,
    StressTestVerdictOperator,
)

SAMPLE_PACKAGE = str(Path(__file__).resolve().parents[1] / "include" / "models" / "diabetes")
NAME = r"^[a-zA-Z][a-zA-Z0-9-]{1,23}[a-zA-Z0-9]$"  # leaves room for the "-stress" suffix (32 in all)
CONN = "{{ ('" + DRY_RUN_PREFIX + "' if params.dry_run else '') ~ params.ml_platform_conn_id }}"
# What validate checked (the package given, or the registered model's files) is what every later task uses.
PACKAGE = "{{ ti.xcom_pull(task_ids='validate')['package'] }}"
TEST_ENDPOINT = "{{ params.endpoint_name }}-test"
STRESS_ENDPOINT = "{{ params.endpoint_name }}-stress"
NULLABLE_OBJECT = ["null", "object"]

with DAG(
    dag_id="realtime_deployment",
    schedule=None,
    catchup=False,
    doc_md=__doc__,
    tags=["deployflow", "real-time"],
    default_args={"retries": 1, "owner": "deployflow"},
    # No max_active_runs: runs for different endpoints go side by side; claim_endpoint makes
    # a second run for the same endpoint wait (deferred, no worker slot) until the first releases it.
    render_template_as_native_obj=True,
    params={
        "package_path": Param(
            SAMPLE_PACKAGE,
            type=["null", "string"],
            title="Model package folder",
            description=(
                "score.py, requirements.txt, model/, sample-request.json + sample-response.json or samples/; "
                "or an MLflow model folder (MLmodel). Empty with `model`: the registered model's own files"
            ),
        ),
        "model": Param(
            None,
            type=["null", "string"],
            pattern=r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,254}(:[a-zA-Z0-9_.-]+)?$",
            title="Registered model (instead of registering the package)",
            description="name:version, or name for the latest; register_model is then skipped",
        ),
        "model_name": Param(
            "diabetes", type="string", pattern=r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,254}$", title="Registered model name"
        ),
        "endpoint_name": Param(
            "diabetes",
            type="string",
            pattern=NAME,
            title="Production endpoint",
            description="test endpoints are this name with -test and -stress",
        ),
        "ml_platform_conn_id": Param(
            "deployflow_local",
            type="string",
            title="ML platform connection",
            description="deployflow_local (local runtime) or an azure_ml connection",
        ),
        "test_compute": Param(
            None,
            type=["null", "string"],
            title="Test deployment compute",
            description="empty: a managed endpoint (Azure ML's successor to the ACI test)",
        ),
        "test_pool": Param("test", type="string", title="Test pool (test AKS compute) for stress and profile"),
        "production_pool": Param(
            "production",
            type="string",
            title="Production pool (production AKS compute)",
            description="on Azure ML, empty: a managed online endpoint instead of an attached cluster",
        ),
        "test_resources": Param(
            {"cpu": 0.5, "memory_gb": 1.0, "instance_type": "Standard_DS3_v2"},
            title="Test deployment resources",
            **forms.RESOURCES_SCHEMA,
        ),
        "smoke_checks": Param(
            {},
            title="Smoke checks: severity per check",
            description=(
                "check -> fail | warn | off, over the defaults: sample_answers, answer_is_json, within_timeout: fail; "
                "malformed_request_4xx, schema_examples: warn"
            ),
            **forms.SMOKE_CHECKS_SCHEMA,
        ),
        "tolerance": Param(
            None,
            type=["null", "number"],
            minimum=0,
            maximum=1,
            title="Smoke test relative tolerance",
            description="empty: the package's tolerance.json, else 1e-6",
        ),
        "stress": Param(
            {"rate": 50, "duration_s": 20, "resources": {"cpu": 1.0, "memory_gb": 1.0}},
            title="Stress test: rate (requests/s), duration_s, resources",
            **forms.STRESS_SCHEMA,
        ),
        "slo": Param(
            {"percentile": 99, "latency_ms": 100, "max_error_percent": 1.0},
            title="Latency and error SLO",
            **forms.SLO_SCHEMA,
        ),
        "target_rate": Param(200, type="number", exclusiveMinimum=0, title="Target requests/s in production"),
        "candidates": Param(
            None,
            title="Profile candidates",
            **forms.CANDIDATES_SCHEMA,
            description="empty: deployflow/include/profiling/defaults.json",
        ),
        "profile_settings": Param(
            {},
            title="Profile search settings",
            **forms.PROFILE_SETTINGS_SCHEMA,
            description="e.g. step_duration_s, max_steps, start_rate, max_rate; max_rate_per_worker splits fast steps",
        ),
        "rollout_plan": Param(
            {},
            title="Rollout plan overrides",
            **forms.ROLLOUT_PLAN_SCHEMA,
            description="keys of deployflow/include/rollout/default_plan.json, e.g. steps, gates",
        ),
        "approval": Param(False, type="boolean", title="Ask a person before going past approval steps"),
        "approval_timeout_minutes": Param(
            DEFAULT_TIMEOUT_MINUTES,
            type="number",
            exclusiveMinimum=0,
            title="Minutes a person has to answer an approval",
            description=(
                "no answer by then is a Reject: the rollout is rolled back (old deployment at 100 %, the new one "
                "removed); a plan step's own 'approve timeout 600s' wins. 1440 is a day, 0.5 is 30 s"
            ),
        ),
        "dry_run": Param(
            False,
            type="boolean",
            title="Dry run (Azure ML): record every request, send none",
            description="requests and their spec check go to the task logs and <reports>/dry-run/<conn id>/",
        ),
    },  # fmt: skip
) as dag:
    preflight = PreflightOperator(
        task_id="preflight",
        ml_platform_conn_id=CONN,
        endpoints=[
            {
                "name": TEST_ENDPOINT,
                "compute": "{{ params.test_compute }}",
                "resources": ["{{ params.test_resources }}"],
            },
            {
                "name": STRESS_ENDPOINT,
                "compute": "{{ params.test_pool }}",
                "resources": ["{{ params.stress.resources }}"],
                "candidates": "{{ params.candidates }}",
            },
            {
                "name": "{{ params.endpoint_name }}",
                "compute": "{{ params.production_pool }}",
                "candidates": "{{ params.candidates }}",
            },
        ],
    )
    validate = ValidateModelPackageOperator(
        task_id="validate",
        ml_platform_conn_id=CONN,
        package_path="{{ params.package_path }}",
        model="{{ params.model }}",
        smoke_checks="{{ params.smoke_checks }}",
    )
    claim_endpoint = ClaimEndpointOperator(
        task_id="claim_endpoint",
        ml_platform_conn_id=CONN,
        endpoint_name="{{ params.endpoint_name }}",
        compute="{{ params.production_pool }}",
        retries=3,
    )
    release_endpoint = ReleaseEndpointOperator(
        task_id="release_endpoint", ml_platform_conn_id=CONN, endpoint_name="{{ params.endpoint_name }}", retries=3
    )
    register_model = RegisterModelOperator(
        task_id="register_model",
        ml_platform_conn_id=CONN,
        package_path=PACKAGE,
        model_name="{{ params.model_name }}",
        registered="{{ ti.xcom_pull(task_ids='validate')['model'] }}",
    )

    # -- the test deployment (the old ACI test) --
    create_test_endpoint = CreateOrUpdateEndpointOperator(
        task_id="create_test_endpoint",
        ml_platform_conn_id=CONN,
        endpoint_name=TEST_ENDPOINT,
        compute="{{ params.test_compute }}",
        description="deployflow test deployment (the old ACI test)",
        tags={"deployflow-stage": "test"},
    )
    test_deployment = CreateDeploymentOperator(
        task_id="test_deployment",
        ml_platform_conn_id=CONN,
        endpoint_name=TEST_ENDPOINT,
        deployment_name="candidate",
        model=register_model.output,
        package_path=PACKAGE,
        instance_resources="{{ params.test_resources }}",
        deferrable=True,
    )
    smoke_test = SmokeTestOperator(
        task_id="smoke_test",
        ml_platform_conn_id=CONN,
        endpoint_name=TEST_ENDPOINT,
        deployment_name="candidate",
        package_path=PACKAGE,
        rel_tol="{{ params.tolerance }}",
        smoke_checks="{{ params.smoke_checks }}",
    )
    teardown_test_endpoint = DeleteEndpointOperator(
        task_id="teardown_test_endpoint", ml_platform_conn_id=CONN, endpoint_name=TEST_ENDPOINT
    )

    # -- stress test and profile on the test pool (the old test AKS) --
    create_stress_endpoint = CreateOrUpdateEndpointOperator(
        task_id="create_stress_endpoint",
        ml_platform_conn_id=CONN,
        endpoint_name=STRESS_ENDPOINT,
        compute="{{ params.test_pool }}",
        description="deployflow stress test and profiling",
        tags={"deployflow-stage": "stress"},
    )
    stress_deployment = CreateDeploymentOperator(
        task_id="stress_deployment",
        ml_platform_conn_id=CONN,
        endpoint_name=STRESS_ENDPOINT,
        deployment_name="stress",
        model=register_model.output,
        package_path=PACKAGE,
        instance_resources="{{ params.stress.resources }}",
        deferrable=True,
    )
    # Split over workers above max_rate_per_worker: the parts start together and are merged exactly.
    stress_plan = PlanLoadSplitOperator(
        task_id="stress_plan",
        rate="{{ params.stress.rate }}",
        duration_s="{{ params.stress.duration_s }}",
        max_rate_per_worker="{{ params.stress.get('max_rate_per_worker') }}",
        start_lead_s="{{ params.stress.get('start_lead_s') }}",
    )
    stress_load = StressTestPartOperator.partial(
        task_id="stress_load",
        ml_platform_conn_id=CONN,
        endpoint_name=STRESS_ENDPOINT,
        deployment_name="stress",
        package_path=PACKAGE,
        rate="{{ params.stress.rate }}",
        duration_s="{{ params.stress.duration_s }}",
    ).expand(part=stress_plan.output)
    stress_test = StressTestVerdictOperator(
        task_id="stress_test",
        parts=stress_load.output,
        endpoint_name=STRESS_ENDPOINT,
        deployment_name="stress",
        slo="{{ params.slo }}",
    )
    # Above profile_settings.max_rate_per_worker the profile runs as several parts at once: part 0 searches,
    # the others send their shares of its fast steps; `profile` returns part 0's report.
    profile_plan = PlanProfileSplitOperator(task_id="profile_plan", settings="{{ params.profile_settings }}")
    profile_load = ProfileLoadOperator.partial(
        task_id="profile_load",
        ml_platform_conn_id=CONN,
        endpoint_name=STRESS_ENDPOINT,
        model=register_model.output,
        package_path=PACKAGE,
        candidates="{{ params.candidates }}",
        slo="{{ params.slo }}",
        target_rate="{{ params.target_rate }}",
        settings="{{ params.profile_settings }}",
    ).expand(part=profile_plan.output)
    profile = ProfileResultOperator(task_id="profile", parts=profile_load.output)
    teardown_stress_endpoint = DeleteEndpointOperator(
        task_id="teardown_stress_endpoint", ml_platform_conn_id=CONN, endpoint_name=STRESS_ENDPOINT
    )

    # -- promotion to production by a controlled rollout --
    promote = RolloutOperator(
        task_id="promote",
        ml_platform_conn_id=CONN,
        endpoint_name="{{ params.endpoint_name }}",
        compute="{{ params.production_pool }}",
        model=register_model.output,
        package_path=PACKAGE,
        profile=profile.output,
        plan="{{ params.rollout_plan }}",
        approval="{{ params.approval }}",
    )

    @task.branch
    def needs_approval(ti=None) -> str:  # noqa: ANN001 - Airflow injects the task instance
        """Ask a person only when the rollout stopped at an approval step."""
        status = (ti.xcom_pull(task_ids="promote") or {}).get("status")
        return "approve_promotion" if status == AWAITING_APPROVAL else "no_approval_needed"

    approve_promotion = RolloutApprovalOperator(
        task_id="approve_promotion",
        subject="Promote {{ params.model_name }} on endpoint {{ params.endpoint_name }}?",
        # a Markdown string (the HITL body must be text): what is promoted, the verdicts, the traffic now;
        # the operator adds the deadline, after which Airflow answers Reject
        body="{{ ti.xcom_pull(task_ids='promote')['approval_markdown'] }}",
        timeout_minutes="{{ params.approval_timeout_minutes }}",
        rollout_task_id="promote",
    )
    continue_promotion = RolloutOperator(
        task_id="continue_promotion",
        ml_platform_conn_id=CONN,
        endpoint_name="{{ params.endpoint_name }}",
        resume_task_id="promote",
        model=register_model.output,
        package_path=PACKAGE,
        profile=profile.output,
        plan="{{ params.rollout_plan }}",
        approval="{{ params.approval }}",
        approval_task_id="approve_promotion",
    )
    rollback_if_rejected = RollBackRejectedRolloutOperator(
        task_id="rollback_if_rejected",
        ml_platform_conn_id=CONN,
        rollout_task_id="promote",
        approval_task_id="approve_promotion",
        trigger_rule=TriggerRule.ALL_SKIPPED,
    )

    @task(multiple_outputs=False, trigger_rule=TriggerRule.NONE_FAILED_MIN_ONE_SUCCESS)
    def summary(ti=None, params=None) -> dict:  # noqa: ANN001 - Airflow injects the task instance and params
        """The run in a few lines: endpoint, how to call it, chosen configuration, rollout verdicts, warnings."""
        from deployflow.summary import realtime_summary

        return realtime_summary(ti, conn_id=params["ml_platform_conn_id"])

    preflight >> validate >> claim_endpoint >> register_model >> create_test_endpoint
    create_test_endpoint >> test_deployment >> smoke_test >> teardown_test_endpoint
    teardown_test_endpoint.as_teardown(setups=create_test_endpoint)
    smoke_test >> create_stress_endpoint >> stress_deployment >> stress_plan >> stress_load >> stress_test
    stress_test >> profile_plan >> profile_load >> profile >> teardown_stress_endpoint
    teardown_stress_endpoint.as_teardown(setups=create_stress_endpoint)
    branch = needs_approval()
    no_approval_needed = EmptyOperator(task_id="no_approval_needed")
    done = summary()
    profile >> promote >> branch >> [approve_promotion, no_approval_needed]
    approve_promotion >> continue_promotion >> [rollback_if_rejected, done]
    rollback_if_rejected >> done  # a rejected or timed-out approval has its summary too, saying why
    no_approval_needed >> done
    [done, rollback_if_rejected, teardown_test_endpoint, teardown_stress_endpoint] >> release_endpoint
    release_endpoint.as_teardown(setups=claim_endpoint)
