"""Models, endpoints and traffic against spec'd SDK operations: the exact calls, entities the SDK accepts."""

from __future__ import annotations

from pathlib import Path

import pytest
from azure.ai.ml import load_model
from azure.ai.ml.constants import AssetTypes
from azure.ai.ml.entities import (
    KubernetesOnlineEndpoint,
    ManagedOnlineEndpoint,
    Model,
)
from azure.core.credentials import AccessToken
from azure.core.exceptions import ResourceNotFoundError

from deployflow.azureml import AzureMLPlatform
from deployflow.platform import (
    EndpointSpec,
    ModelRef,
    PlatformError,
    PlatformNotFoundError,
)
from tests.azureml.support import (
    as_yaml,
    poller,
    reload_endpoint,
    service_endpoint,
)

NOT_FOUND = ResourceNotFoundError(message="(ResourceNotFound) not found")


def test_from_workspace_builds_the_client_without_calling_azure() -> None:
    class Credential:
        def get_token(self, *scopes: str, **kwargs: object) -> AccessToken:
            raise AssertionError("no token may be requested before the first operation")

    platform = AzureMLPlatform.from_workspace(
        "11111111-2222-3333-4444-555555555555", "rg-ml", "ws-prod", credential=Credential()
    )
    assert platform.kind == "azureml"
    assert (platform.ml_client.subscription_id, platform.ml_client.resource_group_name) == (
        "11111111-2222-3333-4444-555555555555",
        "rg-ml",
    )
    assert platform.ml_client.workspace_name == "ws-prod"
    assert "11111111" not in repr(platform)


# models


def test_register_model_uploads_the_package_model_folder(platform, ml_client, package: Path) -> None:
    ml_client.models.create_or_update.return_value = Model(name="diabetes", version="4", path="azureml://x")
    ref = platform.register_model("diabetes", str(package), description="sklearn ridge")

    assert ref == ModelRef("diabetes", "4")
    (model,), kwargs = ml_client.models.create_or_update.call_args
    assert kwargs == {}
    assert (model.name, model.version, model.type) == ("diabetes", None, AssetTypes.CUSTOM_MODEL)
    assert model.path == str((package / "model").resolve())
    assert model.description == "sklearn ridge"
    assert model._to_rest_object().as_dict()["properties"]["modelType"] == "custom_model"
    assert load_model(as_yaml(model)).path == model.path


def test_register_model_without_model_folder_names_it(platform, ml_client, tmp_path: Path) -> None:
    with pytest.raises(PlatformError, match="has no model/ folder"):
        platform.register_model("diabetes", str(tmp_path))
    ml_client.models.create_or_update.assert_not_called()


# endpoints


def test_new_managed_endpoint(platform, ml_client) -> None:
    created = service_endpoint("ep-test", state="Succeeded")
    ml_client.online_endpoints.get.side_effect = [NOT_FOUND, created]
    put = poller(created)
    ml_client.online_endpoints.begin_create_or_update.return_value = put

    state = platform.create_or_update_endpoint(
        EndpointSpec("ep-test", description="smoke tests", tags={"stage": "test"}), timeout_s=120
    )

    (entity,), kwargs = ml_client.online_endpoints.begin_create_or_update.call_args
    assert kwargs == {}
    assert type(entity) is ManagedOnlineEndpoint
    assert (entity.name, entity.auth_mode, entity.description, entity.tags) == (
        "ep-test",
        "key",
        "smoke tests",
        {"stage": "test"},
    )
    assert entity.traffic == {}
    reload_endpoint(entity)
    put.result.assert_called_once_with(timeout=120)
    assert state.provisioning_state == "Succeeded"
    assert state.scoring_uri.startswith("https://ep-test.")


def test_new_kubernetes_endpoint_on_attached_aks(platform, ml_client) -> None:
    ml_client.online_endpoints.get.side_effect = [NOT_FOUND, service_endpoint("ep-prod", compute="aks-prod")]
    ml_client.online_endpoints.begin_create_or_update.return_value = poller()

    state = platform.create_or_update_endpoint(EndpointSpec("ep-prod", compute="aks-prod", auth_mode="aml_token"))

    (entity,), _ = ml_client.online_endpoints.begin_create_or_update.call_args
    assert type(entity) is KubernetesOnlineEndpoint
    assert (entity.compute, entity.auth_mode) == ("aks-prod", "aml_token")
    loaded = reload_endpoint(entity)
    assert loaded._to_rest_online_endpoint("westeurope").as_dict()["properties"]["compute"] == "aks-prod"
    assert state.compute == "aks-prod"


def test_updating_an_endpoint_keeps_its_traffic(platform, ml_client) -> None:
    live = service_endpoint("ep-prod", compute="aks-prod", traffic={"blue": 90, "green": 10})
    ml_client.online_endpoints.get.return_value = live
    ml_client.online_endpoints.begin_create_or_update.return_value = poller()

    platform.create_or_update_endpoint(EndpointSpec("ep-prod", compute="aks-prod", description="v2"))

    (entity,), _ = ml_client.online_endpoints.begin_create_or_update.call_args
    assert entity.description == "v2"
    assert entity.traffic == {"blue": 90, "green": 10}
    assert entity.identity is live.identity
    reload_endpoint(entity)


