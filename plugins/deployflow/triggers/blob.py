"""An event trigger for an ``AssetWatcher``: fires once for each blob not yet scored.

"Not yet scored" is the batch flow's own definition: absent from the manifest, or listed there
with another etag. Blobs a run has already staged count as taken, so a run in progress does
not set off another one for the same files. The trigger keeps running and remembers which blob
versions (name and etag) it has reported: a blob that stays unscored is not reported again on
every poll, and a replaced one (new etag) is reported once more.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from functools import cached_property

from airflow.providers.microsoft.azure.hooks.wasb import WasbHook
from airflow.triggers.base import BaseEventTrigger, TriggerEvent
from azure.core.exceptions import AzureError, ResourceNotFoundError
from azure.storage.blob import BlobServiceClient

from deployflow.batch.manifest import BlobRef, new_blobs
from deployflow.batch.naming import STAGING_FOLDER
from deployflow.batch.storage import list_inputs, read_manifest
from deployflow.triggers.polling import SUCCESS, PollingTrigger, Reading

MAX_NAMES_IN_EVENT = 100


class NewBlobsTrigger(PollingTrigger, BaseEventTrigger):
    """Polls ``container/prefix`` every ``poll_interval`` seconds and yields one event per new blob version.

    Each event names its blob (``blob``, ``etag``; ``blobs`` and ``count`` as a one-blob list): it
    is a signal to run, and the run lists the prefix again itself. It has no deadline: a storage
    error is logged and the watch goes on. ``poll()`` is one look at everything unscored.
    """

    serialized_fields = ("wasb_conn_id", "container", "prefix", "manifest_container", "manifest_blob", "poll_interval")
    event_fields = ("container", "prefix")
    poll_errors = (AzureError,)

    def __init__(
        self,
        *,
        wasb_conn_id: str,
        container: str,
        prefix: str,
        manifest_container: str,
        manifest_blob: str,
        poll_interval: float = 60.0,
    ) -> None:
        super().__init__()
        self.wasb_conn_id = wasb_conn_id
        self.container = container
        self.prefix = prefix
        self.manifest_container = manifest_container
        self.manifest_blob = manifest_blob
        self.poll_interval = poll_interval

    @property
    def _where(self) -> str:
        return f"{self.container}/{self.prefix}"

    @cached_property
    def service(self) -> BlobServiceClient:
        """One storage client for every poll (``WasbHook.get_conn()`` builds a new one each call)."""
        return WasbHook(wasb_conn_id=self.wasb_conn_id).get_conn()

    def close(self) -> None:
        service = self.__dict__.pop("service", None)
        if service is not None:
            service.close()

    def _unscored(self) -> list[BlobRef]:
        """New blobs, less those a running DAG run has already staged (same path below the prefix)."""
        manifest, _etag = read_manifest(self.service, self.manifest_container, self.manifest_blob)
        fresh = new_blobs(list_inputs(self.service, self.container, self.prefix), manifest)
        if not fresh:
            return []
        staged = self.service.get_container_client(self.container).list_blobs(name_starts_with=f"{STAGING_FOLDER}/")
        in_flight = {b.name.split("/", 2)[2] for b in staged if b.name.count("/") >= 2}
        cut = len(self.prefix.strip("/")) + 1 if self.prefix.strip("/") else 0
        return [blob for blob in fresh if blob.name[cut:] not in in_flight]

    async def run(self) -> AsyncIterator[TriggerEvent]:
        reported: set[BlobRef] = set()
        try:
            while True:
                reading = await self._poll_once()  # None: a storage error, logged; the watch goes on
                if reading is not None:
                    fresh = {BlobRef(name, etag) for name, etag in reading.details.get("versions", ())}
                    reported &= fresh  # a version scored since is forgotten: the memory stays small
                    for blob in sorted(fresh - reported, key=lambda b: b.name):
                        reported.add(blob)
                        yield self._new_blob_event(blob)
                await asyncio.sleep(self.poll_interval)
        finally:
            self.close()

    def _new_blob_event(self, blob: BlobRef) -> TriggerEvent:
        message = f"new blob {blob.name} under {self._where}"
        return self.event(Reading(message, SUCCESS, {"blob": blob.name, "etag": blob.etag, "count": 1,
                                                     "blobs": [blob.name]}))  # fmt: skip

    def poll(self) -> Reading:
        """One look: how many blobs are unscored, the first names, and every (name, etag) for ``run()``."""
        fresh = self._unscored()
        if not fresh:
            return Reading.waiting(f"no unscored blobs under {self._where} yet")
        names = [blob.name for blob in fresh[:MAX_NAMES_IN_EVENT]]
        versions = [(blob.name, blob.etag) for blob in fresh]
        return Reading.success(f"{len(fresh)} new blob(s) under {self._where}", count=len(fresh), blobs=names,
                               versions=versions)  # fmt: skip

    def on_poll_error(self, error: Exception) -> Reading | None:
        """A storage hiccup must not end the watch: say so and poll again."""
        if isinstance(error, ResourceNotFoundError):
            self.log.info("container %s does not exist yet; waiting for it", self.container)
        else:
            self.log.warning("listing %s failed, polling again: %s", self._where, error)
        return None
