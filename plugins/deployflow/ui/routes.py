"""Where the plugin's app is mounted and the paths of its pages: one place for each URL the links build."""

from __future__ import annotations

from urllib.parse import quote

PREFIX = "/deployflow"
PAGE = "/deployments"

#: a report kind in a URL -> the key of the task's XCom return value holding the file's path
REPORT_KEYS = {
    "report": "report_path",
    "chart": "chart_path",
    "record": "decision_record",
    "timeline": "timeline_path",
}


def report_route(dag_id: str, run_id: str, task_id: str, kind: str) -> str:
    """The path (under the API server's root) that serves one task's report of ``kind``."""
    if kind not in REPORT_KEYS:
        raise ValueError(f"unknown report kind {kind!r}; one of {', '.join(REPORT_KEYS)}")
    parts = "/".join(quote(part, safe="") for part in (dag_id, run_id, task_id, kind))
    return f"{PREFIX}/reports/{parts}"


def run_route(dag_id: str, run_id: str) -> str:
    """The Airflow UI's own page of a DAG run."""
    return f"/dags/{quote(dag_id, safe='')}/runs/{quote(run_id, safe='')}"
