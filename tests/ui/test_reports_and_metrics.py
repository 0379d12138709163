"""Report serving stays inside the reports folder; live numbers come from the router's Prometheus text."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi import HTTPException

from deployflow.ui.app import _served_path
from deployflow.ui.metrics import _p99_ms, parse
from deployflow.ui.routes import report_route

METRICS = """\
# HELP deployflow_requests_total Answers the router gave, by status class
# TYPE deployflow_requests_total counter
deployflow_requests_total{endpoint="diabetes",deployment="blue",traffic="live",code="2xx"} 990.0
deployflow_requests_total{endpoint="diabetes",deployment="blue",traffic="live",code="5xx"} 10.0
deployflow_requests_total{endpoint="diabetes",deployment="green",traffic="mirror",code="5xx"} 500.0
deployflow_request_duration_seconds_bucket{endpoint="diabetes",deployment="blue",traffic="live",le="0.005"} 900.0
deployflow_request_duration_seconds_bucket{endpoint="diabetes",deployment="blue",traffic="live",le="0.02"} 995.0
deployflow_request_duration_seconds_bucket{endpoint="diabetes",deployment="blue",traffic="live",le="+Inf"} 1000.0
"""


@pytest.fixture
def reports(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("DEPLOYFLOW_REPORTS_DIR", str(tmp_path / "reports"))
    return tmp_path / "reports"


def test_a_report_under_the_reports_folder_is_served(reports: Path) -> None:
    chart = reports / "dag" / "run" / "profile.html"
    chart.parent.mkdir(parents=True)
    chart.write_text("<svg/>")

    assert _served_path({"chart_path": str(chart)}, "chart", "dag", "run", "profile") == chart.resolve()


def test_a_path_outside_the_reports_folder_is_refused_even_through_dot_dots(reports: Path, tmp_path: Path) -> None:
    secret = tmp_path / "secret.json"
    secret.write_text("{}")

    for path in (secret, reports / ".." / "secret.json"):
        with pytest.raises(HTTPException) as refused:
            _served_path({"report_path": str(path)}, "report", "dag", "run", "stress_test")
        assert refused.value.status_code == 404 and "not under the reports folder" in refused.value.detail


def test_without_a_returned_path_the_stage_s_conventional_file_is_served(reports: Path) -> None:
    timeline = reports / "dag" / "manual__1_00" / "promote.html"
    timeline.parent.mkdir(parents=True)
    timeline.write_text("<html/>")

    assert _served_path(None, "timeline", "dag", "manual__1:00", "promote") == timeline.resolve()
    with pytest.raises(HTTPException, match="has no record"):
        _served_path(None, "record", "dag", "manual__1:00", "promote")


def test_report_routes_quote_run_ids_and_reject_unknown_kinds() -> None:
    route = report_route("realtime_deployment", "manual__2026-12-01T10:00:00+00:00", "profile", "chart")

    assert route == "/deployflow/reports/realtime_deployment/manual__2026-12-01T10%3A00%3A00%2B00%3A00/profile/chart"
    with pytest.raises(ValueError, match="one of report, chart"):
        report_route("d", "r", "t", "keys")


def test_live_numbers_count_live_traffic_only_and_the_p99_is_the_bucket_holding_it() -> None:
    counts = parse(METRICS)

    assert set(counts) == {("diabetes", "blue")}  # the mirror's copies are not what callers got
    blue = counts[("diabetes", "blue")]
    assert (blue["requests"], blue["errors"]) == (1000.0, 10.0)
    buckets = {float(k.split(":")[1]): v for k, v in blue.items() if k.startswith("bucket:")}
    assert _p99_ms(buckets) == 20.0
    assert _p99_ms({float("inf"): 0.0}) is None
