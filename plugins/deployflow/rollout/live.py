"""What users' own requests did during a gate window: the live-metrics providers the gates read.

A provider answers one question — per deployment, what did the traffic users sent (live, and
mirrored copies of it) get between ``mark()`` and ``since(mark)`` — as the gates'
``WindowStats``. The probe's own requests carry the ``x-deployflow-probe`` header and are
counted apart by the router, so live numbers are the users' alone.

* ``runtime``: the local runtime's ``/metrics`` read directly, two snapshots a window apart
  (no Prometheus needed);
* ``prometheus``: the same counters through PromQL, from a Prometheus that scrapes the runtime
  (``./dev up``) or an AKS cluster's router metrics (Azure Managed Prometheus);
* ``azure_monitor``: a managed online endpoint's platform metrics (``RequestsPerMinute`` by
  deployment and status class, ``RequestLatency_P99``) through ``azure-monitor-query``; one-minute
  grain, so its windows should be a minute or more.

Counters come as the router exports them (see ``runtime/serving/metrics.py``):
``deployflow_requests_total{endpoint,deployment,traffic,code}``, ``..._request_timeouts_total``,
``..._request_no_answer_total`` and the ``deployflow_request_duration_seconds`` histogram.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from deployflow.rollout.gates import WindowStats

PROBE_HEADER = "x-deployflow-probe"
USER_TRAFFIC = ("live", "mirror")
REQUESTS = "deployflow_requests_total"
TIMEOUTS = "deployflow_request_timeouts_total"
BUCKETS = "deployflow_request_duration_seconds_bucket"
SHADOW = "deployflow_shadow_answers_total"

Labels = Mapping[str, str]
Sample = tuple[str, Labels, float]


class LiveMetricsError(RuntimeError):
    """The metrics could not be read; the gate falls back to the probe and says why."""


@dataclass
class Counts:
    """Cumulative counters of one deployment's user traffic."""

    by_class: dict[str, float] = field(default_factory=dict)
    timeouts: float = 0.0
    buckets: dict[float, float] = field(default_factory=dict)  # upper bound (s) -> cumulative count
    shadow: dict[str, float] = field(default_factory=dict)  # "agree" / "disagree" -> mirrored answers compared

    def minus(self, earlier: Counts | None) -> Counts:
        if earlier is None:
            return self
        return Counts(
            {k: v - earlier.by_class.get(k, 0.0) for k, v in self.by_class.items()},
            self.timeouts - earlier.timeouts,
            {le: v - earlier.buckets.get(le, 0.0) for le, v in self.buckets.items()},
            {k: v - earlier.shadow.get(k, 0.0) for k, v in self.shadow.items()},
        )

    def agreement(self) -> tuple[int, int]:
        """(compared, agreed): mirrored answers the router compared with the live ones."""
        agreed, disagreed = round(self.shadow.get("agree", 0.0)), round(self.shadow.get("disagree", 0.0))
        return agreed + disagreed, agreed

    def stats(self, deployment: str) -> WindowStats:
        requests = round(sum(self.by_class.values()))
        timeouts = round(self.timeouts)
        server = round(self.by_class.get("5xx", 0.0))
        return WindowStats(
            requests=requests,
            errors_5xx=max(server - timeouts, 0),
            timeouts=min(timeouts, server),
            errors_4xx=round(self.by_class.get("4xx", 0.0)),
            p50_ms=quantile_ms(0.50, self.buckets),
            p95_ms=quantile_ms(0.95, self.buckets),
            p99_ms=quantile_ms(0.99, self.buckets),
            deployment=deployment,
        )


def quantile_ms(q: float, buckets: Mapping[float, float]) -> float | None:
    """The q-quantile of a cumulative histogram, interpolated within its bucket (as PromQL's
    histogram_quantile does); None when the histogram is empty."""
    ordered = sorted(buckets.items())
    total = ordered[-1][1] if ordered else 0.0
    if total <= 0:
        return None
    rank, lower, below = q * total, 0.0, 0.0
    for upper, count in ordered:
        if count >= rank:
            if math.isinf(upper):
                return lower * 1000  # beyond the last finite bound: its bound is all that is known
            inside = count - below
            fraction = (rank - below) / inside if inside > 0 else 1.0
            return (lower + (upper - lower) * fraction) * 1000
        lower, below = upper, count
    return lower * 1000


def user_counts(samples: Iterable[Sample], endpoint: str) -> dict[str, Counts]:
    """Per deployment of ``endpoint``, its live and mirrored traffic summed (the probe's left out)."""
    counts: dict[str, Counts] = {}
    for name, labels, value in samples:
        if labels.get("endpoint") != endpoint:
            continue
        if name == SHADOW:
            entry = counts.setdefault(labels["deployment"], Counts())
            entry.shadow[labels["result"]] = entry.shadow.get(labels["result"], 0.0) + value
            continue
        if labels.get("traffic") not in USER_TRAFFIC:
            continue
        entry = counts.setdefault(labels["deployment"], Counts())
        if name == REQUESTS:
            entry.by_class[labels["code"]] = entry.by_class.get(labels["code"], 0.0) + value
        elif name == TIMEOUTS:
            entry.timeouts += value
        elif name == BUCKETS:
            le = float(labels["le"])
            entry.buckets[le] = entry.buckets.get(le, 0.0) + value
    return counts


