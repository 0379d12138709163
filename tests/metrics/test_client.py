"""Reading counts back: PromQL through a real Prometheus, and the /metrics text parsed without one."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from deployflow.metrics.client import MetricsError, query, read_snapshot, snapshot
from deployflow.metrics.prometheus import INSTALL_HINT, PrometheusServer, config_text, find_binary
from deployflow.runtime.serving.replicas import free_port

REPO = Path(__file__).resolve().parents[2]
TEXT = """\
# HELP deployflow_requests_total Answers the router gave, by status class
# TYPE deployflow_requests_total counter
deployflow_requests_total{endpoint="ep",deployment="blue",traffic="live",code="2xx"} 20.0
deployflow_requests_total{endpoint="ep",deployment="blue",traffic="live",code="5xx"} 3.0
# HELP deployflow_request_duration_seconds Time from routing a request to its answer
# TYPE deployflow_request_duration_seconds histogram
deployflow_request_duration_seconds_bucket{endpoint="ep",deployment="blue",traffic="live",le="0.001"} 4.0
deployflow_request_duration_seconds_bucket{endpoint="ep",deployment="blue",traffic="live",le="+Inf"} 23.0
deployflow_request_duration_seconds_count{endpoint="ep",deployment="blue",traffic="live"} 23.0
deployflow_request_duration_seconds_sum{endpoint="ep",deployment="blue",traffic="live"} 0.05
"""
BLUE = (("deployment", "blue"), ("endpoint", "ep"), ("traffic", "live"))


def test_snapshot_keys_every_sample_by_name_and_sorted_labels() -> None:
    samples = snapshot(TEXT)

    assert samples["deployflow_requests_total", tuple(sorted((*BLUE, ("code", "5xx"))))] == 3.0
    assert samples["deployflow_request_duration_seconds_bucket", tuple(sorted((*BLUE, ("le", "+Inf"))))] == 23.0
    assert samples["deployflow_request_duration_seconds_count", BLUE] == 23.0
    assert len(samples) == 6


def test_query_names_prometheus_when_nothing_answers() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(MetricsError, match=f"cannot reach Prometheus at {url}"):
        query(url, "up", timeout_s=2)
    with pytest.raises(MetricsError, match="cannot read"):
        read_snapshot(f"{url}/metrics", timeout_s=2)


def test_config_rejects_a_target_without_a_port() -> None:
    with pytest.raises(ValueError, match="host:port"):
        config_text("127.0.0.1")


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusServer]:
    if find_binary() is None:
        pytest.skip(f"no prometheus binary on PATH (Debian's package: {INSTALL_HINT})")
    # Nothing listens on the target: the queries below need Prometheus's evaluator, not a scrape.
    server = PrometheusServer(f"127.0.0.1:{free_port()}", tmp_path_factory.mktemp("prometheus"), port=free_port())
    server.start()
    yield server
    server.stop()


@pytest.mark.slow
def test_query_returns_labels_and_values_of_a_vector_and_a_scalar(prometheus: PrometheusServer) -> None:
    vector = query(prometheus.url, 'label_replace(vector(2.5), "deployment", "blue", "", "")')
    assert vector == [({"deployment": "blue"}, 2.5)]
    assert query(prometheus.url, "scalar(vector(4))") == [({}, 4.0)]


@pytest.mark.slow
def test_query_says_what_prometheus_refused(prometheus: PrometheusServer) -> None:
    with pytest.raises(MetricsError, match=r"Prometheus refused 'rate\(\(': bad_data"):
        query(prometheus.url, "rate((")
    with pytest.raises(MetricsError, match="gives a matrix"):
        query(prometheus.url, "up[1m]")


@pytest.mark.slow
def test_prometheus_command_becomes_the_server_on_loopback(tmp_path: Path) -> None:
    """``python -m deployflow.metrics.prometheus`` (what ./dev up runs) execs the server: its pid is the server's."""
    if find_binary() is None:
        pytest.skip(f"no prometheus binary on PATH (Debian's package: {INSTALL_HINT})")
    port = free_port()
    args = [sys.executable, "-m", "deployflow.metrics.prometheus", "--target", "127.0.0.1:7070",
            "--data-dir", str(tmp_path), "--port", str(port)]  # fmt: skip
    process = subprocess.Popen(args, env={"PYTHONPATH": f"{REPO / 'plugins'}", "PATH": "/usr/bin:/bin"})
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and process.poll() is None:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/-/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        assert process.poll() is None, "prometheus exited"
        listening = {c.laddr for c in psutil.Process(process.pid).net_connections("inet") if c.status == "LISTEN"}
        assert psutil.Process(process.pid).name() == "prometheus"
        assert {address.ip for address in listening} == {"127.0.0.1"}
        assert "targets: ['127.0.0.1:7070']" in (tmp_path / "prometheus.yml").read_text()
        assert (tmp_path / "data").is_dir()
    finally:
        process.terminate()
        process.wait(timeout=15)
