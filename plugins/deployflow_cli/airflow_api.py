"""The few calls of Airflow 3's REST API the demo needs: trigger a DAG, follow its run, read its summary."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx

DAG_ID = "realtime_deployment"
RUN_TIMEOUT_S = 1800
FINISHED = ("success", "failed", "skipped", "upstream_failed")


class AirflowApi:
    """The few calls of Airflow 3's REST API the demo needs, as the UI's admin user."""

    def __init__(self, url: str, password_file: Path) -> None:
        password = json.loads(password_file.read_text())["admin"]
        self.http = httpx.Client(base_url=url, timeout=30)
        token = self.http.post("/auth/token", json={"username": "admin", "password": password})
        token.raise_for_status()
        self.http.headers["Authorization"] = f"Bearer {token.json()['access_token']}"

    def wait_for_dag(self, dag_id: str = DAG_ID, timeout_s: float = 180) -> None:
        """Until the dag-processor has parsed the DAG; then unpause it."""
        deadline = time.monotonic() + timeout_s
        while self.http.get(f"/api/v2/dags/{dag_id}").status_code != 200:
            if time.monotonic() > deadline:
                raise SystemExit(f"Airflow has not parsed {dag_id} within {timeout_s:g} s; see .deployflow/logs/")
            time.sleep(1)
        self.http.patch(f"/api/v2/dags/{dag_id}", json={"is_paused": False}).raise_for_status()

    def runs(self, dag_id: str) -> list[dict[str, Any]]:
        response = self.http.get(f"/api/v2/dags/{dag_id}/dagRuns", params={"order_by": "-run_after"})
        response.raise_for_status()
        return response.json()["dag_runs"]

    def run(self, conf: dict[str, Any], label: str) -> dict[str, Any]:
        """Trigger the real-time DAG, print each task as it ends, and return the summary task's value."""
        response = self.http.post(f"/api/v2/dags/{DAG_ID}/dagRuns", json={"logical_date": None, "conf": conf})
        response.raise_for_status()
        run_id = response.json()["dag_run_id"]
        print(f"\n{label}: DAG run {run_id} (watch it in the UI)", flush=True)
        self.follow(DAG_ID, run_id, label)
        return self._summary(run_id)

    def follow(self, dag_id: str, run_id: str, label: str) -> None:
        """Print each task of the run as it ends; return when the run succeeded, exit when it failed."""
        seen: set[str] = set()
        base = f"/api/v2/dags/{dag_id}/dagRuns/{run_id}"
        deadline = time.monotonic() + RUN_TIMEOUT_S
        while time.monotonic() < deadline:
            state = self.http.get(base).json()["state"]
            tasks = self.http.get(f"{base}/taskInstances").json()["task_instances"]
            for ti in sorted(tasks, key=lambda t: t["end_date"] or ""):
                if ti["state"] in FINISHED and ti["task_id"] not in seen:
                    seen.add(ti["task_id"])
                    print(f"  {ti['task_id']:<26} {ti['state']}", flush=True)
            if state == "failed":
                raise SystemExit(f"{label} failed: open the run in the UI for the failed task's log")
            if state == "success":
                return
            time.sleep(2)
        raise SystemExit(f"{label} did not finish within {RUN_TIMEOUT_S} s")

    def _summary(self, run_id: str) -> dict[str, Any]:
        url = f"/api/v2/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/summary/xcomEntries/return_value"
        response = self.http.get(url, params={"deserialize": True})
        response.raise_for_status()
        value = response.json()["value"]
        return value if isinstance(value, dict) else json.loads(value)
