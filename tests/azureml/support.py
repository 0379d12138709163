"""The Azure ML SDK boundary, faked with autospec'd operation classes.

Service answers are built the way the SDK builds them: from REST payloads shaped like the
service's, through the SDK's own ``_from_rest_object``; entities the backend sends are
checked by round-tripping them through the SDK's serialisers.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any
from unittest.mock import MagicMock, create_autospec

import yaml
from azure.ai.ml import MLClient, load_job, load_online_deployment, load_online_endpoint
from azure.ai.ml._restclient.arm_ml_service import models as rest
from azure.ai.ml.entities import Job, OnlineDeployment, OnlineEndpoint, PipelineJob
from azure.ai.ml.operations import (
    ComputeOperations,
    JobOperations,
    ModelOperations,
    OnlineDeploymentOperations,
    OnlineEndpointOperations,
)
from azure.core.polling import LROPoller

from deployflow.platform import DeploymentSpec, ModelRef, ProbeSettings, RequestSettings

WORKSPACE_ID = (
    "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg"
    "/providers/Microsoft.MachineLearningServices/workspaces/ws"
)
LOCATION = "westeurope"


def make_ml_client(workspace: str = "ws") -> MagicMock:
    """An MLClient whose operation groups reject any method or argument the SDK does not have."""
    client = MagicMock(spec=MLClient)
    client.workspace_name = workspace
    client.online_endpoints = create_autospec(OnlineEndpointOperations, instance=True)
    client.online_deployments = create_autospec(OnlineDeploymentOperations, instance=True)
    client.models = create_autospec(ModelOperations, instance=True)
    client.compute = create_autospec(ComputeOperations, instance=True)
    client.jobs = create_autospec(JobOperations, instance=True)
    return client


def poller(result: Any = None, *, done: bool = True, status: str = "Succeeded") -> MagicMock:
    fake = create_autospec(LROPoller, instance=True)
    fake.result.return_value = result
    fake.done.return_value = done
    fake.status.return_value = status
    return fake


def service_endpoint(
    name: str = "ep-1",
    *,
    compute: str | None = None,
    traffic: dict[str, int] | None = None,
    mirror: dict[str, int] | None = None,
    state: str = "Succeeded",
    auth_mode: str = "Key",
    scoring_uri: str | None = None,
) -> OnlineEndpoint:
    """An endpoint as ``online_endpoints.get`` returns it."""
    properties: dict[str, Any] = {
        "authMode": auth_mode,
        "provisioningState": state,
        "traffic": traffic or {},
        "mirrorTraffic": mirror or {},
    }
    if scoring_uri is None:
        scoring_uri = f"https://{name}.{LOCATION}.inference.ml.azure.com/score"
    if scoring_uri:  # "" stands for an endpoint still being created, which has none
        properties["scoringUri"] = scoring_uri
    if compute:
        properties["compute"] = f"{WORKSPACE_ID}/computes/{compute}"
    body = {
        "id": f"{WORKSPACE_ID}/onlineEndpoints/{name}",
        "name": name,
        "location": LOCATION,
        "identity": {"type": "SystemAssigned"},
        "properties": properties,
    }
    return OnlineEndpoint._from_rest_object(rest.OnlineEndpoint(body))


def service_deployment(
    endpoint: str = "ep-1",
    name: str = "blue",
    *,
    kubernetes: bool = False,
    state: str = "Succeeded",
    model: str = f"{WORKSPACE_ID}/models/diabetes/versions/3",
    instance_count: int = 1,
    instance_type: str | None = "Standard_DS3_v2",
    requests: dict[str, str] | None = None,
    limits: dict[str, str] | None = None,
) -> OnlineDeployment:
    """A deployment as ``online_deployments.get`` returns it."""
    properties: dict[str, Any] = {
        "endpointComputeType": "Kubernetes" if kubernetes else "Managed",
        "provisioningState": state,
        "model": model,
        "instanceType": instance_type,
        "scaleSettings": {"scaleType": "Default"},
    }
    if kubernetes:
        properties["containerResourceRequirements"] = {
            "containerResourceRequests": requests or {},
            "containerResourceLimits": limits or {},
        }
    body = {
        "id": f"{WORKSPACE_ID}/onlineEndpoints/{endpoint}/deployments/{name}",
        "name": name,
        "location": LOCATION,
        "sku": {"name": "Default", "capacity": instance_count},
        "properties": properties,
    }
    return OnlineDeployment._from_rest_object(rest.OnlineDeployment(body))


def as_yaml(entity: Any) -> io.StringIO:
    # _to_dict() holds OrderedDicts; JSON turns them into what a YAML file would hold
    return io.StringIO(yaml.safe_dump(json.loads(json.dumps(entity._to_dict()))))


def reload_endpoint(entity: OnlineEndpoint) -> OnlineEndpoint:
    """The endpoint through the SDK's YAML schema and REST model: a field the service would
    reject fails here."""
    loaded = load_online_endpoint(as_yaml(entity))
    assert loaded._to_rest_online_endpoint(LOCATION).as_dict() == entity._to_rest_online_endpoint(LOCATION).as_dict()
    return loaded


def reload_deployment(entity: OnlineDeployment) -> OnlineDeployment:
    loaded = load_online_deployment(as_yaml(entity))
    sent = entity._to_rest_object(location=LOCATION).as_dict()
    again = loaded._to_rest_object(location=LOCATION).as_dict()
    # the YAML schema drops the "azureml:" prefix of a model reference; everything else must survive
    assert sent["properties"].pop("model") == "azureml:" + again["properties"].pop("model")
    assert sent == again
    return loaded


def deployment_spec(package: Path, **overrides: Any) -> DeploymentSpec:
    """A deployment of diabetes:3 as blue behind ep-1, with every setting away from its default."""
    values = {
        "endpoint": "ep-1",
        "name": "blue",
        "model": ModelRef("diabetes", "3"),
        "package_path": str(package),
        "instance_count": 2,
        "worker_count": 3,
        "request_settings": RequestSettings(request_timeout_ms=3000, max_concurrent_requests_per_instance=4),
        "liveness_probe": ProbeSettings(initial_delay_s=20, period_s=5, timeout_s=3, failure_threshold=10),
        "environment_variables": {"LOG_LEVEL": "info"},
    }
    return DeploymentSpec(**{**values, **overrides})


def service_job(
    name: str = "sharp_lime_9x2k",
    *,
    status: str = "Queued",
    experiment: str = "nightly-scoring",
    tags: dict[str, str] | None = None,
) -> Job:
    """A pipeline job as ``jobs.get`` and ``jobs.create_or_update`` return it."""
    body = {
        "id": f"{WORKSPACE_ID}/jobs/{name}",
        "name": name,
        "type": "Microsoft.MachineLearningServices/workspaces/jobs",
        "properties": {
            "jobType": "Pipeline",
            "status": status,
            "displayName": experiment,
            "experimentName": experiment,
            "tags": tags or {},
            "services": {"Studio": {"jobServiceType": "Studio", "endpoint": f"https://ml.azure.com/runs/{name}"}},
            "settings": {"default_compute": f"{WORKSPACE_ID}/computes/cpu-cluster"},
            "jobs": {},
            "inputs": {},
            "outputs": {},
        },
    }
    return Job._from_rest_object(rest.JobBase(body))


def reload_pipeline_job(job: PipelineJob) -> PipelineJob:
    """The pipeline job through the SDK's validation, YAML schema and REST model: a field the
    service would reject fails here."""
    job._validate(raise_error=True)
    loaded = load_job(as_yaml(job))
    assert isinstance(loaded, PipelineJob)
    sent = job._to_rest_object().as_dict()["properties"]
    again = loaded._to_rest_object().as_dict()["properties"]
    for name, node in sent["jobs"].items():
        node_again = again["jobs"][name]
        # the inline component is sent as YAML and reloaded as an anonymous entity: compare all but its name
        component, component_again = (json.loads(json.dumps(j.jobs[name].component._to_dict())) for j in (job, loaded))
        for key in ("name", "version"):
            component.pop(key, None), component_again.pop(key, None)
        assert component == component_again
        for key in ("componentId", "_source"):
            node.pop(key), node_again.pop(key)
        # the YAML dump of a node input marks a URI or a model reference as an asset ("azureml:") and the
        # load drops the mark from "azureml:name:version": undo both quirks, nothing else may differ
        for value in node_again["inputs"].values():
            value["uri"] = value["uri"].removeprefix("azureml:")
        for value in node["inputs"].values():
            value["uri"] = value["uri"].removeprefix("azureml:")
    sent["settings"].pop("_source"), again["settings"].pop("_source")
    assert sent == again
    return loaded
