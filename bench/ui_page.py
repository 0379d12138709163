"""Load time of the Deployments page with 20 endpoints on the local runtime (target: under 1 s).

Starts a real runtime with 20 endpoints, each with one deployment of the sample model taking all
traffic, and a real Airflow (api-server, scheduler, dag-processor, triggerer) with the plugin,
the `deployflow_local` connection pointing at the runtime. Then, after one warm-up view, times
`GET /deployflow/deployments` as the logged-in admin (the whole HTTP response, measured by the
client on loopback, and the page's own server-side figure), and, when Chromium is there, the
browser's load event for the same page.

    .venv/bin/python bench/ui_page.py [--endpoints 20] [--views 20]

Writes bench/results/ui_page.json.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "plugins")]
# As tests/conftest.py does: as root, model code would run as the unprivileged user, who cannot
# reach this machine's Python (under /root).
os.environ.setdefault("DEPLOYFLOW_CHILD_USER", "root")

from tests.airflow_support import local_connection  # noqa: E402
from tests.real_airflow import USERNAME, RealAirflow  # noqa: E402
from tests.runtime.support import SAMPLE_MODEL, RuntimeProcess, deploy  # noqa: E402

RESULTS = REPO / "bench" / "results" / "ui_page.json"
CHROMIUM = Path("/usr/bin/chromium")
SERVER_MS = re.compile(r"read in (\d+) ms")
TARGET_S = 1.0


def _browser_load_s(airflow: RealAirflow, views: int) -> list[float]:
    from playwright.sync_api import sync_playwright

    password = json.loads(airflow.passwords_file.read_text())[USERNAME]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=["--headless", "--no-sandbox", "--disable-gpu"]
        )
        page = browser.new_page()
        page.goto(airflow.base_url + "/")
        page.fill("input[name=username]", USERNAME)
        page.fill("input[name=password]", password)
        page.press("input[name=password]", "Enter")
        page.wait_for_url(lambda url: "login" not in url)
        times = []
        for _ in range(views):
            started = time.perf_counter()
            page.goto(airflow.base_url + "/deployflow/deployments", wait_until="load")
            times.append(time.perf_counter() - started)
        browser.close()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoints", type=int, default=20)
    parser.add_argument("--views", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ui-bench-") as tmp:
        root = Path(tmp)
        runtime = RuntimeProcess(root / "runtime")
        runtime.start()
        try:
            with runtime.client() as client:
                client.register_model("diabetes", SAMPLE_MODEL, version="1")
                for i in range(args.endpoints):
                    name = f"bench-{i:02d}"
                    client.put_endpoint(name)
                    deploy(client, name, "blue", resources={"cpu": 0.25, "memory_gb": 0.5})
                    client.set_traffic(name, {"blue": 100})
            (root / "dags").mkdir()
            with local_connection(runtime), RealAirflow(root / "home", root / "dags") as airflow:
                assert airflow.client is not None
                airflow.client.get("/deployflow/deployments", timeout=60).raise_for_status()  # warm-up
                http_s, server_ms = [], []
                for _ in range(args.views):
                    started = time.perf_counter()
                    response = airflow.client.get("/deployflow/deployments", timeout=60)
                    http_s.append(time.perf_counter() - started)
                    response.raise_for_status()
                    if response.text.count('class="endpoint"') != args.endpoints:
                        raise SystemExit(f"the page did not show {args.endpoints} endpoints")
                    server_ms.append(float(SERVER_MS.search(response.text).group(1)))
                browser_s = _browser_load_s(airflow, args.views) if CHROMIUM.exists() else []
        finally:
            runtime.stop()
    result = {
        "endpoints": args.endpoints,
        "views": args.views,
        "http_response_s": {"median": round(statistics.median(http_s), 3), "max": round(max(http_s), 3)},
        "server_gather_ms": {"median": statistics.median(server_ms), "max": max(server_ms)},
        "browser_load_s": (
            {"median": round(statistics.median(browser_s), 3), "max": round(max(browser_s), 3)} if browser_s else None
        ),
        "target_s": TARGET_S,
        "under_target": statistics.median(http_s) < TARGET_S,
    }
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
