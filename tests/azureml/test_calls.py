"""Retries and error translation, seen through the backend the way an operator sees them."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import pytest
from azure.ai.ml.exceptions import ValidationException
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceNotFoundError,
    ServiceRequestError,
)

from deployflow.azureml import RetryPolicy
from deployflow.platform import EndpointSpec, PlatformError, PlatformNotFoundError
from tests.azureml.support import poller, service_endpoint

TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"


def http_error(status: int, message: str = "service says no", retry_after: str | None = None) -> HttpResponseError:
    error = HttpResponseError(message=message)
    error.status_code = status
    if retry_after is not None:
        error.response = SimpleNamespace(headers={"Retry-After": retry_after})
    return error


def test_throttled_call_is_retried_after_a_backoff(platform, ml_client, sleeps) -> None:
    ml_client.online_endpoints.get.side_effect = [http_error(429), service_endpoint()]
    state = platform.get_endpoint("ep-1")
    assert state.provisioning_state == "Succeeded"
    assert ml_client.online_endpoints.get.call_count == 2
    assert sleeps == [0.75]  # half the 1 s step, plus half of it again at random 0.5


def test_server_errors_back_off_exponentially_and_give_up(platform, ml_client, sleeps) -> None:
    ml_client.online_endpoints.get.side_effect = http_error(503, "upstream unavailable")
    with pytest.raises(PlatformError, match=r"get endpoint ep-1 \(HTTP 503\): upstream unavailable") as info:
        platform.get_endpoint("ep-1")
    assert ml_client.online_endpoints.get.call_count == 3
    assert sleeps == [0.75, 1.5]
    assert info.value.status_code == 503


def test_retry_after_is_honoured_up_to_the_cap(platform, ml_client, sleeps) -> None:
    ml_client.online_endpoints.get.side_effect = [
        http_error(429, retry_after="3"),
        http_error(429, retry_after="60"),
        service_endpoint(),
    ]
    platform.get_endpoint("ep-1")
    assert sleeps == [3.0, 4.0]


def test_unreachable_service_is_retried(platform, ml_client, sleeps) -> None:
    ml_client.online_endpoints.get.side_effect = [ServiceRequestError("connection reset"), service_endpoint()]
    platform.get_endpoint("ep-1")
    assert ml_client.online_endpoints.get.call_count == 2


def test_a_bad_request_is_not_retried_and_says_what_failed(platform, ml_client, sleeps) -> None:
    ml_client.online_endpoints.get.side_effect = ResourceNotFoundError(message="(ResourceNotFound) not yet")
    ml_client.online_endpoints.begin_create_or_update.side_effect = http_error(
        400, "(BadArgument) Tags may hold 50 entries at most"
    )
    with pytest.raises(PlatformError) as info:
        platform.create_or_update_endpoint(EndpointSpec("ep-1"))
    message = str(info.value)
    assert "create or update endpoint ep-1 (HTTP 400)" in message
    assert "Tags may hold 50 entries at most" in message
    assert "check the endpoint name" in message
    assert ml_client.online_endpoints.begin_create_or_update.call_count == 1
    assert sleeps == []
    assert isinstance(info.value.__cause__, HttpResponseError)


def test_not_found_becomes_platform_not_found(platform, ml_client, sleeps) -> None:
    ml_client.online_endpoints.get.side_effect = ResourceNotFoundError(message="(ResourceNotFound) gone")
    with pytest.raises(PlatformNotFoundError, match="get endpoint ghost: it does not exist"):
        platform.get_endpoint("ghost")
    assert sleeps == []


def test_authentication_errors_do_not_repeat_what_entra_said(platform, ml_client, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    ml_client.online_endpoints.get.side_effect = ClientAuthenticationError(
        message=f"AADSTS700016: Application not found in the directory '{TENANT}'"
    )
    with pytest.raises(PlatformError, match="authentication failed; check the connection's credential") as info:
        platform.get_endpoint("ep-1")
    assert TENANT not in str(info.value)
    assert TENANT not in caplog.text


def test_permission_errors_keep_the_service_reason_without_ids(platform, ml_client) -> None:
    ml_client.online_endpoints.get.side_effect = http_error(
        403, f"The client '{TENANT}' does not have authorization to perform action 'onlineEndpoints/read'"
    )
    with pytest.raises(PlatformError, match="permission denied") as info:
        platform.get_endpoint("ep-1")
    assert "onlineEndpoints/read" in str(info.value)
    assert TENANT not in str(info.value)
    assert "<id>" in str(info.value)


def test_sdk_validation_errors_are_wrapped(platform, ml_client) -> None:
    ml_client.online_deployments.get_logs.side_effect = ValidationException(
        message="lines must be positive", no_personal_data_message="lines must be positive"
    )
    with pytest.raises(PlatformError, match="get the logs of deployment ep-1/blue: lines must be positive"):
        platform.get_deployment_logs("ep-1", "blue", lines=-1)


def test_a_failed_long_running_operation_names_it(platform, ml_client) -> None:
    ml_client.online_endpoints.get.return_value = service_endpoint("ep-1")
    failing = poller()
    failing.result.side_effect = http_error(409, "(Conflict) another operation is in progress")
    ml_client.online_endpoints.begin_delete.return_value = failing
    with pytest.raises(PlatformError, match=r"delete endpoint ep-1 \(HTTP 409\).*in progress"):
        platform.delete_endpoint("ep-1")


def test_retry_warnings_say_what_is_retried(platform, ml_client, caplog) -> None:
    caplog.set_level(logging.WARNING, logger="deployflow.azureml")
    ml_client.online_endpoints.get.side_effect = [http_error(429, "Too many requests"), service_endpoint()]
    platform.get_endpoint("ep-1")
    (record,) = [r for r in caplog.records if r.name.startswith("deployflow.azureml")]
    assert record.getMessage() == "Azure ML could not get endpoint ep-1 (HTTP 429); retry 1 of 2 in 0.8 s"
    assert record.args  # %-style arguments, not a pre-formatted f-string


def test_default_backoff_stays_within_its_bounds() -> None:
    low, high = RetryPolicy(random=lambda: 0.0), RetryPolicy(random=lambda: 0.999)
    assert [low.delay(n) for n in (1, 2, 3, 6)] == [1.0, 2.0, 4.0, 15.0]
    assert all(low.delay(n) <= high.delay(n) <= RetryPolicy().max_delay_s for n in range(1, 10))


def test_endpoints_are_listed_by_name_with_their_traffic(platform, ml_client) -> None:
    ml_client.online_endpoints.list.return_value = iter(
        [service_endpoint("ep-b", traffic={"blue": 100}), service_endpoint("ep-a", traffic={"green": 100})]
    )
    listed = platform.list_endpoints()
    assert [(e.name, e.traffic) for e in listed] == [("ep-a", {"green": 100}), ("ep-b", {"blue": 100})]
