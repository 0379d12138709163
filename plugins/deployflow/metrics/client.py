"""Reading the router's counts: PromQL through Prometheus, or the runtime's ``/metrics`` itself.

``query`` is for when a Prometheus scrapes the runtime (``./dev up``, AKS); ``snapshot`` is the
fallback when none exists: two snapshots a window apart give the window's counts.
"""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

Labels = dict[str, str]
SeriesKey = tuple[str, tuple[tuple[str, str], ...]]


class MetricsError(RuntimeError):
    """Prometheus or the runtime could not be read, or refused the query; the message says which and why."""


def query(prometheus_url: str, promql: str, *, timeout_s: float = 10.0) -> list[tuple[Labels, float]]:
    """An instant PromQL query: one (labels, value) per series of the vector, or one ({}, value) for a scalar."""
    url = f"{prometheus_url.rstrip('/')}/api/v1/query"
    try:
        response = httpx.get(url, params={"query": promql}, timeout=timeout_s)
    except httpx.HTTPError as e:
        raise MetricsError(f"cannot reach Prometheus at {prometheus_url}: {e}") from e
    try:
        body = response.json()
    except ValueError as e:
        raise MetricsError(f"{url} answered {response.status_code} with no JSON; is it Prometheus?") from e
    if body.get("status") != "success":
        raise MetricsError(f"Prometheus refused {promql!r}: {body.get('errorType')}: {body.get('error')}")
    data = body["data"]
    if data["resultType"] == "vector":
        return [(item["metric"], float(item["value"][1])) for item in data["result"]]
    if data["resultType"] == "scalar":
        return [({}, float(data["result"][1]))]
    raise MetricsError(f"{promql!r} gives a {data['resultType']}; ask for an instant vector or a scalar")


def snapshot(text: str) -> dict[SeriesKey, float]:
    """Every sample of a ``/metrics`` text, keyed by sample name and sorted labels."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def read_snapshot(metrics_url: str, *, timeout_s: float = 10.0) -> dict[SeriesKey, float]:
    """``snapshot`` of what ``metrics_url`` (the runtime's ``/metrics``) serves now."""
    try:
        response = httpx.get(metrics_url, timeout=timeout_s)
        response.raise_for_status()
    except httpx.HTTPError as e:
        raise MetricsError(f"cannot read {metrics_url}: {e}") from e
    return snapshot(response.text)
