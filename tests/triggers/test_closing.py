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
from deployflow.triggers.polling import Reading
from tests.airflow_support import connected_runtime
from tests.runtime.support import SAMPLE_MODEL, deploy

pytestmark = pytest.mark.slow
ENDPOINT = "closing"
CONN_ID = "deployflow_local"


class RecordingDeploymentTrigger(DeploymentStateTrigger):
    """Keeps each platform its polls and on_kill used, so the test can see whether it was closed."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.opened: list[MLPlatform] = []

    def poll(self) -> Reading:
        self.opened.append(self.hook.platform)
        return super().poll()

    def stop_remote_work(self) -> None:
        self.opened.append(self.hook.platform)
        super().stop_remote_work()


class RecordingJobTrigger(BatchJobStateTrigger):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.opened: list[MLPlatform] = []

    def poll(self) -> Reading:
        self.opened.append(self.hook.platform)
        return super().poll()


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


async def first_event(trigger: Any) -> dict[str, Any]:
    async for event in trigger.run():
        return event.payload
    raise AssertionError("the trigger ended without an event")


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

    async def cancel_after_a_poll() -> None:
        waiting = asyncio.create_task(first_event(trigger))
        deadline = time.monotonic() + 30
        while len(trigger.opened) < 2:  # polled twice: the wait is under way
            assert not waiting.done(), "the trigger ended while its deployment was still Creating"
            assert time.monotonic() < deadline, "the trigger did not poll"
            await asyncio.sleep(0.02)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting

    asyncio.run(cancel_after_a_poll())
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
