"""An event trigger for an ``AssetWatcher``: fires when the input prefix holds blobs not yet scored.

"Not yet scored" is the batch flow's own definition: absent from the manifest, or listed there
with another etag. Blobs a run has already staged count as taken, so a run in progress does
not set off another one for the same files.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from airflow.providers.microsoft.azure.hooks.wasb import WasbHook
from airflow.triggers.base import BaseEventTrigger, TriggerEvent
from azure.core.exceptions import AzureError, ResourceNotFoundError

from deployflow.batch.manifest import BlobRef, new_blobs
from deployflow.batch.naming import STAGING_FOLDER
from deployflow.batch.storage import list_inputs, read_manifest

MAX_NAMES_IN_EVENT = 100


class NewBlobsTrigger(BaseEventTrigger):
    """Polls ``container/prefix`` every ``poll_interval`` seconds; yields one event listing the new blobs.

    The event's ``blobs`` holds at most 100 names (``count`` says how many there are): it is a
    signal to run, and the run lists the prefix again itself.
    """

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

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "wasb_conn_id": self.wasb_conn_id,
                "container": self.container,
                "prefix": self.prefix,
                "manifest_container": self.manifest_container,
                "manifest_blob": self.manifest_blob,
                "poll_interval": self.poll_interval,
            },
        )

    def _unscored(self, hook: WasbHook) -> list[BlobRef]:
        """New blobs, less those a running DAG run has already staged (same path below the prefix)."""
        service = hook.get_conn()
        manifest, _etag = read_manifest(service, self.manifest_container, self.manifest_blob)
        fresh = new_blobs(list_inputs(service, self.container, self.prefix), manifest)
        if not fresh:
            return []
        staged = service.get_container_client(self.container).list_blobs(name_starts_with=f"{STAGING_FOLDER}/")
        in_flight = {b.name.split("/", 2)[2] for b in staged if b.name.count("/") >= 2}
        cut = len(self.prefix.strip("/")) + 1 if self.prefix.strip("/") else 0
        return [blob for blob in fresh if blob.name[cut:] not in in_flight]

    async def run(self) -> AsyncIterator[TriggerEvent]:
        hook = WasbHook(wasb_conn_id=self.wasb_conn_id)
        where = f"{self.container}/{self.prefix}"
        while True:
            try:
                fresh = await asyncio.to_thread(self._unscored, hook)
            except ResourceNotFoundError:
                self.log.info("container %s does not exist yet; waiting for it", self.container)
                fresh = []
            except AzureError as e:  # a storage hiccup must not end the watch: say so and poll again
                self.log.warning("listing %s failed, polling again: %s", where, e)
                fresh = []
            if fresh:
                self.log.info("%d new blob(s) under %s", len(fresh), where)
                yield TriggerEvent(
                    {
                        "status": "success",
                        "message": f"{len(fresh)} new blob(s) under {where}",
                        "container": self.container,
                        "prefix": self.prefix,
                        "count": len(fresh),
                        "blobs": [blob.name for blob in fresh[:MAX_NAMES_IN_EVENT]],
                    }
                )
                return
            await asyncio.sleep(self.poll_interval)
