"""One AKS cluster attached to several workspaces, and the instance types rendered for it."""

from __future__ import annotations

import io
import json

import pytest
import yaml
from azure.ai.ml import load_compute
from azure.ai.ml.entities import AmlCompute, KubernetesCompute
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError

from deployflow.azureml import AzureMLPlatform, attach_shared_aks, render_instance_types
from deployflow.platform import PlatformError, Resources
from tests.azureml.support import make_ml_client, poller

CLUSTER = "/subscriptions/0000/resourceGroups/rg-aks/providers/Microsoft.ContainerService/managedClusters/aks-shared"
NOT_FOUND = ResourceNotFoundError(message="(ResourceNotFound) no such compute")


def attached(resource_id: str = CLUSTER, namespace: str = "azureml") -> KubernetesCompute:
    return KubernetesCompute(name="aks-shared", resource_id=resource_id, namespace=namespace)


def test_attaches_where_missing_and_skips_where_already_attached(retry) -> None:
    dev, test, prod = make_ml_client("ws-dev"), make_ml_client("ws-test"), make_ml_client("ws-prod")
    dev.compute.get.side_effect = NOT_FOUND
    test.compute.get.return_value = attached(CLUSTER.upper())  # ARM ids compare without case
    prod.compute.get.side_effect = NOT_FOUND
    dev_put, prod_put = poller(), poller()
    dev.compute.begin_create_or_update.return_value = dev_put
    prod.compute.begin_create_or_update.return_value = prod_put

    report = attach_shared_aks(
        [dev, AzureMLPlatform(test), AzureMLPlatform(prod)],
        compute_name="aks-shared",
        resource_id=CLUSTER,
        namespace="azureml",
        timeout_s=300,
        retry=retry,
    )

    assert (report.attached, report.already_attached) == (["ws-dev", "ws-prod"], ["ws-test"])
    test.compute.begin_create_or_update.assert_not_called()
    dev.compute.get.assert_called_once_with(name="aks-shared")
    for client, put in ((dev, dev_put), (prod, prod_put)):
        (compute,), kwargs = client.compute.begin_create_or_update.call_args
        assert kwargs == {}
        assert type(compute) is KubernetesCompute
        assert (compute.name, compute.resource_id, compute.namespace) == ("aks-shared", CLUSTER, "azureml")
        sent = compute._to_rest_object().as_dict()
        assert sent["properties"] == {
            "computeType": "Kubernetes",
            "resourceId": CLUSTER,
            "properties": {"namespace": "azureml"},
        }
        loaded = load_compute(io.StringIO(yaml.safe_dump(json.loads(json.dumps(compute._to_dict())))))
        assert loaded._to_rest_object().as_dict() == sent
        put.result.assert_called_once_with(timeout=300)


@pytest.mark.parametrize(
    ("existing", "message"),
    [
        (attached(CLUSTER.replace("aks-shared", "aks-other")), "attached to another cluster"),
        (attached(namespace="default"), "uses namespace default, not azureml"),
        (AmlCompute(name="aks-shared", size="STANDARD_DS3_V2"), "of type amlcompute; choose another compute_name"),
    ],
)
def test_a_name_taken_in_any_workspace_stops_before_anything_changes(existing, message) -> None:
    first, second = make_ml_client("ws-a"), make_ml_client("ws-b")
    first.compute.get.side_effect = NOT_FOUND
    second.compute.get.return_value = existing
    with pytest.raises(PlatformError, match=f"workspace ws-b.*{message}"):
        attach_shared_aks([first, second], compute_name="aks-shared", resource_id=CLUSTER, namespace="azureml")
    first.compute.begin_create_or_update.assert_not_called()


def test_a_failed_attach_names_the_workspace(retry) -> None:
    client = make_ml_client("ws-dev")
    client.compute.get.side_effect = NOT_FOUND
    error = HttpResponseError(message="(BadRequest) extension not installed")
    error.status_code = 400
    client.compute.begin_create_or_update.side_effect = error
    with pytest.raises(PlatformError, match="compute aks-shared in workspace ws-dev.*Azure ML extension is installed"):
        attach_shared_aks([client], compute_name="aks-shared", resource_id=CLUSTER, retry=retry)


def test_a_resource_id_that_is_not_a_cluster_is_refused() -> None:
    client = make_ml_client()
    with pytest.raises(PlatformError, match="not the resource id of an AKS"):
        attach_shared_aks([client], compute_name="aks-shared", resource_id="aks-shared")
    client.compute.get.assert_not_called()


def test_one_instance_type_renders_as_the_documented_custom_resource() -> None:
    document = yaml.safe_load(render_instance_types([Resources(cpu=0.5, memory_gb=2)]))
    assert document == {
        "apiVersion": "amlarc.azureml.com/v1alpha1",
        "kind": "InstanceType",
        "metadata": {"name": "cpu500m-mem2gi"},
        "spec": {
            "resources": {
                "requests": {"cpu": "500m", "memory": "2Gi"},
                "limits": {"cpu": "500m", "memory": "2Gi"},
            }
        },
    }


def test_several_instance_types_render_as_a_list_with_gpus_in_limits_only() -> None:
    text = render_instance_types(
        [Resources(cpu=1, memory_gb=2), Resources(cpu=4, memory_gb=16, gpu=1), Resources(cpu=1.0, memory_gb=2.0)]
    )
    document = yaml.safe_load(text)
    assert (document["apiVersion"], document["kind"]) == ("amlarc.azureml.com/v1alpha1", "InstanceTypeList")
    assert [item["metadata"]["name"] for item in document["items"]] == ["cpu1-mem2gi", "cpu4-mem16gi-gpu1"]
    gpu = document["items"][1]["spec"]["resources"]
    assert gpu["limits"] == {"cpu": "4", "memory": "16Gi", "nvidia.com/gpu": 1}
    assert "nvidia.com/gpu" not in gpu["requests"]
    assert "cpu: '1'" in text  # a quantity stays a string, as the CRD wants


def test_instance_types_need_cpu_and_memory() -> None:
    with pytest.raises(ValueError, match="needs both cpu and memory_gb"):
        render_instance_types([Resources(instance_type="Standard_DS3_v2")])
    with pytest.raises(ValueError, match="no resource configurations"):
        render_instance_types([])
