"""Azure ML's rules for an endpoint's traffic, checked before a call that would fail on them.

Live traffic sums to 100 (or 0, to stop traffic); mirrored traffic goes to at most one
deployment, at most 50 %, never to a deployment that also takes live traffic, and not at all
on Kubernetes endpoints, which do not support mirroring.
"""

from __future__ import annotations

from deployflow.platform.contract import MAX_MIRROR_PERCENT
from deployflow.platform.errors import PlatformError


def check_traffic(endpoint: str, live: dict[str, int], mirror: dict[str, int], *, kubernetes: bool) -> None:
    """Raise a PlatformError naming the rule the requested traffic breaks."""
    for kind, shares in (("traffic", live), ("mirror traffic", mirror)):
        for deployment, percent in shares.items():
            if isinstance(percent, bool) or not isinstance(percent, int) or not 0 <= percent <= 100:
                raise PlatformError(
                    f"endpoint {endpoint}: {kind} for {deployment} must be a whole percentage 0-100, got {percent!r}"
                )
    total = sum(live.values())
    if total not in (0, 100):
        raise PlatformError(f"endpoint {endpoint}: live traffic must sum to 100 (or 0), got {total} in {live}")
    mirrored = {d: p for d, p in mirror.items() if p}
    if not mirrored:
        return
    if kubernetes:
        raise PlatformError(
            f"endpoint {endpoint} is a Kubernetes endpoint, and Azure ML does not mirror traffic on those; "
            "test the new deployment through the azureml-model-deployment header instead"
        )
    if len(mirrored) > 1:
        raise PlatformError(f"endpoint {endpoint}: traffic can be mirrored to one deployment only, got {mirrored}")
    ((deployment, percent),) = mirrored.items()
    if percent > MAX_MIRROR_PERCENT:
        raise PlatformError(
            f"endpoint {endpoint}: at most {MAX_MIRROR_PERCENT} % can be mirrored, got {percent} % for {deployment}"
        )
    if live.get(deployment):
        raise PlatformError(
            f"endpoint {endpoint}: deployment {deployment} cannot take both live ({live[deployment]} %) "
            f"and mirrored ({percent} %) traffic"
        )
