"""Deployments on Azure ML: submitted without waiting, sized for their endpoint's kind, read back."""

from __future__ import annotations

from pathlib import Path
from unittest.mock import MagicMock

import pytest
from azure.ai.ml.entities import (
    EndpointAuthKeys,
    EndpointAuthToken,
)
from azure.core.exceptions import ResourceNotFoundError

from deployflow.platform import PlatformError, PlatformNotFoundError, Resources
from tests.azureml.support import (
    deployment_spec,
    service_endpoint,
)

NOT_FOUND = ResourceNotFoundError(message="(ResourceNotFound) not found")


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
