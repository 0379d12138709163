"""Profile a model on a platform: deploy each candidate to the test endpoint, search, tear down.

The platform-facing half of profiling (the search and the recommendation are pure). Each
candidate gets its own deployment with no traffic, is loaded through the endpoint's scoring
URI pinned by the ``azureml-model-deployment`` header, and is deleted again whatever
happens, so a failed or killed profile leaves no deployment behind. A dry run deploys and deletes
each candidate too, sends no load and assumes the cheapest declared candidate. Given a `SplitLeader`
(`deployflow.profiling.split`), the steps above `max_rate_per_worker` are sent by several parts at once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from deployflow.loadtest import SLO, RequestSpec
from deployflow.loadtest.split import DEFAULT_MAX_RATE_PER_WORKER
from deployflow.platform.base import NOT_JUDGED, MLPlatform
from deployflow.platform.cleanup import removed_afterwards
from deployflow.platform.contract import DEPLOYMENT_HEADER
from deployflow.platform.errors import PlatformError
from deployflow.platform.specs import DeploymentSpec, ModelRef, RequestSettings
from deployflow.profiling.candidates import Candidate, PriceTable
from deployflow.profiling.measure import open_loop_measure
from deployflow.profiling.recommend import recommend
from deployflow.profiling.report import assumed_report, build_report
from deployflow.profiling.search import SearchResult, find_max_sustainable_rate
from deployflow.profiling.split import DEFAULT_STEP_LEAD_S, SplitLeader

log = logging.getLogger(__name__)
DEPLOYMENT_PREFIX = "prof"


@dataclass(frozen=True)
class ProfileSettings:
    """How hard and how long to search each candidate."""

    start_rate: float = 25.0
    max_rate: float = 2000.0
    min_rate: float | None = 1.0
    precision: float = 0.1
    max_steps: int = 10
    step_duration_s: float = 2.0
    settle_s: float = 0.5
    request_timeout_s: float = 5.0
    workers: int = 1
    deployment_timeout_s: float = 900.0
    # Above this rate a step is sent by several parts (mapped tasks, one per worker slot) at once.
    max_rate_per_worker: float = DEFAULT_MAX_RATE_PER_WORKER
    # From a split step's call to its shared start: time for every part to read it and fetch a key.
    step_start_lead_s: float = DEFAULT_STEP_LEAD_S


@dataclass
class ProfileRun:
    """What a profile produced: the JSON report and the deployments it created (all deleted)."""

    report: dict[str, Any]
    deployments: list[str] = field(default_factory=list)


def deployment_name(index: int) -> str:
    return f"{DEPLOYMENT_PREFIX}-{index}"


def run_profile(
    platform: MLPlatform,
    *,
    endpoint: str,
    model: ModelRef,
    package_path: str | None,
    request_body: bytes,
    candidates: list[Candidate],
    slo: SLO,
    target_rate: float,
    prices: PriceTable,
    headroom: float = 0.2,
    settings: ProfileSettings = ProfileSettings(),
    on_created: Callable[[str], None] | None = None,
    split: SplitLeader | None = None,
) -> ProfileRun:
    """Search every candidate in turn on ``endpoint`` and recommend the cheapest that serves the target."""
    started = time.monotonic()
    for candidate in candidates:
        prices.cost_per_hour(candidate)  # a candidate without a price fails before anything is deployed
    run = ProfileRun(report={})
    profiles: list[tuple[Candidate, SearchResult]] = []
    for index, candidate in enumerate(candidates):
        name = deployment_name(index)
        remove = partial(platform.delete_deployment, endpoint, name)
        with removed_afterwards(remove, f"delete profiling deployment {endpoint}/{name}", log):
            run.deployments.append(name)
            if on_created:
                on_created(name)
            shape = candidate.resources.describe()
            log.info("profile %s: deploying %s as %s (%s)", endpoint, candidate.name, name, shape)
            platform.begin_create_or_update_deployment(
                candidate_deployment_spec(endpoint, name, model, package_path, candidate, settings)
            )
            state = platform.wait_for_deployment(endpoint, name, timeout_s=settings.deployment_timeout_s)
            if state.failed:
                raise PlatformError(f"profile candidate {candidate.name} did not deploy: {state.error}")
            if platform.dry_run:
                what = f"profile load on {candidate.name} (a rate search from {settings.start_rate:g} requests/s)"
                log.warning("%s", platform.scoring_not_sent(endpoint, [request_body], deployment=name, what=what))
                continue
            search = _search(platform, endpoint, name, request_body, slo, settings, split)
            log.info(
                "profile %s: %s sustains %s requests/s within the SLO (%d steps: %s)",
                endpoint,
                candidate.name,
                search.max_sustainable_rate,
                len(search.steps),
                search.stop_reason,
            )
            profiles.append((candidate, search))
    if platform.dry_run:
        why, wall_time_s = f"{NOT_JUDGED}, no load sent", time.monotonic() - started
        run.report = assumed_report(
            candidates, prices, slo, target_rate=target_rate, headroom=headroom, wall_time_s=wall_time_s, why=why
        )
        platform.assume(f"profile on {endpoint}: {run.report['reason']}")
        return run
    recommendation = recommend(profiles, prices, target_rate=target_rate, headroom=headroom)
    run.report = build_report(recommendation, slo, prices, wall_time_s=time.monotonic() - started)
    return run


def candidate_deployment_spec(
    endpoint: str, name: str, model: ModelRef, package_path: str | None, candidate: Candidate, settings: ProfileSettings
) -> DeploymentSpec:
    """The deployment that puts one candidate on the test endpoint, with no traffic."""
    return DeploymentSpec(
        endpoint=endpoint,
        name=name,
        model=model,
        package_path=package_path,
        resources=candidate.resources,
        instance_count=candidate.instance_count,
        worker_count=candidate.worker_count,
        request_settings=RequestSettings(
            request_timeout_ms=int(settings.request_timeout_s * 1000),
            max_concurrent_requests_per_instance=candidate.worker_count,
        ),
    )


def _search(
    platform: MLPlatform,
    endpoint: str,
    name: str,
    body: bytes,
    slo: SLO,
    settings: ProfileSettings,
    split: SplitLeader | None = None,
) -> SearchResult:
    scoring_uri = platform.get_endpoint(endpoint).scoring_uri

    def request() -> tuple[RequestSpec, float | None]:  # asked before each step: an aml_token expires
        return candidate_request(platform, endpoint, name, body, settings, scoring_uri)

    measure = open_loop_measure(
        request,
        step_duration_s=settings.step_duration_s,
        workers=settings.workers,
        settle_s=settings.settle_s,
        usage=_usage_meter(platform, endpoint, name),
        split=partial(split.measure_step, name) if split else None,
    )
    return find_max_sustainable_rate(
        measure,
        slo,
        start_rate=settings.start_rate,
        max_rate=settings.max_rate,
        precision=settings.precision,
        max_steps=settings.max_steps,
        min_rate=settings.min_rate,
    )


def candidate_request(
    platform: MLPlatform,
    endpoint: str,
    name: str,
    body: bytes,
    settings: ProfileSettings,
    scoring_uri: str | None = None,
) -> tuple[RequestSpec, float | None]:
    """The sample request pinned to one candidate deployment, with a key fetched now, and until when it holds."""
    uri = scoring_uri or platform.get_endpoint(endpoint).scoring_uri
    auth, until = platform.scoring_headers_until(endpoint)
    headers = {**auth, DEPLOYMENT_HEADER: name, "Content-Type": "application/json"}
    return RequestSpec(uri, body=body, headers=headers, timeout_s=settings.request_timeout_s), until


def _usage_meter(platform: MLPlatform, endpoint: str, name: str) -> Callable[[], tuple[float | None, float | None]]:
    """Cores and GB the deployment used since the previous reading, where the platform reports usage."""
    last: dict[str, float] = {}

    def read() -> tuple[float | None, float | None]:
        state = platform.get_deployment(endpoint, name)
        now = time.monotonic()
        cores = None
        if state.cpu_seconds is not None and "cpu" in last:
            cores = round((state.cpu_seconds - last["cpu"]) / (now - last["at"]), 3)
        if state.cpu_seconds is not None:
            last.update(cpu=state.cpu_seconds, at=now)
        return cores, state.memory_gb

    read()  # the baseline before the first step
    return read
