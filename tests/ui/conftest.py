"""A real Airflow with the deployflow plugin, a real runtime with the sample model released on it, and Chromium.

The real-time DAG runs once (quick settings) so the endpoint, its profile chart and the task's
extra links are the real thing; the rollout's decision record is written where the promote task
writes it (a first release judges no window, so the record here is a hand-written one).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from deployflow.reports import report_path, write_atomically, write_json
from deployflow.rollout.timeline import render_timeline_html
from tests.airflow_support import local_connection
from tests.real_airflow import RealAirflow
from tests.rollout.records import completed
from tests.runtime.support import REPO, SAMPLE_MODEL, RuntimeProcess

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = REPO / ".cache" / "ui-screenshots"
DAG_ID = "realtime_deployment"
ENDPOINT = "diabetes"
QUICK = {
    "endpoint_name": ENDPOINT,
    "package_path": str(SAMPLE_MODEL),
    "stress": {"rate": 30, "duration_s": 3, "resources": {"cpu": 1.0, "memory_gb": 1.0}},
    "slo": {"percentile": 99, "latency_ms": 200, "max_error_percent": 1.0},
    "target_rate": 40,
    "candidates": [{"name": "small", "resources": {"cpu": 1.0, "memory_gb": 1.0}}],
    "profile_settings": {"start_rate": 40, "max_rate": 80, "step_duration_s": 1.0, "settle_s": 0.3, "max_steps": 2},
}
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]  # fmt: skip


@pytest.fixture(scope="session")
def chromium() -> Path:
    if not CHROMIUM.exists():
        pytest.skip(
            "Debian's Chromium is not installed (/usr/bin/chromium): apt-get install -y chromium, or ./dev test"
        )
    return CHROMIUM


@pytest.fixture(scope="module")
def released(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Airflow + runtime, after one real-time run released the sample model on ``diabetes``."""
    root = tmp_path_factory.mktemp("ui")
    runtime = RuntimeProcess(root / "runtime")
    runtime.start()
    dags = root / "dags"
    dags.mkdir()
    shutil.copy(REPO / "dags" / f"{DAG_ID}.py", dags)
    env = {"AIRFLOW__CORE__TEST_CONNECTION": "Enabled"}
    try:
        with local_connection(runtime), RealAirflow(root / "home", dags, env=env) as airflow:
            run_id = airflow.trigger(DAG_ID, QUICK)
            airflow.wait_for(DAG_ID, run_id, {"success"}, timeout=300)
            reports = airflow.home / "deployflow-reports"
            record = {**completed(), "endpoint": ENDPOINT}
            json_path = report_path(reports, DAG_ID, run_id, "promote", suffix=".json")
            write_json(json_path, record)
            write_atomically(json_path.with_suffix(".html"), render_timeline_html(record))
            yield {"airflow": airflow, "runtime": runtime, "run_id": run_id}
    finally:
        runtime.stop()


@pytest.fixture(scope="module")
def browser(chromium: Path) -> Iterator[Any]:
    os.environ.setdefault("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
    from playwright.sync_api import sync_playwright

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS)
        yield launched
        launched.close()
