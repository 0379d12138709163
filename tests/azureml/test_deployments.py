"""Deployments on Azure ML: submitted without waiting, sized for their endpoint's kind, read back."""

from __future__ import annotations

from pathlib import Path
from unittest.mock import MagicMock

import pytest
from azure.ai.ml.entities import (
    EndpointAuthKeys,
    EndpointAuthToken,
    KubernetesOnlineDeployment,
    ManagedOnlineDeployment,
)
from azure.core.exceptions import ResourceNotFoundError

from deployflow.azureml.entities import BASE_IMAGE, DEFAULT_INSTANCE_TYPE
from deployflow.platform import PlatformError, PlatformNotFoundError, Resources
from tests.azureml.support import (
    deployment_spec,
    poller,
    reload_deployment,
    service_deployment,
    service_endpoint,
)

NOT_FOUND = ResourceNotFoundError(message="(ResourceNotFound) not found")


def test_managed_deployment_is_submitted_without_waiting(platform, ml_client, package: Path) -> None:
    ml_client.online_endpoints.get.return_value = service_endpoint("ep-1")
    submitted = poller(done=False, status="Creating")
    ml_client.online_deployments.begin_create_or_update.return_value = submitted

    state = platform.begin_create_or_update_deployment(deployment_spec(package))

    (entity,), kwargs = ml_client.online_deployments.begin_create_or_update.call_args
    assert kwargs == {}
    submitted.result.assert_not_called()
    assert (state.provisioning_state, state.done, state.model) == ("Creating", False, "diabetes:3")
    assert type(entity) is ManagedOnlineDeployment
    assert (entity.name, entity.endpoint_name, entity.model) == ("blue", "ep-1", "azureml:diabetes:3")
    assert (entity.instance_type, entity.instance_count) == (DEFAULT_INSTANCE_TYPE, 2)
    code = entity.code_configuration
    assert (code.code, code.scoring_script) == (str(package.resolve()), "score.py")
    assert entity.environment.image == BASE_IMAGE
    assert entity.environment.conda_file["dependencies"][-1] == {
        "pip": ["azureml-inference-server-http==1.5.1", "scikit-learn==1.9.1"]
    }
    assert entity.environment_variables == {"LOG_LEVEL": "info", "WORKER_COUNT": "3"}
    settings = entity.request_settings
    assert (settings.request_timeout_ms, settings.max_concurrent_requests_per_instance) == (3000, 4)
    assert (entity.liveness_probe.initial_delay, entity.liveness_probe.failure_threshold) == (20, 10)
    assert entity.readiness_probe.period == 10
    loaded = reload_deployment(entity)
    assert loaded.environment.conda_file == entity.environment.conda_file


def test_kubernetes_deployment_requests_its_profiled_resources(platform, ml_client, package: Path) -> None:
    ml_client.online_endpoints.get.return_value = service_endpoint("ep-1", compute="aks-test")
    ml_client.online_deployments.begin_create_or_update.return_value = poller(done=False, status="InProgress")
    spec = deployment_spec(package, resources=Resources(cpu=0.5, memory_gb=1.5, gpu=1, instance_type="gpu-small"))

    platform.begin_create_or_update_deployment(spec)

    (entity,), _ = ml_client.online_deployments.begin_create_or_update.call_args
    assert type(entity) is KubernetesOnlineDeployment
    assert entity.instance_type == "gpu-small"
    requests, limits = entity.resources.requests, entity.resources.limits
    assert (requests.cpu, requests.memory, requests.gpu) == ("500m", "1536Mi", None)
    assert (limits.cpu, limits.memory, limits.gpu) == ("500m", "1536Mi", "1")
    rest = entity._to_rest_object(location="westeurope").as_dict()["properties"]
    assert rest["endpointComputeType"] == "Kubernetes"
    assert rest["containerResourceRequirements"]["containerResourceLimits"] == {
        "cpu": "500m",
        "memory": "1536Mi",
        "gpu": "1",
    }
    assert reload_deployment(entity).resources.limits.gpu == "1"


def test_kubernetes_deployment_with_cpu_but_no_memory_is_refused(platform, ml_client, package: Path) -> None:
    ml_client.online_endpoints.get.return_value = service_endpoint("ep-1", compute="aks-test")
    with pytest.raises(PlatformError, match="needs both cpu and memory_gb"):
        platform.begin_create_or_update_deployment(deployment_spec(package, resources=Resources(cpu=1)))
    ml_client.online_deployments.begin_create_or_update.assert_not_called()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("no_package", "has no package_path"),
        ("no_score", "has no score.py"),
        ("worker_conflict", "WORKER_COUNT=8 contradicts worker_count=3"),
        ("no_server", "must list azureml-inference-server-http"),
    ],
)
def test_deployment_problems_are_named_before_calling_azure(
    platform, ml_client, package: Path, change: str, message: str
) -> None:
    ml_client.online_endpoints.get.return_value = service_endpoint("ep-1")
    spec = deployment_spec(package)
    if change == "no_package":
        spec = deployment_spec(package, package_path=None)
    elif change == "no_score":
        (package / "score.py").unlink()
    elif change == "worker_conflict":
        spec = deployment_spec(package, environment_variables={"WORKER_COUNT": "8"})
    else:
        (package / "requirements.txt").write_text("numpy==2.4.6\n")
    with pytest.raises(PlatformError, match=message):
        platform.begin_create_or_update_deployment(spec)
    ml_client.online_deployments.begin_create_or_update.assert_not_called()


