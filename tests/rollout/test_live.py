"""Live metrics as the gates read them: counters differenced, the probe's left out, percentiles from buckets;
and a managed endpoint's Azure Monitor metrics at the SDK boundary."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from unittest.mock import create_autospec

import pytest
from azure.monitor.query import MetricsQueryClient
from azure.monitor.query._models import Metric, MetricsQueryResult, MetricValue, TimeSeriesElement

from deployflow.rollout.live import (
    AzureMonitorMetrics,
    CounterMetrics,
    LiveMetricsError,
    quantile_ms,
    user_counts,
)


def series(deployment: str, traffic: str, ok: int, server: int = 0, timeouts: int = 0, fast: int | None = None):
    """Samples as the router exports them: requests by class, timeouts, a two-bucket histogram (5 ms, 50 ms)."""
    labels = {"endpoint": "shop", "deployment": deployment, "traffic": traffic}
    total = ok + server
    fast = total if fast is None else fast
    return [
        ("deployflow_requests_total", {**labels, "code": "2xx"}, float(ok)),
        ("deployflow_requests_total", {**labels, "code": "5xx"}, float(server)),
        ("deployflow_request_timeouts_total", labels, float(timeouts)),
        ("deployflow_request_duration_seconds_bucket", {**labels, "le": "0.005"}, float(fast)),
        ("deployflow_request_duration_seconds_bucket", {**labels, "le": "0.05"}, float(total)),
        ("deployflow_request_duration_seconds_bucket", {**labels, "le": "+Inf"}, float(total)),
    ]


def test_a_window_is_the_difference_of_two_readings_and_the_probe_is_not_users_traffic() -> None:
    readings = iter(
        [
            series("green", "mirror", 10) + series("green", "probe", 100) + series("blue", "live", 500),
            series("green", "mirror", 80, server=30, timeouts=5) + series("green", "probe", 900)
            + series("blue", "live", 1400),
        ]
    )  # fmt: skip
    live = CounterMetrics("test", lambda: next(readings))

    mark = live.mark("shop")
    window = live.since(mark, "shop")

    green = window["green"]
    assert (green.requests, green.errors_5xx, green.timeouts) == (100, 25, 5), "mirror copies, no probe requests"
    assert window["blue"].requests == 900


def test_percentiles_come_from_the_buckets_interpolated_as_promql_does() -> None:
    buckets = {0.005: 90.0, 0.05: 100.0, float("inf"): 100.0}
    assert quantile_ms(0.5, buckets) == pytest.approx(5 * 50 / 90)
    assert quantile_ms(0.95, buckets) == pytest.approx(5 + 45 * 0.5)  # halfway into the (5, 50] ms bucket
    assert quantile_ms(0.99, {0.005: 0.0, float("inf"): 10.0}) == 5.0, "beyond the last bound: the bound"
    assert quantile_ms(0.99, {}) is None


def test_other_endpoints_are_left_out() -> None:
    samples = series("green", "live", 10)
    samples[0] = ("deployflow_requests_total", {**samples[0][1], "endpoint": "other"}, 99.0)
    assert sum(user_counts(samples, "shop")["green"].by_class.values()) == 0


def test_a_reading_that_fails_is_a_live_metrics_error() -> None:
    def broken():
        raise OSError("connection refused")

    with pytest.raises(LiveMetricsError, match="connection refused"):
        CounterMetrics("runtime /metrics", broken).mark("shop")


def minute_values(*totals: float, average: float | None = None) -> list[MetricValue]:
    start = datetime(2026, 12, 4, 3, 0, tzinfo=UTC)
    return [MetricValue(timestamp=start + timedelta(minutes=i), total=t, average=average) for i, t in enumerate(totals)]


def metric(name: str, *elements: TimeSeriesElement) -> Metric:
    return Metric(id=f"/x/{name}", type="Microsoft.Insights/metrics", name=name, unit="Count",
                  timeseries=list(elements), display_description="")  # fmt: skip


def test_azure_monitor_reads_requests_by_deployment_and_status_class_and_the_p99() -> None:
    client = create_autospec(MetricsQueryClient, instance=True)
    client.query_resource.return_value = MetricsQueryResult(
        timespan="PT2M",
        metrics=[
            metric(
                "RequestsPerMinute",
                TimeSeriesElement(metadata_values={"deployment": "green", "statuscodeclass": "2xx"},
                                  data=minute_values(600, 500)),
                TimeSeriesElement(metadata_values={"deployment": "green", "statuscodeclass": "5xx"},
                                  data=minute_values(300, 200)),
                TimeSeriesElement(metadata_values={"deployment": "blue", "statuscodeclass": "2xx"},
                                  data=minute_values(5000, 5000)),
            ),
            metric("RequestLatency_P99",
                   TimeSeriesElement(metadata_values={"deployment": "green"}, data=minute_values(0, 0, average=80.0))),
        ],
    )  # fmt: skip
    start = datetime(2026, 12, 4, 3, 0, tzinfo=UTC)
    monitor = AzureMonitorMetrics(client, lambda ep: f"/subscriptions/s/.../onlineEndpoints/{ep}", now=lambda: start)

    window = monitor.since(monitor.mark("shop"), "shop")

    assert (window["green"].requests, window["green"].errors_5xx, window["green"].p99_ms) == (1600, 500, 80.0)
    assert window["blue"].requests == 10000 and window["blue"].p99_ms is None
    (resource,), kwargs = client.query_resource.call_args
    assert resource.endswith("/onlineEndpoints/shop")
    assert kwargs["timespan"] == (start, start + timedelta(minutes=1)), "a window of at least one minute"
    assert "deployment eq '*'" in kwargs["filter"] and kwargs["granularity"] == timedelta(minutes=1)
