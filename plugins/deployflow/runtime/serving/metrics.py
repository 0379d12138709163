"""Live traffic metrics of the router, per endpoint and deployment, live and mirrored apart.

What rollout gates on live traffic read, in Prometheus text format at ``GET /metrics`` on the
runtime's control plane. Every series has the labels ``endpoint``, ``deployment`` and
``traffic`` (``live``: requests a caller is waiting for; ``mirror``: copies whose answers are
dropped; ``probe``: requests a rollout's probe sent, marked with the ``x-deployflow-probe``
header, so gates can judge users' traffic alone):

* ``deployflow_requests_total{...,code}`` -- answers by status class (``code="2xx"``,
  ``"4xx"``, ``"5xx"``; others only once seen), the router's own 502/503/504 included;
* ``deployflow_request_timeouts_total`` -- requests the deployment did not answer within its
  ``request_timeout_ms`` (the caller got a 504);
* ``deployflow_request_no_answer_total`` -- requests no instance answered: none ready, every
  one refused or went away, or the answer was not HTTP (the caller got a 502 or 503);
* ``deployflow_shadow_answers_total{endpoint,deployment,result}`` -- mirrored answers the router
  compared with the live deployment's answer to the same request: ``result="agree"`` or
  ``"disagree"`` (the last disagreements are kept for the control API);
* ``deployflow_request_duration_seconds`` -- histogram of the time from routing a request to
  its answer (retries on other instances included), with buckets from 0.5 ms to 10 s.

The router's hot path only adds to plain integers (:class:`TrafficSeries`); the Prometheus
families are built when ``/metrics`` is read, so a scrape costs the scraper, not the requests.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import deque
from collections.abc import Iterator, Mapping
from typing import Any

from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import CollectorRegistry

# Model serving answers in milliseconds; the top buckets catch requests that time out.
BUCKETS_S = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)
BUCKET_LABELS = [*(f"{b:g}" for b in BUCKETS_S), "+Inf"]
ALWAYS_SHOWN_CLASSES = (2, 4, 5)  # zero series exist from the start, so rate() of errors is 0, not absent
LABELS = ("endpoint", "deployment", "traffic")
SHADOW_SAMPLES_KEPT = 20
PROBE_HEADER = b"x-deployflow-probe"
TIMEOUT = "timeout"
NO_ANSWER = "no_answer"


class TrafficSeries:
    """Counts for one deployment's live or mirrored traffic: what one answer adds is a few increments."""

    __slots__ = ("by_class", "timeouts", "no_answer", "buckets", "sum_s")

    def __init__(self) -> None:
        self.by_class = [0] * 10  # index: status // 100
        self.timeouts = 0
        self.no_answer = 0
        self.buckets = [0] * (len(BUCKETS_S) + 1)  # per bucket, not cumulative; the last is +Inf
        self.sum_s = 0.0

    def record(self, status: int, seconds: float, failure: str | None) -> None:
        self.by_class[status // 100] += 1
        self.buckets[bisect_left(BUCKETS_S, seconds)] += 1
        self.sum_s += seconds
        if failure is not None:
            if failure == TIMEOUT:
                self.timeouts += 1
            else:
                self.no_answer += 1


class ShadowAnswers:
    """Mirrored answers compared with the live answer to the same request (see ``router``)."""

    __slots__ = ("agreed", "disagreed", "disagreements")

    def __init__(self) -> None:
        self.agreed = 0
        self.disagreed = 0
        self.disagreements: deque[dict[str, str]] = deque(maxlen=SHADOW_SAMPLES_KEPT)

    def record(self, request_id: str, problems: list[str]) -> None:
        if problems:
            self.disagreed += 1
            self.disagreements.append({"request_id": request_id, "detail": "; ".join(problems[:3])[:500]})
        else:
            self.agreed += 1


class DeploymentMetrics:
    __slots__ = ("live", "mirror", "probe", "shadow")

    def __init__(self) -> None:
        self.live = TrafficSeries()
        self.mirror = TrafficSeries()
        self.probe = TrafficSeries()  # requests a rollout's probe sent (PROBE_HEADER): not users' traffic
        self.shadow = ShadowAnswers()


class RouterCollector:
    """Builds the ``deployflow_*`` families from the runtime's endpoints at scrape time.

    Only names and counts are exported: never keys, request bodies or headers."""

    def __init__(self, endpoints: Mapping[str, Any]) -> None:
        # the runtime's EndpointRuntime objects, by name (not imported: endpoints.py imports this module)
        self.endpoints = endpoints

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            "deployflow_requests", "Answers the router gave, by status class", labels=[*LABELS, "code"]
        )
        timeouts = CounterMetricFamily(
            "deployflow_request_timeouts", "Requests not answered within the request timeout", labels=LABELS
        )
        no_answer = CounterMetricFamily(
            "deployflow_request_no_answer", "Requests no instance of the deployment answered", labels=LABELS
        )
        duration = HistogramMetricFamily(
            "deployflow_request_duration_seconds", "Time from routing a request to its answer", labels=LABELS
        )
        shadow = CounterMetricFamily(
            "deployflow_shadow_answers",
            "Mirrored answers compared with the live answer to the same request",
            labels=["endpoint", "deployment", "result"],
        )
        for endpoint in list(self.endpoints.values()):
            for deployment in list(endpoint.deployments.values()):
                metrics = deployment.metrics
                for traffic, series in (("live", metrics.live), ("mirror", metrics.mirror), ("probe", metrics.probe)):
                    labels = [endpoint.name, deployment.name, traffic]
                    for status_class, count in enumerate(series.by_class):
                        if count or status_class in ALWAYS_SHOWN_CLASSES:
                            requests.add_metric([*labels, f"{status_class}xx"], count)
                    timeouts.add_metric(labels, series.timeouts)
                    no_answer.add_metric(labels, series.no_answer)
                    cumulative, total = [], 0
                    for label, count in zip(BUCKET_LABELS, series.buckets, strict=True):
                        total += count
                        cumulative.append((label, total))
                    duration.add_metric(labels, cumulative, series.sum_s)
                if metrics.shadow.agreed or metrics.shadow.disagreed:
                    shadow.add_metric([endpoint.name, deployment.name, "agree"], metrics.shadow.agreed)
                    shadow.add_metric([endpoint.name, deployment.name, "disagree"], metrics.shadow.disagreed)
        yield from (requests, timeouts, no_answer, duration, shadow)


def router_registry(endpoints: Mapping[str, Any]) -> CollectorRegistry:
    """A registry of the router's metrics alone (not the process-global one)."""
    registry = CollectorRegistry()
    registry.register(RouterCollector(endpoints))
    return registry