def test_deployment_behind_a_missing_endpoint_is_not_found(platform, ml_client, package: Path) -> None:
    ml_client.online_endpoints.get.side_effect = NOT_FOUND
    with pytest.raises(PlatformNotFoundError, match="get endpoint ep-1"):
        platform.begin_create_or_update_deployment(deployment_spec(package))


def test_get_deployment_maps_the_service_answer(platform, ml_client) -> None:
    ml_client.online_deployments.get.return_value = service_deployment(
        kubernetes=True,
        state="Failed",
        instance_count=3,
        instance_type="cpu1-mem2gi",
        requests={"cpu": "500m", "memory": "1536Mi"},
        limits={"cpu": "500m", "memory": "1536Mi", "gpu": "1"},
    )
    state = platform.get_deployment("ep-1", "blue")
    ml_client.online_deployments.get.assert_called_once_with(name="blue", endpoint_name="ep-1")
    assert (state.endpoint, state.name, state.provisioning_state) == ("ep-1", "blue", "Failed")
    assert (state.done, state.failed, state.model, state.instance_count) == (True, True, "diabetes:3", 3)
    assert state.resources == Resources(cpu=0.5, memory_gb=1.5, gpu=1, instance_type="cpu1-mem2gi")


def test_list_deployments(platform, ml_client) -> None:
    ml_client.online_deployments.list.return_value = iter(
        [service_deployment(name="blue"), service_deployment(name="green", state="Creating", model="azureml:d:4")]
    )
    states = platform.list_deployments("ep-1")
    ml_client.online_deployments.list.assert_called_once_with(endpoint_name="ep-1")
    assert [(s.name, s.provisioning_state, s.model) for s in states] == [
        ("blue", "Succeeded", "diabetes:3"),
        ("green", "Creating", "d:4"),
    ]
    assert states[0].resources == Resources(instance_type="Standard_DS3_v2")


def test_delete_deployment_waits_for_the_deletion(platform, ml_client) -> None:
    ml_client.online_deployments.get.return_value = service_deployment(name="green")
    ml_client.online_endpoints.get.return_value = service_endpoint("ep-1", traffic={"blue": 100, "green": 0})
    gone = poller()
    ml_client.online_deployments.begin_delete.return_value = gone
    assert platform.delete_deployment("ep-1", "green", timeout_s=45) is True
    ml_client.online_deployments.begin_delete.assert_called_once_with(name="green", endpoint_name="ep-1")
    gone.result.assert_called_once_with(timeout=45)


def test_delete_missing_deployment_is_false(platform, ml_client) -> None:
    ml_client.online_deployments.get.side_effect = NOT_FOUND
    assert platform.delete_deployment("ep-1", "green") is False
    ml_client.online_deployments.begin_delete.assert_not_called()


def test_a_deployment_with_live_traffic_is_not_deleted(platform, ml_client) -> None:
    ml_client.online_deployments.get.return_value = service_deployment(name="blue")
    ml_client.online_endpoints.get.return_value = service_endpoint("ep-1", traffic={"blue": 100})
    with pytest.raises(PlatformError, match="blue still receives traffic.*set its traffic to 0"):
        platform.delete_deployment("ep-1", "blue")
    ml_client.online_deployments.begin_delete.assert_not_called()


def test_deployment_logs(platform, ml_client) -> None:
    ml_client.online_deployments.get_logs.return_value = "Booting worker\nInitialized\n"
    assert platform.get_deployment_logs("ep-1", "blue", lines=50) == "Booting worker\nInitialized\n"
    ml_client.online_deployments.get_logs.assert_called_once_with(name="blue", endpoint_name="ep-1", lines=50)


def test_keys_for_key_and_token_endpoints(platform, ml_client: MagicMock) -> None:
    ml_client.online_endpoints.get_keys.side_effect = [
        EndpointAuthKeys(primary_key="pk-1", secondary_key="sk-1"),
        EndpointAuthToken(access_token="tok-1", expiry_time_utc=0),
    ]
    keys = platform.get_keys("ep-1")
    assert (keys.primary_key, keys.secondary_key) == ("pk-1", "sk-1")
    assert "pk-1" not in repr(keys)
    assert platform.scoring_headers("ep-1")["Authorization"] == "Bearer tok-1"
    ml_client.online_endpoints.get_keys.assert_called_with(name="ep-1")
