"""Endpoints and deployments as the router sees them: live objects, routing tables, keys."""

from __future__ import annotations

import asyncio
import bisect
import hmac
import random
import secrets
from dataclasses import dataclass
from typing import Any

import psutil

from deployflow.runtime.errors import Invalid
from deployflow.runtime.schemas import (
    Deployment,
    DeploymentSpec,
    Endpoint,
    EndpointSpec,
    InstanceStatus,
    ProvisioningState,
)
from deployflow.runtime.serving.metrics import DeploymentMetrics
from deployflow.runtime.serving.replicas import Replica, ReplicaState

ROUTABLE = (ProvisioningState.SUCCEEDED, ProvisioningState.UPDATING, ProvisioningState.CREATING)


def process_usage(pid: int | None) -> dict[str, float | None]:
    """CPU seconds and resident memory of a replica's process tree (its server and workers)."""
    if pid is None:
        return {}
    try:
        root = psutil.Process(pid)
        processes = [root, *root.children(recursive=True)]
    except psutil.Error:
        return {}
    cpu = memory = 0.0
    for process in processes:
        try:
            times = process.cpu_times()
            cpu += times.user + times.system + times.children_user + times.children_system
            memory += process.memory_info().rss
        except psutil.Error:
            continue  # a worker that just exited
    return {"cpu_seconds": round(cpu, 3), "memory_mb": round(memory / 2**20, 1)}


def new_key() -> str:
    return secrets.token_urlsafe(32)


class DeploymentStats:
    """Counts of answers a deployment gave, by HTTP status: what rollout gates read."""

    __slots__ = ("requests", "by_status", "mirrored")

    def __init__(self) -> None:
        self.requests = 0
        self.mirrored = 0
        self.by_status: dict[int, int] = {}

    def record(self, status: int, *, mirrored: bool = False) -> None:
        self.requests += 1
        self.mirrored += mirrored
        self.by_status[status] = self.by_status.get(status, 0) + 1


class DeploymentRuntime:
    """A deployment's spec, state and the replicas currently serving it."""

    def __init__(self, endpoint_name: str, name: str, spec: DeploymentSpec, enforcement: str) -> None:
        self.endpoint_name = endpoint_name
        self.name = name
        self.name_bytes = name.encode()
        self.spec = spec
        self.enforcement = enforcement
        self.state = ProvisioningState.CREATING
        self.error: str | None = None
        self.replicas: list[Replica] = []
        self.replica_ready = asyncio.Event()
        self.provisioning: asyncio.Task[None] | None = None
        self.stats = DeploymentStats()
        self.metrics = DeploymentMetrics()
        self._turn = 0

    @property
    def timeout_s(self) -> float:
        return self.spec.request_settings.request_timeout_ms / 1000

    def routable(self) -> bool:
        return self.state in ROUTABLE

    def pick(self, exclude: set[Replica]) -> Replica | None:
        """The ready replica with the fewest requests in flight, taking turns between equals."""
        replicas = self.replicas
        count = len(replicas)
        best: Replica | None = None
        self._turn += 1
        for i in range(count):
            replica = replicas[(self._turn + i) % count]
            if replica.state is ReplicaState.READY and replica not in exclude:
                if best is None or replica.inflight < best.inflight:
                    best = replica
        return best

    def inflight(self) -> int:
        return sum(r.inflight for r in self.replicas)

    def document(self) -> dict[str, Any]:
        """What is persisted: the spec plus the state a restart must restore."""
        return {"spec": self.spec.model_dump(), "state": self.state.value, "error": self.error}

    def view(self) -> Deployment:
        instances = [
            InstanceStatus(index=i, state=r.state.value, restarts=r.restarts, pid=r.pid, **process_usage(r.pid))
            for i, r in enumerate(self.replicas)
        ]
        return Deployment(
            **self.spec.model_dump(),
            name=self.name,
            endpoint_name=self.endpoint_name,
            provisioning_state=self.state,
            error=self.error,
            enforcement=self.enforcement,
            instances=instances,
            requests=self.stats.requests,
            mirrored_requests=self.stats.mirrored,
            requests_by_status={str(k): v for k, v in sorted(self.stats.by_status.items())},
        )


@dataclass(frozen=True)
class TrafficPlan:
    """A checked traffic split, ready to swap in: the shares, and the router's tables for them."""

    traffic: dict[str, int]
    mirror_traffic: dict[str, int]
    cumulative: list[int]
    live: list[DeploymentRuntime]
    mirror: tuple[DeploymentRuntime, float] | None


