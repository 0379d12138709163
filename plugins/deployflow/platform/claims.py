"""One run at a time per endpoint: a claim written on the endpoint itself, as a tag.

Runs of the real-time DAG for different endpoints go side by side; two runs for the same
endpoint must not interleave (they share its test and stress endpoints, and a rollout has one
new deployment at a time). The claim lives on the platform — Azure ML and the local runtime
both keep endpoint tags — so every worker, every try and every later run reads the same
answer, and a run that died holding it is named by it.

Writing is last-writer-wins, and a tag has no compare-and-swap: after writing its claim, a run
waits a moment, reads the endpoint back, and holds it only if its own claim is the one there.
The wait gives the read-back its meaning: a run that read the endpoint unclaimed just before
this write lands its own claim within about the time a write takes, and so is seen (Fischer's
mutual exclusion; without the wait, a run slowed between its read and its write could hold the
endpoint together with one that had already read its own claim back).
An endpoint that does not exist yet is created, empty, to hold the claim (tagged as made for
it, so releasing the claim deletes it again when no deployment ever reached it).
"""

from __future__ import annotations

import time

from deployflow.platform.base import MLPlatform
from deployflow.platform.errors import PlatformNotFoundError
from deployflow.platform.specs import EndpointSpec, EndpointState

CLAIM_TAG = "deployflow-claimed-by"
CREATED_FOR_CLAIM_TAG = "deployflow-created-for"
#: the least wait between writing a claim and reading it back; the write's own duration is added
SETTLE_S = 2.0


def holder(platform: MLPlatform, endpoint: str) -> str | None:
    """The run that holds the endpoint now, or None (no claim, or no endpoint)."""
    try:
        return platform.get_endpoint(endpoint).tags.get(CLAIM_TAG)
    except PlatformNotFoundError:
        return None


def claim(platform: MLPlatform, endpoint: str, run: str, *, compute: str | None, force: bool = False) -> str | None:
    """Claim ``endpoint`` for ``run``: None when ``run`` holds it now, else the run that does.

    ``force`` takes a claim over from a run that no longer runs (the caller checked that).
    """
    try:
        state: EndpointState | None = platform.get_endpoint(endpoint)
    except PlatformNotFoundError:
        state = None
    held_by = state.tags.get(CLAIM_TAG) if state else None
    if held_by == run:
        return None
    if held_by is not None and not force:
        return held_by
    tags = {**(state.tags if state else {CREATED_FOR_CLAIM_TAG: run}), CLAIM_TAG: run}
    started = time.monotonic()
    _write(platform, endpoint, state, tags, compute)
    time.sleep(SETTLE_S + time.monotonic() - started)  # a competitor's write takes about as long
    now = platform.get_endpoint(endpoint).tags.get(CLAIM_TAG)
    return None if now == run else now


def release(platform: MLPlatform, endpoint: str, run: str) -> str:
    """Give the claim up (only ``run``'s own); delete the endpoint if it was made for this claim and is
    still empty. Returns what was done, for the log."""
    try:
        state = platform.get_endpoint(endpoint)
    except PlatformNotFoundError:
        return f"endpoint {endpoint} is gone: nothing to release"
    if state.tags.get(CLAIM_TAG) != run:
        return f"endpoint {endpoint} is not held by {run} (held by {state.tags.get(CLAIM_TAG) or 'nobody'})"
    if state.tags.get(CREATED_FOR_CLAIM_TAG) == run and not platform.list_deployments(endpoint):
        platform.delete_endpoint(endpoint)
        return f"endpoint {endpoint} was created to hold the claim and no deployment reached it: deleted"
    tags = {k: v for k, v in state.tags.items() if k not in (CLAIM_TAG, CREATED_FOR_CLAIM_TAG)}
    _write(platform, endpoint, state, tags, state.compute)
    return f"released endpoint {endpoint}"


def _write(
    platform: MLPlatform, endpoint: str, state: EndpointState | None, tags: dict[str, str], compute: str | None
) -> None:
    spec = EndpointSpec(
        name=endpoint,
        compute=state.compute if state else compute or None,
        auth_mode=state.auth_mode if state else "key",
        description=state.description if state else "",
        tags=tags,
    )
    platform.create_or_update_endpoint(spec)
