"""Measure a gate's window with probe load: the new and the current deployment side by side.

When an endpoint has no live traffic to judge by, the rollout drives its own: two open-loop
streams through the endpoint's scoring URI, one pinned to each deployment with the
``azureml-model-deployment`` header, for the step's window, in slices so that a certain failure
can end the window early. Each stream's result becomes the gate's ``WindowStats``. The probe
never changes traffic; it only reads.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from deployflow.loadtest import LoadResult, RequestSpec, Schedule, merge_results, run_open_loop_refreshing
from deployflow.platform.base import MLPlatform
from deployflow.platform.contract import DEPLOYMENT_HEADER
from deployflow.rollout.gates import WindowStats
from deployflow.rollout.live import PROBE_HEADER

# A gate window is probed in slices this long, so a certain failure ends it early.
SLICE_S = 5.0


def window_stats(result: LoadResult, deployment: str) -> WindowStats:
    """A load result as the gates see it: answers, errors by kind, latency percentiles of the successes."""
    errors = result.errors
    http = {name: count for name, count in errors.items() if name.startswith("http_")}
    unanswered = sum(count for name, count in errors.items() if name not in http)  # timeouts, refused, reset
    timeouts = errors.get("timeout", 0)
    latency = result.latency.percentiles() if result.ok else None
    return WindowStats(
        requests=result.completed + unanswered,
        errors_5xx=sum(c for n, c in http.items() if n.startswith("http_5")) + unanswered - timeouts,
        timeouts=timeouts,
        errors_4xx=sum(c for n, c in http.items() if n.startswith("http_4")),
        p50_ms=latency.p50 if latency else None,
        p95_ms=latency.p95 if latency else None,
        p99_ms=latency.p99 if latency else None,
        deployment=deployment,
    )


@dataclass(frozen=True)
class Probe:
    """Probe load for gate windows: ``rate`` requests/s to each deployment measured."""

    platform: MLPlatform
    endpoint: str
    body: bytes
    rate: float = 50.0
    timeout_s: float = 5.0

    def measure(
        self, window_s: float, new: str, old: str | None, *, cut_short: Callable[[WindowStats], bool] | None = None
    ) -> tuple[WindowStats, WindowStats | None]:
        """Load ``new`` (and ``old``, when there is one) for ``window_s`` at once; their stats.

        The window is measured in slices of at most ``SLICE_S``; after each, ``cut_short`` sees
        the new deployment's stats so far and may end the window there (a failure that the rest
        of the window cannot undo need not wait for its end).
        """
        scoring_uri = self.platform.get_endpoint(self.endpoint).scoring_uri

        def run(deployment: str, seconds: float) -> LoadResult:
            def request() -> tuple[RequestSpec, float | None]:  # asked per slice: an aml_token expires
                auth, until = self.platform.scoring_headers_until(self.endpoint)
                # marked as the probe's, so live metrics count users' traffic alone
                headers = {**auth, DEPLOYMENT_HEADER: deployment, "Content-Type": "application/json", PROBE_HEADER: "1"}
                return RequestSpec(scoring_uri, body=self.body, headers=headers, timeout_s=self.timeout_s), until

            return run_open_loop_refreshing(request, Schedule.constant(self.rate, seconds))

        names = [new] if old is None else [new, old]
        merged: dict[str, LoadResult] = {}
        slices = max(1, math.ceil(window_s / SLICE_S))
        with ThreadPoolExecutor(max_workers=len(names)) as pool:
            for index in range(slices):
                for name, part in zip(names, pool.map(run, names, [window_s / slices] * len(names)), strict=True):
                    # The slices run one after another: merging adds counts and histograms, which is
                    # all the gate reads (the summed rate of a merge is not used here).
                    merged[name] = merge_results([merged[name], part]) if name in merged else part
                if index < slices - 1 and cut_short is not None and cut_short(window_stats(merged[new], new)):
                    break
        return window_stats(merged[new], new), (window_stats(merged[old], old) if old is not None else None)