class LiveMetrics(Protocol):
    """Where live numbers come from; ``source`` names it in the decision record."""

    source: str

    def mark(self, endpoint: str) -> Any: ...

    def since(self, mark: Any, endpoint: str) -> dict[str, WindowStats]: ...

    def agreement_since(self, mark: Any, endpoint: str, deployment: str) -> tuple[int, int] | None:
        """(compared, agreed) of the deployment's mirrored answers since ``mark``; None: not measured."""
        ...


@dataclass
class CounterMetrics:
    """Live numbers from cumulative counters: the difference of two readings."""

    source: str
    read: Callable[[], list[Sample]]

    def mark(self, endpoint: str) -> dict[str, Counts]:
        return user_counts(self._read(), endpoint)

    def since(self, mark: dict[str, Counts], endpoint: str) -> dict[str, WindowStats]:
        now = user_counts(self._read(), endpoint)
        return {name: counts.minus(mark.get(name)).stats(name) for name, counts in now.items()}

    def agreement_since(self, mark: dict[str, Counts], endpoint: str, deployment: str) -> tuple[int, int] | None:
        now = user_counts(self._read(), endpoint).get(deployment)
        return now.minus(mark.get(deployment)).agreement() if now is not None else None

    def _read(self) -> list[Sample]:
        try:
            return self.read()
        except Exception as e:  # noqa: BLE001 - any reading failure means: judge by the probe instead
            raise LiveMetricsError(f"{self.source} metrics could not be read: {e}") from e


def runtime_metrics(metrics_url: str) -> CounterMetrics:
    """The local runtime's own ``/metrics``, read directly."""
    from deployflow.metrics.client import read_snapshot

    def read() -> list[Sample]:
        return [(name, dict(labels), value) for (name, labels), value in read_snapshot(metrics_url).items()]

    return CounterMetrics("runtime /metrics", read)


def prometheus_metrics(prometheus_url: str) -> CounterMetrics:
    """The router's counters through a Prometheus that scrapes them."""
    from deployflow.metrics.client import query

    def read() -> list[Sample]:
        return [(name, labels, value) for name in (REQUESTS, TIMEOUTS, BUCKETS, SHADOW) for labels, value in
                query(prometheus_url, name)]  # fmt: skip

    return CounterMetrics("prometheus", read)


@dataclass
class AzureMonitorMetrics:
    """A managed online endpoint's platform metrics (one-minute grain) through azure-monitor-query.

    ``client`` is an ``azure.monitor.query.MetricsQueryClient``; ``resource_id`` the endpoint's
    ARM id. Latency is Azure ML's own ``RequestLatency_P99`` (its p50/p95 likewise), averaged
    over the window's minutes.
    """

    client: Any
    resource_id: Callable[[str], str]
    source: str = "azure_monitor"
    now: Callable[[], datetime] = lambda: datetime.now(UTC)  # noqa: E731

    def mark(self, endpoint: str) -> datetime:
        return self.now()

    def agreement_since(self, mark: datetime, endpoint: str, deployment: str) -> None:
        """Azure ML drops mirrored answers: there is nothing to compare here (the probe compares)."""
        return None

    def since(self, mark: datetime, endpoint: str) -> dict[str, WindowStats]:
        end = max(self.now(), mark + timedelta(minutes=1))
        try:
            result = self.client.query_resource(
                self.resource_id(endpoint),
                metric_names=["RequestsPerMinute", "RequestLatency_P50", "RequestLatency_P95", "RequestLatency_P99"],
                timespan=(mark, end),
                granularity=timedelta(minutes=1),
                aggregations=["Total", "Average"],
                filter="deployment eq '*' and statusCodeClass eq '*'",
            )
        except Exception as e:  # noqa: BLE001 - any query failure means: judge by the probe instead
            raise LiveMetricsError(f"Azure Monitor metrics of endpoint {endpoint} could not be read: {e}") from e
        requests: dict[str, dict[str, float]] = {}
        latency: dict[str, dict[str, list[float]]] = {}
        for metric in result.metrics:
            for series in metric.timeseries:
                deployment = series.metadata_values.get("deployment")
                if not deployment:
                    continue
                if metric.name == "RequestsPerMinute":
                    status = str(series.metadata_values.get("statuscodeclass") or
                                 series.metadata_values.get("statusCodeClass") or "2xx")  # fmt: skip
                    per_class = requests.setdefault(deployment, {})
                    per_class[status] = per_class.get(status, 0.0) + sum(v.total or 0.0 for v in series.data)
                else:
                    values = [v.average for v in series.data if v.average is not None]
                    latency.setdefault(deployment, {})[metric.name.rsplit("_", 1)[-1].lower()] = values
        stats = {}
        for deployment, per_class in requests.items():
            lat = latency.get(deployment, {})

            def mean(key: str, lat: dict[str, list[float]] = lat) -> float | None:
                return sum(lat[key]) / len(lat[key]) if lat.get(key) else None

            stats[deployment] = WindowStats(
                requests=round(sum(per_class.values())),
                errors_5xx=round(per_class.get("5xx", 0.0)),
                errors_4xx=round(per_class.get("4xx", 0.0)),
                p50_ms=mean("p50"),
                p95_ms=mean("p95"),
                p99_ms=mean("p99"),
                deployment=deployment,
            )
        return stats