def test_an_endpoint_cannot_move_to_another_compute(platform, ml_client) -> None:
    ml_client.online_endpoints.get.return_value = service_endpoint("ep-prod", compute="aks-prod")
    with pytest.raises(PlatformError, match="already exists on aks-prod, not managed compute"):
        platform.create_or_update_endpoint(EndpointSpec("ep-prod"))
    ml_client.online_endpoints.begin_create_or_update.assert_not_called()


def test_get_endpoint_reads_the_sdk_enums_as_plain_states(platform, ml_client) -> None:
    ml_client.online_endpoints.get.return_value = service_endpoint(
        "ep-1", traffic={"blue": 100}, mirror={"green": 10}, state="Updating"
    )
    state = platform.get_endpoint("ep-1")
    ml_client.online_endpoints.get.assert_called_once_with(name="ep-1")
    assert state.provisioning_state == "Updating"
    assert (state.traffic, state.mirror_traffic, state.compute, state.auth_mode) == (
        {"blue": 100},
        {"green": 10},
        None,
        "key",
    )


def test_get_missing_endpoint_is_not_found(platform, ml_client, sleeps) -> None:
    ml_client.online_endpoints.get.side_effect = NOT_FOUND
    with pytest.raises(PlatformNotFoundError, match="get endpoint nope"):
        platform.get_endpoint("nope")
    assert ml_client.online_endpoints.get.call_count == 1
    assert sleeps == []


def test_delete_endpoint(platform, ml_client) -> None:
    ml_client.online_endpoints.get.return_value = service_endpoint("ep-1")
    gone = poller()
    ml_client.online_endpoints.begin_delete.return_value = gone
    assert platform.delete_endpoint("ep-1", timeout_s=60) is True
    ml_client.online_endpoints.begin_delete.assert_called_once_with(name="ep-1")
    gone.result.assert_called_once_with(timeout=60)


def test_delete_missing_endpoint_is_false(platform, ml_client) -> None:
    ml_client.online_endpoints.get.side_effect = NOT_FOUND
    assert platform.delete_endpoint("ep-1") is False
    ml_client.online_endpoints.begin_delete.assert_not_called()


def test_an_operation_still_running_at_the_deadline_fails_naming_it(platform, ml_client) -> None:
    ml_client.online_endpoints.get.side_effect = [NOT_FOUND]
    ml_client.online_endpoints.begin_create_or_update.return_value = poller(done=False, status="Creating")
    with pytest.raises(PlatformError, match=r"create or update endpoint ep-1 within 5 s \(still Creating\)"):
        platform.create_or_update_endpoint(EndpointSpec("ep-1"), timeout_s=5)


# traffic


def test_set_traffic_puts_the_new_split(platform, ml_client) -> None:
    current = service_endpoint("ep-1", traffic={"blue": 100, "green": 0})
    after = service_endpoint("ep-1", traffic={"blue": 90, "green": 10})
    ml_client.online_endpoints.get.side_effect = [current, after]
    put = poller()
    ml_client.online_endpoints.begin_create_or_update.return_value = put

    state = platform.set_traffic("ep-1", traffic={"blue": 90, "green": 10}, timeout_s=30)

    ml_client.online_endpoints.begin_create_or_update.assert_called_once_with(current)
    assert current.traffic == {"blue": 90, "green": 10}
    assert current._to_rest_online_endpoint("westeurope").as_dict()["properties"]["traffic"] == {
        "blue": 90,
        "green": 10,
    }
    put.result.assert_called_once_with(timeout=30)
    assert state.traffic == {"blue": 90, "green": 10}


def test_set_mirror_traffic_leaves_live_traffic(platform, ml_client) -> None:
    current = service_endpoint("ep-1", traffic={"blue": 100, "green": 0})
    ml_client.online_endpoints.get.return_value = current
    ml_client.online_endpoints.begin_create_or_update.return_value = poller()

    platform.set_traffic("ep-1", mirror_traffic={"green": 20})

    (entity,), _ = ml_client.online_endpoints.begin_create_or_update.call_args
    assert (entity.traffic, entity.mirror_traffic) == ({"blue": 100, "green": 0}, {"green": 20})
    assert reload_endpoint(entity).mirror_traffic == {"green": 20}


@pytest.mark.parametrize(
    ("traffic", "mirror", "message"),
    [
        ({"blue": 60, "green": 30}, None, "must sum to 100"),
        ({"blue": 100, "green": -1}, None, "whole percentage"),
        ({"blue": 100}, {"green": 60}, "at most 50 %"),
        ({"blue": 100}, {"green": 10, "red": 10}, "one deployment only"),
        ({"blue": 90, "green": 10}, {"green": 10}, "both live"),
    ],
)
def test_traffic_azure_would_reject_is_refused_before_calling(platform, ml_client, traffic, mirror, message) -> None:
    ml_client.online_endpoints.get.return_value = service_endpoint("ep-1", traffic={"blue": 100})
    with pytest.raises(PlatformError, match=message):
        platform.set_traffic("ep-1", traffic=traffic, mirror_traffic=mirror)
    ml_client.online_endpoints.begin_create_or_update.assert_not_called()


def test_kubernetes_endpoints_cannot_mirror(platform, ml_client) -> None:
    ml_client.online_endpoints.get.return_value = service_endpoint("ep-prod", compute="aks-prod", traffic={"a": 100})
    with pytest.raises(PlatformError, match="Kubernetes endpoint.*does not mirror"):
        platform.set_traffic("ep-prod", mirror_traffic={"b": 10})
    ml_client.online_endpoints.begin_create_or_update.assert_not_called()
