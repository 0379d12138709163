"""Measure a gate's window with probe load: the new and the current deployment side by side.

When an endpoint has no live traffic to judge by, the rollout drives its own: two open-loop
streams through the endpoint's scoring URI, one pinned to each deployment with the
``azureml-model-deployment`` header, for the step's window. Each stream's result becomes the
gate's ``WindowStats``. The probe never changes traffic; it only reads.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from deployflow.loadtest import LoadResult, RequestSpec, Schedule, run_open_loop
from deployflow.platform.base import MLPlatform
from deployflow.platform.specs import DEPLOYMENT_HEADER
from deployflow.rollout.gates import WindowStats


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

    def measure(self, window_s: float, new: str, old: str | None) -> tuple[WindowStats, WindowStats | None]:
        """Load ``new`` (and ``old``, when there is one) for ``window_s`` at once; their stats."""
        scoring_uri = self.platform.get_endpoint(self.endpoint).scoring_uri
        auth = self.platform.scoring_headers(self.endpoint)

        def run(deployment: str) -> WindowStats:
            headers = {**auth, DEPLOYMENT_HEADER: deployment, "Content-Type": "application/json"}
            request = RequestSpec(scoring_uri, body=self.body, headers=headers, timeout_s=self.timeout_s)
            return window_stats(run_open_loop(request, Schedule.constant(self.rate, window_s)), deployment)

        names = [new] if old is None else [new, old]
        with ThreadPoolExecutor(max_workers=len(names)) as pool:
            stats = list(pool.map(run, names))
        return stats[0], (stats[1] if old is not None else None)
