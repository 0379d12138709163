"""
# Real-time deployment

Carries a model package through Azure ML's real-time deployment practice:

1. **validate** — the package is complete; `init()` and `run()` answer the sample request
   with the sample response, in the model's own environment.
2. **register** the model version.
3. **test deployment** (the old "ACI test"; a managed online endpoint on Azure ML, a local
   endpoint on the runtime): deploy, then input/output **smoke tests** through the
   `azureml-model-deployment` header.
4. **teardown** of the test endpoint, which runs whether the tests passed or not.

Which platform answers is the `ml_platform_conn_id` connection's business: `deployflow_local`
(the local runtime, the default) or `azure_ml`. Trigger it from the UI's form or the REST API.
"""

from __future__ import annotations

from pathlib import Path

from airflow.sdk import DAG, Param

from deployflow.operators.deployment import CreateDeploymentOperator, SmokeTestOperator
from deployflow.operators.endpoint import CreateOrUpdateEndpointOperator, DeleteEndpointOperator
from deployflow.operators.model import RegisterModelOperator, ValidateModelPackageOperator

SAMPLE_PACKAGE = str(Path(__file__).resolve().parents[1] / "include" / "models" / "diabetes")
NAME = r"^[a-zA-Z][a-zA-Z0-9-]{1,25}[a-zA-Z0-9]$"  # leaves room for the "-test" suffix (32 in all)
CONN = "{{ params.ml_platform_conn_id }}"
TEST_ENDPOINT = "{{ params.endpoint_name }}-test"

with DAG(
    dag_id="realtime_deployment",
    schedule=None,
    catchup=False,
    doc_md=__doc__,
    tags=["deployflow", "real-time"],
    default_args={"retries": 1, "owner": "deployflow"},
    max_active_runs=1,
    render_template_as_native_obj=True,
    params={
        "package_path": Param(
            SAMPLE_PACKAGE,
            type="string",
            minLength=1,
            title="Model package folder",
            description="score.py, requirements.txt, model/, sample-request.json, sample-response.json",
        ),
        "model_name": Param(
            "diabetes", type="string", pattern=r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,254}$", title="Registered model name"
        ),
        "endpoint_name": Param(
            "diabetes",
            type="string",
            pattern=NAME,
            title="Production endpoint name",
            description="the test endpoint is this name with -test",
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
            title="Test compute",
            description="empty: a managed endpoint (Azure ML) / local endpoint",
        ),
        "test_resources": Param(
            {"cpu": 0.5, "memory_gb": 1.0, "instance_type": "Standard_DS3_v2"},
            type="object",
            title="Test deployment resources",
        ),
        "tolerance": Param(1e-6, type="number", minimum=0, maximum=1, title="Smoke test relative tolerance"),
    },  # fmt: skip
) as dag:
    validate = ValidateModelPackageOperator(task_id="validate", package_path="{{ params.package_path }}")
    register = RegisterModelOperator(
        task_id="register_model",
        ml_platform_conn_id=CONN,
        package_path="{{ params.package_path }}",
        model_name="{{ params.model_name }}",
    )
    test_endpoint = CreateOrUpdateEndpointOperator(
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
        model="{{ ti.xcom_pull(task_ids='register_model') }}",
        package_path="{{ params.package_path }}",
        instance_resources="{{ params.test_resources }}",
        deferrable=True,
    )
    smoke_test = SmokeTestOperator(
        task_id="smoke_test",
        ml_platform_conn_id=CONN,
        endpoint_name=TEST_ENDPOINT,
        deployment_name="candidate",
        package_path="{{ params.package_path }}",
        rel_tol="{{ params.tolerance }}",
    )
    teardown_test = DeleteEndpointOperator(
        task_id="teardown_test_endpoint", ml_platform_conn_id=CONN, endpoint_name=TEST_ENDPOINT
    )

    validate >> register >> test_endpoint >> test_deployment >> smoke_test >> teardown_test
    teardown_test.as_teardown(setups=test_endpoint)
