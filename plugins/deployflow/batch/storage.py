"""The batch flow's blob operations on a ``BlobServiceClient``: list, stage, manifest, clean up.

No Airflow here: operators and triggers hand in the client their connection gives. The
manifest is rewritten with an etag condition (optimistic concurrency), so two runs that
finish together both keep their entries: the loser of the race re-reads and merges again.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Callable, Iterable

from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.storage.blob import BlobServiceClient, ContentSettings

from deployflow.batch.manifest import BlobRef, Manifest, dump_manifest, parse_manifest
from deployflow.batch.naming import is_staged, staged_name

log = logging.getLogger(__name__)
MANIFEST_ATTEMPTS = 8
COPY_TIMEOUT_S = 600.0
COPY_POLL_S = 0.2


class StorageConflictError(RuntimeError):
    """The manifest kept changing under us; another run is writing it continuously."""


def list_inputs(service: BlobServiceClient, container: str, prefix: str) -> list[BlobRef]:
    """Blobs under the input prefix (full names, with etags), staged copies and folder markers left out."""
    folder = f"{prefix.strip('/')}/" if prefix.strip("/") else None
    blobs = service.get_container_client(container).list_blobs(name_starts_with=folder)
    return [BlobRef(b.name, b.etag) for b in blobs if not is_staged(b.name) and not b.name.endswith("/")]


def read_manifest(service: BlobServiceClient, container: str, blob: str) -> tuple[Manifest, str | None]:
    """The manifest and its etag; an empty manifest and None when there is none yet."""
    client = service.get_blob_client(container, blob)
    try:
        downloaded = client.download_blob()
        return parse_manifest(downloaded.readall(), where=f"{container}/{blob}"), downloaded.properties.etag
    except ResourceNotFoundError:
        return {}, None


def update_manifest(
    service: BlobServiceClient, container: str, blob: str, change: Callable[[Manifest], Manifest]
) -> Manifest:
    """Apply ``change`` to the current manifest and write it only if nobody wrote in between; retry if they did."""
    client = service.get_blob_client(container, blob)
    container_client = service.get_container_client(container)
    if not container_client.exists():
        try:
            container_client.create_container()
        except ResourceExistsError:
            pass  # created by a concurrent run
    for _attempt in range(MANIFEST_ATTEMPTS):
        manifest, etag = read_manifest(service, container, blob)
        updated = change(manifest)
        condition = (
            {"etag": etag, "match_condition": MatchConditions.IfNotModified}
            if etag
            else {"match_condition": MatchConditions.IfMissing}
        )
        try:
            client.upload_blob(
                dump_manifest(updated),
                overwrite=True,
                content_settings=ContentSettings(content_type="application/json"),
                **condition,
            )
            return updated
        except (ResourceModifiedError, ResourceExistsError):
            log.info("manifest %s/%s changed while it was being updated; merging again", container, blob)
    raise StorageConflictError(f"manifest {container}/{blob} changed {MANIFEST_ATTEMPTS} times while being updated")


def stage(
    service: BlobServiceClient, container: str, blobs: Iterable[BlobRef], *, input_prefix: str, staging: str
) -> list[str]:
    """Server-side copies of ``blobs`` under ``staging`` (same container); returns the staged names."""
    container_client = service.get_container_client(container)
    staged = []
    for blob in blobs:
        target = staged_name(blob.name, input_prefix, staging)
        source_url = container_client.get_blob_client(blob.name).url
        copy = container_client.get_blob_client(target)
        copy.start_copy_from_url(source_url)
        _wait_for_copy(copy, blob.name)
        staged.append(target)
    return staged


def quarantine(
    service: BlobServiceClient, container: str, blob: str, *, to_container: str, to_name: str, report: dict
) -> str:
    """A server-side copy of a blob that failed to score, beside a JSON error report (``<name>.error.json``);
    returns the copy's URL. The input blob stays where it is (the manifest says it was taken)."""
    source_url = service.get_container_client(container).get_blob_client(blob).url
    target = service.get_container_client(to_container)
    if not target.exists():
        with contextlib.suppress(ResourceExistsError):
            target.create_container()
    copy = target.get_blob_client(to_name)
    copy.start_copy_from_url(source_url)
    _wait_for_copy(copy, blob)
    target.upload_blob(f"{to_name}.error.json", json.dumps(report, indent=1) + "\n", overwrite=True,
                       content_settings=ContentSettings(content_type="application/json"))  # fmt: skip
    return copy.url


def _wait_for_copy(copy: object, source: str) -> None:
    """Same-account copies usually finish at once; a large one may stay pending for a while."""
    deadline = time.monotonic() + COPY_TIMEOUT_S
    while True:
        status = copy.get_blob_properties().copy.status  # type: ignore[attr-defined]
        if status == "success":
            return
        if status != "pending":
            raise RuntimeError(f"copying {source} ended {status}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"copying {source} took over {COPY_TIMEOUT_S:g} s")
        time.sleep(COPY_POLL_S)


def delete_prefix(service: BlobServiceClient, container: str, prefix: str) -> int:
    """Delete every blob under ``prefix/``; returns how many there were (0 when the container is gone)."""
    folder = f"{prefix.strip('/')}/"
    if folder == "/":
        raise ValueError("refusing to delete a whole container: give a prefix")
    container_client = service.get_container_client(container)
    try:
        names = [b.name for b in container_client.list_blobs(name_starts_with=folder)]
    except ResourceNotFoundError:
        return 0
    for start in range(0, len(names), 256):  # a batch delete takes at most 256 blobs
        container_client.delete_blobs(*names[start : start + 256])
    return len(names)
