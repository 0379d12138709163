"""Live request rate, error rate and p99 per deployment, from the runtime's Prometheus text, when it has any.

Optional by design: a runtime without ``GET /metrics`` (or an Azure ML workspace) gives no
numbers, and the page shows "—". A rate needs two readings, so the last reading of each URL is
kept in the API server's memory and each page view measures the interval since the previous one.
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass

import httpx

SCRAPE_TIMEOUT_S = 2.0
MAX_INTERVAL_S = 600  # an older reading says nothing about "now"
_SERIES = re.compile(r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?P<labels>[^}]*)\})?\s+(?P<value>\S+)")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


@dataclass(frozen=True)
class LiveNumbers:
    """One deployment's live traffic over the last interval (None: not measurable)."""

    request_rate: float | None
    error_rate: float | None
    p99_ms: float | None


@dataclass
class _Reading:
    at: float
    counts: dict[tuple[str, str], dict[str, float]]  # (endpoint, deployment) -> requests, errors, bucket:<le>


_last: dict[str, _Reading] = {}
_lock = threading.Lock()


def parse(text: str) -> dict[tuple[str, str], dict[str, float]]:
    """Live-traffic totals per (endpoint, deployment): requests, 5xx answers, and cumulative latency buckets."""
    counts: dict[tuple[str, str], dict[str, float]] = {}
    for line in text.splitlines():
        match = _SERIES.match(line)
        if match is None or line.startswith("#"):
            continue
        labels = dict(_LABEL.findall(match["labels"] or ""))
        if labels.get("traffic", "live") != "live" or "deployment" not in labels:
            continue
        entry = counts.setdefault((labels.get("endpoint", ""), labels["deployment"]), {})
        value = float(match["value"])
        if match["name"] == "deployflow_requests_total":
            entry["requests"] = entry.get("requests", 0.0) + value
            if labels.get("code") == "5xx":
                entry["errors"] = entry.get("errors", 0.0) + value
        elif match["name"] == "deployflow_request_duration_seconds_bucket" and "le" in labels:
            entry[f"bucket:{labels['le']}"] = value
    return counts


def _p99_ms(buckets: dict[float, float]) -> float | None:
    """The upper bound of the bucket holding the 99th percentile (a histogram's resolution)."""
    total = buckets.get(float("inf"), 0.0)
    if total <= 0:
        return None
    for bound in sorted(buckets):
        if buckets[bound] >= 0.99 * total:
            return None if bound == float("inf") else bound * 1000
    return None


def live_numbers(metrics_url: str) -> dict[tuple[str, str], LiveNumbers]:
    """Numbers since the previous reading of ``metrics_url``; {} when it has no metrics or cannot be read."""
    try:
        response = httpx.get(metrics_url, timeout=SCRAPE_TIMEOUT_S)
    except httpx.HTTPError:
        return {}
    if response.status_code != 200:
        return {}
    now, counts = time.monotonic(), parse(response.text)
    with _lock:
        previous = _last.get(metrics_url)
        _last[metrics_url] = _Reading(now, counts)
    if previous is None or not 0 < now - previous.at <= MAX_INTERVAL_S:
        previous = None
    result = {}
    for key, entry in counts.items():
        before = previous.counts.get(key, {}) if previous else {}
        requests = entry.get("requests", 0.0) - before.get("requests", 0.0)
        errors = entry.get("errors", 0.0) - before.get("errors", 0.0)
        buckets = {
            float(name.split(":", 1)[1]): value - before.get(name, 0.0)
            for name, value in entry.items()
            if name.startswith("bucket:")
        }
        result[key] = LiveNumbers(
            request_rate=requests / (now - previous.at) if previous else None,
            error_rate=errors / requests if requests > 0 else None,
            p99_ms=_p99_ms(buckets),
        )
    return result
