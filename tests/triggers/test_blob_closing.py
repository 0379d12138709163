"""The new-blobs trigger closes its storage client when it fires and when its watch is cancelled (real Azurite)."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Iterator
from typing import Any

import pytest
from azure.storage.blob import BlobServiceClient

from deployflow.triggers.blob import NewBlobsTrigger
from deployflow.triggers.polling import Reading
from tests.azurite import azurite_blob

pytestmark = pytest.mark.slow
WASB_CONN_ID = "blob_closing"


class RecordingBlobsTrigger(NewBlobsTrigger):
    """Keeps each storage client its polls used, so the test can try it after the trigger ended."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.opened: list[BlobServiceClient] = []

    def poll(self) -> Reading:
        self.opened.append(self.service)
        return super().poll()


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BlobServiceClient]:
    variable = f"AIRFLOW_CONN_{WASB_CONN_ID.upper()}"
    with azurite_blob(tmp_path_factory.mktemp("azurite")) as connection_string:
        os.environ[variable] = json.dumps({"conn_type": "wasb", "extra": {"connection_string": connection_string}})
        try:
            with BlobServiceClient.from_connection_string(connection_string) as service:
                yield service
        finally:
            os.environ.pop(variable, None)


def watch(container: str) -> RecordingBlobsTrigger:
    return RecordingBlobsTrigger(wasb_conn_id=WASB_CONN_ID, container=container, prefix="in",
                                 manifest_container=f"{container}-out", manifest_blob="_manifest.json",
                                 poll_interval=0.05)  # fmt: skip


def assert_closed(clients: list[BlobServiceClient]) -> None:
    assert len(clients) >= 1 and len({id(c) for c in clients}) == 1  # one client for every poll
    with pytest.raises(ValueError, match="already been closed"):
        next(iter(clients[0].list_containers()))


def test_closed_after_the_event(service: BlobServiceClient) -> None:
    service.create_container("fires").upload_blob("in/a.csv", b"1,2\n")
    trigger = watch("fires")

    async def first() -> dict[str, Any]:
        async for event in trigger.run():
            return event.payload
        raise AssertionError("the trigger ended without an event")

    event = asyncio.run(asyncio.wait_for(first(), 30))
    assert (event["status"], event["blobs"]) == ("success", ["in/a.csv"])
    assert_closed(trigger.opened)


def test_closed_when_the_watch_is_cancelled(service: BlobServiceClient) -> None:
    service.create_container("quiet")
    trigger = watch("quiet")

    async def cancel_after_polls() -> None:
        waiting = asyncio.create_task(anext(trigger.run()))
        deadline = time.monotonic() + 30
        while len(trigger.opened) < 3:  # polled several times and found nothing
            assert not waiting.done(), "the trigger fired with no blob to score"
            assert time.monotonic() < deadline, "the trigger did not poll"
            await asyncio.sleep(0.02)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting

    asyncio.run(cancel_after_polls())
    assert_closed(trigger.opened)
