"""The rollout sequence without Airflow, against a real local runtime: first release, smoke test, approval stop."""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from deployflow.local.backend import LocalPlatform
from deployflow.local.client import LocalRuntimeClient
from deployflow.packages import ModelPackage
from deployflow.platform.specs import DeploymentSpec, ModelRef, Resources
from deployflow.rollout import RolloutPlan, load_plan
from deployflow.rollout.release import (
    AWAITING_APPROVAL,
    COMPLETED,
    FIRST_RELEASE,
    DeploymentNameError,
    Release,
    ReleaseError,
    choose_deployment_name,
    current_deployment,
    open_endpoint,
)
from tests.runtime.support import SAMPLE_MODEL, deploy, sample_runtime

pytestmark = pytest.mark.slow
log = logging.getLogger("tests.release")
SAMPLE = ModelPackage.load(SAMPLE_MODEL)
APPROVAL_PLAN = {
    "steps": ["traffic 10% 2s", "approve timeout 600s", "traffic 100%"],
    "gates": {"min_requests": 20, "max_p99_ratio": 3.0},
    "old_deployment_delete_after_s": 7,
}


@pytest.fixture(scope="module")
def runtime(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalPlatform, LocalRuntimeClient]]:
    with sample_runtime(tmp_path_factory.mktemp("release") / "data") as (process, client):
        platform = LocalPlatform(process.control_url, (process.data_dir / "admin-token").read_text().strip())
        try:
            yield platform, client
        finally:
            platform.close()


def green(endpoint: str, model: str = "diabetes:1") -> DeploymentSpec:
    return DeploymentSpec(endpoint=endpoint, name="green", model=ModelRef.parse(model),
                          resources=Resources.from_dict({"cpu": 0.5, "memory_gb": 1.0}))  # fmt: skip


class Plans:
    """The plan a release asks for, and what it was told about the endpoint."""

    def __init__(self, overrides: dict) -> None:
        self.plan, self.asked = load_plan().override(overrides), []

    def __call__(self, kubernetes_endpoint: bool) -> RolloutPlan:
        self.asked.append(kubernetes_endpoint)
        return self.plan


def names(client: LocalRuntimeClient, endpoint: str) -> list[str]:
    return sorted(d["name"] for d in client.list_deployments(endpoint))


def test_a_first_release_creates_the_endpoint_and_takes_all_traffic_without_a_plan(runtime) -> None:
    platform, client = runtime
    endpoint = open_endpoint(platform, "rel-first", None, log)
    plans = Plans(APPROVAL_PLAN)

    outcome = Release(platform, endpoint, green("rel-first"), SAMPLE, log).run(plans)

    assert outcome.finish is None and plans.asked == []  # nothing to compare with: no plan, no gates
    assert outcome.report["status"] == FIRST_RELEASE and outcome.report["old"] is None
    assert outcome.report["scoring_uri"] == client.get_endpoint("rel-first")["scoring_uri"]
    assert client.get_endpoint("rel-first")["traffic"] == {"green": 100}


def test_a_deployment_that_fails_its_smoke_test_is_removed_before_any_traffic_moves(runtime, tmp_path: Path) -> None:
    platform, client = runtime
    client.put_endpoint("rel-smoke", compute="production")
    deploy(client, "rel-smoke", "blue")
    client.set_traffic("rel-smoke", {"blue": 100})
    wrong = shutil.copytree(SAMPLE_MODEL, tmp_path / "wrong", ignore=shutil.ignore_patterns("__pycache__"))
    (wrong / "sample-response.json").write_text(json.dumps([1.0, 2.0, 3.0]))

    release = Release(platform, open_endpoint(platform, "rel-smoke", None, log), green("rel-smoke"),
                      ModelPackage.load(wrong), log)  # fmt: skip
    with pytest.raises(ReleaseError, match="deployment green failed its smoke test and was removed") as failed:
        release.run(Plans(APPROVAL_PLAN))

    assert "$[0]: expected 1.0" in str(failed.value)
    assert names(client, "rel-smoke") == ["blue"]
    assert client.get_endpoint("rel-smoke")["traffic"] == {"blue": 100}


def test_a_model_the_platform_cannot_deploy_is_a_release_error_naming_the_deployment(runtime) -> None:
    platform, client = runtime
    endpoint = open_endpoint(platform, "rel-missing", None, log)

    with pytest.raises(ReleaseError, match="deployment rel-missing/green could not be created"):
        Release(platform, endpoint, green("rel-missing", model="diabetes:99"), SAMPLE, log).run(Plans(APPROVAL_PLAN))

    assert client.get_endpoint("rel-missing")["traffic"] == {}


def test_a_release_stops_at_an_approval_and_a_second_one_goes_on_from_the_traffic_it_finds(runtime) -> None:
    platform, client = runtime
    client.put_endpoint("rel-approve", compute="production")
    deploy(client, "rel-approve", "blue")
    client.set_traffic("rel-approve", {"blue": 100})
    plans = Plans(APPROVAL_PLAN)

    first = Release(platform, open_endpoint(platform, "rel-approve", None, log), green("rel-approve"), SAMPLE, log)
    paused = first.run(plans, probe_rate=30)

    assert paused.finish is None and plans.asked == [True]  # a compute pool: told it is on Kubernetes
    assert paused.report["status"] == AWAITING_APPROVAL and paused.report["old"] == "blue"
    assert paused.report["question"].startswith("Continue rolling out green on endpoint rel-approve?")
    assert paused.report["approval_timeout_s"] == 600, "the step's own timeout, for the approval task"
    assert [d["outcome"] for d in paused.report["decisions"]] == ["pass"]
    assert client.get_endpoint("rel-approve")["traffic"] == {"blue": 90, "green": 10}

    second = Release(platform, open_endpoint(platform, "rel-approve", None, log), green("rel-approve"), SAMPLE, log)
    done = second.run(plans, approval=True, probe_rate=30)

    assert done.report["status"] == COMPLETED
    assert done.finish is not None and done.finish.old == "blue" and done.finish.delete_old_after_s == 7
    assert client.get_endpoint("rel-approve")["traffic"] == {"green": 100}
    assert names(client, "rel-approve") == ["blue", "green"]  # the old one is the caller's to delete, later


def test_blue_green_names() -> None:
    assert choose_deployment_name({"blue": 100}, {"blue"}) == "green"
    assert choose_deployment_name({"blue": 100, "green": 0}, {"blue", "green"}) == "green"
    assert choose_deployment_name({}, set()) == "blue"
    assert current_deployment({"blue": 90, "green": 10}, "green") == "blue"
    assert current_deployment({"green": 100}, "green") is None
    with pytest.raises(DeploymentNameError, match="name the new deployment explicitly"):
        choose_deployment_name({"blue": 50, "green": 50}, {"blue", "green"})
