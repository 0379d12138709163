"""The AmlCompute cluster batch jobs run on: created when missing, left alone when present.

A cluster that scales to ``min_instances=0`` costs nothing between jobs; ``idle_time_before_scale_down``
(seconds) keeps nodes warm between the mini-batches of one job and the next job of a schedule.
"""

from __future__ import annotations

import logging

from azure.ai.ml import MLClient
from azure.ai.ml.entities import AmlCompute

from deployflow.azureml.calls import RetryPolicy, call_sdk, wait_for
from deployflow.platform.errors import PlatformError, PlatformNotFoundError

log = logging.getLogger(__name__)

_CHECK_CLUSTER = "the VM size and its quota in the workspace's region, and the identity's role on the workspace"


def ensure_compute_cluster(
    ml_client: MLClient,
    name: str,
    *,
    size: str,
    max_instances: int,
    min_instances: int = 0,
    idle_time_before_scale_down: int = 120,
    timeout_s: float = 900,
    retry: RetryPolicy | None = None,
) -> bool:
    """Create the cluster ``name`` unless the workspace has it; True when it was created.

    An existing cluster is not resized: its settings may have been tuned by hand.
    """
    if not 0 <= min_instances <= max_instances or max_instances < 1:
        raise PlatformError(
            f"compute cluster {name}: need 0 <= min_instances <= max_instances and max_instances >= 1, "
            f"got {min_instances} and {max_instances}"
        )
    policy = retry or RetryPolicy()
    existing = _find_compute(ml_client, name, policy)
    if existing is not None:
        if not isinstance(existing, AmlCompute):
            raise PlatformError(
                f"workspace {ml_client.workspace_name} already has a compute {name} of type "
                f"{getattr(existing, 'type', '?')}; batch jobs need an AmlCompute cluster: choose another name"
            )
        log.info("compute cluster %s already exists (size %s); left as it is", name, existing.size)
        return False
    cluster = AmlCompute(
        name=name,
        size=size,
        min_instances=min_instances,
        max_instances=max_instances,
        idle_time_before_scale_down=idle_time_before_scale_down,
    )
    what = f"create compute cluster {name} ({size}, {min_instances}-{max_instances} nodes)"
    poller = call_sdk(
        lambda: ml_client.compute.begin_create_or_update(cluster), what=what, check=_CHECK_CLUSTER, policy=policy
    )
    wait_for(poller, what=what, check=_CHECK_CLUSTER, timeout_s=timeout_s)
    log.info("created compute cluster %s (%s, %d-%d nodes)", name, size, min_instances, max_instances)
    return True


def _find_compute(ml_client: MLClient, name: str, policy: RetryPolicy) -> object | None:
    try:
        return call_sdk(
            lambda: ml_client.compute.get(name=name),
            what=f"get compute {name}",
            check="the identity's role on the workspace",
            policy=policy,
        )
    except PlatformNotFoundError:
        return None
