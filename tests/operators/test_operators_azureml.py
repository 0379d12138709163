"""The operators on an ``azure_ml`` connection, with Azure ML mocked at the SDK boundary.

The connection is a real Airflow connection (from the environment); the hook builds the Azure
ML backend from it; only ``MLClient`` is replaced, by a spec'd mock whose operation groups
reject any method or argument the SDK lacks. Each entity sent is round-tripped through the
SDK's own YAML schema and REST model.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from datetime import datetime
from typing import Any
from unittest.mock import MagicMock, patch

import pytest
from airflow.sdk import DAG
from azure.ai.ml.entities import KubernetesOnlineDeployment, KubernetesOnlineEndpoint

from deployflow.hooks.ml_platform import MLPlatformHook
from deployflow.operators.deployment import CreateDeploymentOperator, DeleteDeploymentOperator
from deployflow.operators.endpoint import CreateOrUpdateEndpointOperator
from tests.airflow_support import run_dag, task_states
from tests.azureml.support import (
    make_ml_client,
    poller,
    reload_deployment,
    reload_endpoint,
    service_deployment,
    service_endpoint,
)
from tests.runtime.support import SAMPLE_MODEL

CONN_ID = "aml_test"
SECRET = "sp-secret-value-never-logged"
TENANT = "tenant-0000-never-logged"


@pytest.fixture
def ml_client(monkeypatch: pytest.MonkeyPatch) -> Iterator[MagicMock]:
    connection = {
        "conn_type": "azure_ml",
        "login": "client-id",
        "password": SECRET,
        "extra": {"subscription_id": "sub-1", "resource_group": "rg-1", "workspace_name": "ws", "tenant_id": TENANT},
    }
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", json.dumps(connection))
    client = make_ml_client()
    with patch("deployflow.azureml.backend.MLClient", return_value=client) as constructor:
        yield client
    assert constructor.call_args.kwargs["subscription_id"] == "sub-1"
    assert constructor.call_args.kwargs["workspace_name"] == "ws"


def test_the_connection_type_chooses_the_azure_ml_backend(ml_client: MagicMock) -> None:
    platform = MLPlatformHook(ml_platform_conn_id=CONN_ID).platform
    assert platform.kind == "azureml"
    assert SECRET not in repr(platform) and TENANT not in repr(platform)


def _endpoint_then_deployment_dag(**deployment: Any) -> DAG:
    with DAG("aml_operators", schedule=None, start_date=datetime(2026, 1, 1), catchup=False) as dag:
        endpoint = CreateOrUpdateEndpointOperator(
            task_id="endpoint", ml_platform_conn_id=CONN_ID, endpoint_name="diabetes-prod", compute="aks-prod"
        )
        deploy = CreateDeploymentOperator(
            task_id="deploy",
            ml_platform_conn_id=CONN_ID,
            endpoint_name="diabetes-prod",
            deployment_name="green",
            model="diabetes:3",
            package_path=str(SAMPLE_MODEL),
            instance_resources={"cpu": 0.5, "memory_gb": 1.5},
            instance_count=2,
            poll_interval=0.01,
            **deployment,
        )
        endpoint >> deploy
    return dag


@pytest.mark.parametrize("deferrable", [False, True], ids=["worker waits", "trigger waits"])
def test_endpoint_and_deployment_on_attached_aks(
    ml_client: MagicMock, deferrable: bool, caplog: pytest.LogCaptureFixture
) -> None:
    created = service_endpoint("diabetes-prod", compute="aks-prod")
    ml_client.online_endpoints.get.return_value = created
    ml_client.online_endpoints.begin_create_or_update.return_value = poller(created)
    ml_client.online_deployments.list.return_value = []
    ml_client.online_deployments.begin_create_or_update.return_value = poller(status="InProgress", done=False)
    ml_client.online_deployments.get.side_effect = [
        service_deployment("diabetes-prod", "green", kubernetes=True, state="Creating"),
        service_deployment("diabetes-prod", "green", kubernetes=True, state="Succeeded"),
    ]
    caplog.set_level(logging.DEBUG)

    dag_run = run_dag(_endpoint_then_deployment_dag(deferrable=deferrable), retries=0)

    assert task_states(dag_run) == {"endpoint": "success", "deploy": "success"}
    sent_endpoint = ml_client.online_endpoints.begin_create_or_update.call_args.args[0]
    assert isinstance(sent_endpoint, KubernetesOnlineEndpoint)
    assert sent_endpoint.compute == "aks-prod"
    reload_endpoint(sent_endpoint)
    sent = ml_client.online_deployments.begin_create_or_update.call_args.args[0]
    assert isinstance(sent, KubernetesOnlineDeployment)
    assert (sent.name, sent.endpoint_name, sent.model, sent.instance_count) == (
        "green", "diabetes-prod", "azureml:diabetes:3", 2,
    )  # fmt: skip
    assert sent.resources.requests.cpu == "500m" and sent.resources.requests.memory == "1536Mi"
    reload_deployment(sent)
    assert SECRET not in caplog.text and TENANT not in caplog.text


def test_a_failed_provisioning_deletes_the_new_deployment_and_fails_the_task(ml_client: MagicMock) -> None:
    endpoint = service_endpoint("diabetes-prod", compute="aks-prod")
    ml_client.online_endpoints.get.return_value = endpoint
    ml_client.online_endpoints.begin_create_or_update.return_value = poller(endpoint)
    ml_client.online_deployments.list.return_value = []
    ml_client.online_deployments.begin_create_or_update.return_value = poller(status="InProgress", done=False)
    ml_client.online_deployments.get.return_value = service_deployment(
        "diabetes-prod", "green", kubernetes=True, state="Failed"
    )
    ml_client.online_deployments.get_logs.return_value = "ImportError: no module named sklearn"
    ml_client.online_deployments.begin_delete.return_value = poller()

    dag_run = run_dag(_endpoint_then_deployment_dag(deferrable=True), retries=0)

    assert task_states(dag_run)["deploy"] == "failed"
    ml_client.online_deployments.begin_delete.assert_called_once_with(name="green", endpoint_name="diabetes-prod")


def test_deleting_a_deployment_that_takes_live_traffic_is_refused(ml_client: MagicMock) -> None:
    ml_client.online_endpoints.get.return_value = service_endpoint(
        "diabetes-prod", compute="aks-prod", traffic={"blue": 50, "green": 50}
    )
    with DAG("aml_delete", schedule=None, start_date=datetime(2026, 1, 1), catchup=False) as dag:
        DeleteDeploymentOperator(
            task_id="delete", ml_platform_conn_id=CONN_ID, endpoint_name="diabetes-prod", deployment_name="green"
        )

    dag_run = run_dag(dag, retries=0)

    assert task_states(dag_run)["delete"] == "failed"
    ml_client.online_deployments.begin_delete.assert_not_called()


def test_attach_shared_aks_to_two_workspaces_skips_the_one_that_has_it(monkeypatch: pytest.MonkeyPatch) -> None:
    from azure.ai.ml.entities import KubernetesCompute

    from deployflow.operators.aks import AttachSharedAksOperator

    cluster = "/subscriptions/sub-1/resourceGroups/rg-aks/providers/Microsoft.ContainerService/managedClusters/shared"
    clients = {"ws-a": make_ml_client("ws-a"), "ws-b": make_ml_client("ws-b")}
    for workspace in clients:
        extra = {"subscription_id": "sub-1", "resource_group": "rg-1", "workspace_name": workspace}
        monkeypatch.setenv(
            f"AIRFLOW_CONN_AML_{workspace[-1].upper()}", json.dumps({"conn_type": "azure_ml", "extra": extra})
        )
    from azure.core.exceptions import ResourceNotFoundError

    clients["ws-a"].compute.get.side_effect = ResourceNotFoundError("no such compute")
    clients["ws-a"].compute.begin_create_or_update.return_value = poller()
    clients["ws-b"].compute.get.return_value = KubernetesCompute(
        name="aks-prod", resource_id=cluster, namespace="models"
    )
    with DAG("aml_attach", schedule=None, start_date=datetime(2026, 1, 1), catchup=False) as dag:
        AttachSharedAksOperator(
            task_id="attach",
            ml_platform_conn_ids=["aml_a", "aml_b"],
            compute_name="aks-prod",
            resource_id=cluster,
            namespace="models",
        )

    with (
        patch("deployflow.azureml.backend.MLClient", side_effect=lambda **kw: clients[kw["workspace_name"]]),
        patch("azure.identity.DefaultAzureCredential"),
    ):
        dag_run = run_dag(dag, retries=0)

    assert task_states(dag_run) == {"attach": "success"}
    sent = clients["ws-a"].compute.begin_create_or_update.call_args.args[0]
    assert (sent.name, sent.resource_id, sent.namespace) == ("aks-prod", cluster, "models")
    clients["ws-b"].compute.begin_create_or_update.assert_not_called()
