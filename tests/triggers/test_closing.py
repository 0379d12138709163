"""A platform trigger closes the platform clients it opened, however its wait ends (real local runtime)."""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import Iterator
from typing import Any

import pytest

from deployflow.local.backend import LocalPlatform
from deployflow.local.client import LocalRuntimeClient
from deployflow.platform.base import MLPlatform
from deployflow.triggers.batch import BatchJobStateTrigger
from deployflow.triggers.ml_platform import DeploymentStateTrigger
from tests.airflow_support import connected_runtime
from tests.runtime.support import SAMPLE_MODEL, deploy
from tests.triggers.support import RecordsClients, cancel_after_polls, first_event

pytestmark = pytest.mark.slow
ENDPOINT = "closing"
CONN_ID = "deployflow_local"


class RecordsPlatforms(RecordsClients):
    def client_in_use(self) -> MLPlatform:
        return self.hook.platform  # type: ignore[attr-defined]  # a platform trigger's hook


class RecordingDeploymentTrigger(RecordsPlatforms, DeploymentStateTrigger):
    """Records the platform on_kill used too."""

    def stop_remote_work(self) -> None:
        self.opened.append(self.hook.platform)
        super().stop_remote_work()


class RecordingJobTrigger(RecordsPlatforms, BatchJobStateTrigger):
    pass


def closed(platforms: list[MLPlatform]) -> bool:
    """Whether the trigger opened a platform and every one it opened has its HTTP clients closed."""
    assert platforms, "the trigger never reached the platform"
    locals_ = [p for p in platforms if isinstance(p, LocalPlatform)]
    assert len(locals_) == len(platforms)
    return all(p.client.closed for p in locals_)


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRuntimeClient]:
    """A runtime with a ready deployment ``blue`` and one, ``slow``, that stays Creating (its init sleeps)."""
    slow = shutil.copytree(SAMPLE_MODEL, tmp_path_factory.mktemp("slow") / "pkg",
                           ignore=shutil.ignore_patterns("__pycache__"))  # fmt: skip
    score = slow / "score.py"
    source = score.read_text().replace("import json\n", "import json\nimport time\n", 1)
    score.write_text(source.replace("def init() -> None:\n", "def init() -> None:\n    time.sleep(300)\n"))
    with connected_runtime(tmp_path_factory.mktemp("closing") / "data") as runtime, runtime.client() as client:
        client.register_model("diabetes", SAMPLE_MODEL, version="1")
        client.register_model("slow-init", slow, version="1")
        client.put_endpoint(ENDPOINT)
        deploy(client, ENDPOINT, "blue")
        client.put_deployment(ENDPOINT, "slow", model="slow-init:1", readiness_timeout_s=600)
        yield client


def deployment_trigger(name: str, *, wait_s: float, **kwargs: Any) -> RecordingDeploymentTrigger:
    return RecordingDeploymentTrigger(ml_platform_conn_id=CONN_ID, endpoint_name=ENDPOINT, deployment_name=name,
                                      deadline=time.time() + wait_s, poll_interval=0.1, **kwargs)  # fmt: skip


def test_closed_after_a_ready_deployment(client: LocalRuntimeClient) -> None:
    trigger = deployment_trigger("blue", wait_s=30)
    event = asyncio.run(first_event(trigger))
    assert event["status"] == "success" and closed(trigger.opened)


def test_closed_after_a_platform_error(client: LocalRuntimeClient) -> None:
    trigger = deployment_trigger("ghost", wait_s=30)
    event = asyncio.run(first_event(trigger))
    assert event["status"] == "error" and "ghost" in event["message"] and closed(trigger.opened)


def test_closed_after_the_deadline(client: LocalRuntimeClient) -> None:
    trigger = deployment_trigger("slow", wait_s=0)
    event = asyncio.run(first_event(trigger))
    assert event["status"] == "error"
    assert event["message"] == f"deployment {ENDPOINT}/slow still Creating at its deadline"
    assert event["deployment"]["provisioning_state"] == "Creating" and closed(trigger.opened)


def test_closed_when_the_triggerer_cancels_the_wait(client: LocalRuntimeClient) -> None:
    trigger = deployment_trigger("slow", wait_s=300)

    asyncio.run(cancel_after_polls(trigger, 2))  # polled twice: the wait is under way
    assert closed(trigger.opened)


def test_closed_after_on_kill(client: LocalRuntimeClient) -> None:
    trigger = deployment_trigger("ghost", wait_s=30, delete_on_kill=True)
    asyncio.run(trigger.on_kill())  # nothing to delete: the runtime answers 404, the trigger logs it
    assert closed(trigger.opened)


def test_job_trigger_closed_after_an_unknown_job(client: LocalRuntimeClient) -> None:
    trigger = RecordingJobTrigger(ml_platform_conn_id=CONN_ID, job_id="no-such-job", deadline=time.time() + 30)
    event = asyncio.run(first_event(trigger))
    assert event["status"] == "error" and event["job_id"] == "no-such-job" and closed(trigger.opened)


def test_a_closed_hook_opens_a_new_platform_on_next_use(client: LocalRuntimeClient) -> None:
    trigger = deployment_trigger("blue", wait_s=30)
    first = trigger.hook.platform
    trigger.close()
    assert trigger.hook.platform is not first and closed([first])
    trigger.close()
