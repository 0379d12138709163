"""The endpoint's traffic table, key check and schema rules, without starting a server."""

from __future__ import annotations

from collections import Counter

import pytest
from pydantic import ValidationError

from deployflow.runtime.errors import Invalid
from deployflow.runtime.schemas import DeploymentSpec, EndpointSpec
from deployflow.runtime.serving.endpoints import DeploymentRuntime, EndpointRuntime


def endpoint(*deployments: str) -> EndpointRuntime:
    ep = EndpointRuntime("ep", EndpointSpec(), "primary-key", "secondary-key")
    for name in deployments:
        ep.deployments[name] = DeploymentRuntime("ep", name, DeploymentSpec(model="m:1"), "none")
    return ep


def test_weighted_choice_follows_the_split() -> None:
    ep = endpoint("blue", "green")
    ep.set_traffic({"blue": 80, "green": 20}, None)
    drawn = Counter(ep.choose().name for _ in range(20_000))
    assert drawn["blue"] / 20_000 == pytest.approx(0.8, abs=0.02)


def test_no_traffic_means_no_choice_and_zero_shares_are_dropped() -> None:
    ep = endpoint("blue", "green")
    assert ep.choose() is None
    ep.set_traffic({"blue": 100, "green": 0}, None)
    assert ep.traffic == {"blue": 100}
    assert {ep.choose().name for _ in range(100)} == {"blue"}


def test_traffic_must_name_known_deployments_and_sum_to_100() -> None:
    ep = endpoint("blue")
    with pytest.raises(Invalid, match="no deployment named green"):
        ep.set_traffic({"green": 100}, None)
    with pytest.raises(Invalid, match="add up to 100"):
        ep.set_traffic({"blue": 60}, None)
    assert ep.traffic == {}  # a refused change leaves the table as it was


def test_mirror_share_and_exclusivity() -> None:
    ep = endpoint("blue", "green")
    ep.set_traffic({"blue": 100}, {"green": 25})
    mirrored = sum(ep.mirror_target() is not None for _ in range(20_000))
    assert mirrored / 20_000 == pytest.approx(0.25, abs=0.02)
    with pytest.raises(Invalid, match="live and mirrored"):
        ep.set_traffic({"green": 100}, None)  # green is still the mirror


def test_keys_accept_either_and_nothing_else() -> None:
    ep = endpoint()
    assert ep.authorized(b"Bearer primary-key") and ep.authorized(b"Bearer secondary-key")
    assert not ep.authorized(b"Bearer primary-ke") and not ep.authorized(None)
    keys = ep.regenerated_keys("primary")
    assert ep.authorized(b"Bearer primary-key"), "a regenerated key is not in use until it is set"
    ep.set_keys(*keys)
    assert not ep.authorized(b"Bearer primary-key") and ep.authorized(b"Bearer secondary-key")


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"traffic": {"a": 50, "b": 40}}, "add up to 100"),
        ({"mirror_traffic": {"a": 60}}, "at most 50"),
        ({"mirror_traffic": {"a": 10, "b": 10}}, "one deployment only"),
        ({"traffic": {"a": 100}, "mirror_traffic": {"a": 10}}, "live and mirrored"),
        ({"auth_mode": "aad"}, "auth_mode"),
    ],
)
def test_endpoint_spec_rules(spec: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        EndpointSpec(**spec)


def test_deployment_spec_rejects_unknown_fields_and_gpus() -> None:
    with pytest.raises(ValidationError, match="instance_type"):
        DeploymentSpec(model="m:1", instance_type="Standard_DS3_v2")
    with pytest.raises(ValidationError, match="gpu"):
        DeploymentSpec(model="m:1", resources={"gpu": 1})
