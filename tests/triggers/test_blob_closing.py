"""The new-blobs trigger closes its storage client when it fires and when its watch is cancelled (real Azurite)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from azure.storage.blob import BlobServiceClient

from deployflow.triggers.blob import NewBlobsTrigger
from tests.azurite import azurite_service
from tests.triggers.support import RecordsClients, cancel_after_polls, first_event

pytestmark = pytest.mark.slow
WASB_CONN_ID = "blob_closing"


class RecordingBlobsTrigger(RecordsClients, NewBlobsTrigger):
    def client_in_use(self) -> BlobServiceClient:
        return self.service


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BlobServiceClient]:
    with azurite_service(tmp_path_factory.mktemp("azurite"), WASB_CONN_ID) as service:
        yield service


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

    event = asyncio.run(asyncio.wait_for(first_event(trigger), 30))
    assert (event["status"], event["blobs"]) == ("success", ["in/a.csv"])
    assert_closed(trigger.opened)


def test_closed_when_the_watch_is_cancelled(service: BlobServiceClient) -> None:
    service.create_container("quiet")
    trigger = watch("quiet")

    asyncio.run(cancel_after_polls(trigger, 3))  # polled several times and found nothing
    assert_closed(trigger.opened)