class EndpointRuntime:
    """One endpoint: its keys, its deployments and the weighted table that splits its traffic."""

    def __init__(self, name: str, spec: EndpointSpec, primary_key: str, secondary_key: str) -> None:
        self.name = name
        self.spec = spec.model_copy(update={"traffic": None, "mirror_traffic": None})
        self.deployments: dict[str, DeploymentRuntime] = {}
        self.traffic: dict[str, int] = {}
        self.mirror_traffic: dict[str, int] = {}
        self._set_keys(primary_key, secondary_key)
        self._cumulative: list[int] = []
        self._live: list[DeploymentRuntime] = []
        self._mirror: tuple[DeploymentRuntime, float] | None = None

    def _set_keys(self, primary: str, secondary: str) -> None:
        self.primary_key, self.secondary_key = primary, secondary
        self._accepted = (b"Bearer " + primary.encode(), b"Bearer " + secondary.encode())

    def regenerated_keys(self, key_type: str) -> tuple[str, str]:
        """The (primary, secondary) pair with one key new; nothing changes until ``set_keys``."""
        if key_type == "primary":
            return new_key(), self.secondary_key
        return self.primary_key, new_key()

    def set_keys(self, primary: str, secondary: str) -> None:
        self._set_keys(primary, secondary)

    def authorized(self, authorization: bytes | None) -> bool:
        if not authorization:
            return False
        primary, secondary = self._accepted
        # Compare with both keys every time, so timing does not tell which one nearly matched.
        return hmac.compare_digest(authorization, primary) | hmac.compare_digest(authorization, secondary)

    def set_traffic(self, traffic: dict[str, int] | None, mirror: dict[str, int] | None) -> None:
        """Swap in a split as it was stored (a restart), failed deployments included; requests already
        routed keep their replica."""
        self.apply(self.plan_traffic(traffic, mirror, refuse_failed=False))

    def plan_traffic(
        self, traffic: dict[str, int] | None, mirror: dict[str, int] | None, *, refuse_failed: bool = True
    ) -> TrafficPlan:
        """Check a new split (None keeps the current one) without applying it: raises Invalid saying what to fix.

        Shares given to a deployment that failed to provision are refused (``refuse_failed``).
        """
        given = [*(traffic or {}).items(), *(mirror or {}).items()]
        traffic = self.traffic if traffic is None else traffic
        mirror = self.mirror_traffic if mirror is None else mirror
        for deployment in [*traffic, *mirror]:
            if deployment not in self.deployments:
                raise Invalid(
                    f"endpoint {self.name} has no deployment named {deployment}; "
                    f"it has {sorted(self.deployments) or 'none'}"
                )
        both = {k for k, v in traffic.items() if v} & {k for k, v in mirror.items() if v}
        if both:
            raise Invalid(f"deployment {sorted(both)[0]} cannot take live and mirrored traffic at once")
        for deployment, share in given if refuse_failed else []:
            if share and self.deployments[deployment].state is ProvisioningState.FAILED:
                raise Invalid(f"deployment {deployment} failed to provision and cannot take traffic")
        cumulative: list[int] = []
        live: list[DeploymentRuntime] = []
        total = 0
        for deployment, share in traffic.items():
            if share:
                total += share
                cumulative.append(total)
                live.append(self.deployments[deployment])
        if total not in (0, 100):
            raise Invalid(f"traffic shares must add up to 100 (or all be 0), not {total}")
        mirror_target = None
        for deployment, share in mirror.items():
            if share:
                mirror_target = (self.deployments[deployment], share / 100)
        return TrafficPlan(
            {k: v for k, v in traffic.items() if v}, {k: v for k, v in mirror.items() if v},
            cumulative, live, mirror_target,
        )  # fmt: skip

    def apply(self, plan: TrafficPlan) -> None:
        """Swap in a checked split at once (no await between the fields: the router sees old or new)."""
        self.traffic, self.mirror_traffic = plan.traffic, plan.mirror_traffic
        self._cumulative, self._live, self._mirror = plan.cumulative, plan.live, plan.mirror

    def choose(self) -> DeploymentRuntime | None:
        """A deployment drawn by traffic weight, or None when no deployment takes traffic."""
        if not self._live:
            return None
        return self._live[bisect.bisect_right(self._cumulative, random.random() * 100)]

    def mirror_target(self) -> DeploymentRuntime | None:
        """The mirror deployment when this request is one of the mirrored share, else None."""
        if self._mirror is None:
            return None
        deployment, share = self._mirror
        return deployment if random.random() < share else None

    def document(
        self, *, spec: EndpointSpec | None = None, plan: TrafficPlan | None = None, keys: tuple[str, str] | None = None
    ) -> dict[str, Any]:
        """What is persisted; with ``spec``, ``plan`` or ``keys``, the document of the change about to be applied."""
        primary, secondary = keys or (self.primary_key, self.secondary_key)
        return {
            "spec": (spec or self.spec).model_dump(exclude={"traffic", "mirror_traffic"}),
            "primary_key": primary,
            "secondary_key": secondary,
            "traffic": plan.traffic if plan else self.traffic,
            "mirror_traffic": plan.mirror_traffic if plan else self.mirror_traffic,
        }

    def view(self, scoring_uri: str) -> Endpoint:
        return Endpoint(
            name=self.name,
            auth_mode=self.spec.auth_mode,
            description=self.spec.description,
            tags=self.spec.tags,
            compute=self.spec.compute,
            traffic=self.traffic,
            mirror_traffic=self.mirror_traffic,
            scoring_uri=scoring_uri,
        )
