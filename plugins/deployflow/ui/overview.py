"""What the Deployments page shows, gathered: per ML platform connection its endpoints, deployments and runs.

Platforms are read through the project's hook (the connection's type picks the backend), runs
and their reports through Airflow's REST API as the caller. Keys are never read.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from deployflow.hooks.ml_platform import AZURE_ML, LOCAL_RUNTIME, MLPlatformHook
from deployflow.platform.errors import PlatformError
from deployflow.platform.specs import DeploymentState, EndpointState
from deployflow.ui import metrics
from deployflow.ui.airflow_api import AirflowReader
from deployflow.ui.routes import report_route, run_route

PLATFORM_TYPES = (AZURE_ML, LOCAL_RUNTIME)
REALTIME_DAG = "realtime_deployment"
PROFILE_TASK = "profile"
ROLLOUT_TASKS = ("promote", "continue_promotion")  # continue_promotion finishes a rollout after an approval
RUNS_PER_ENDPOINT = 3
PARALLEL_READS = 8


@dataclass
class RunLinks:
    run_id: str
    state: str
    started: str | None
    run_url: str
    profile_chart_url: str | None = None
    timeline_url: str | None = None


@dataclass
class EndpointView:
    endpoint: EndpointState
    deployments: list[DeploymentState] = field(default_factory=list)
    live: dict[str, metrics.LiveNumbers] = field(default_factory=dict)
    runs: list[RunLinks] = field(default_factory=list)
    error: str | None = None


@dataclass
class PlatformView:
    conn_id: str
    conn_type: str
    endpoints: list[EndpointView] = field(default_factory=list)
    error: str | None = None


def platform_connection_ids(reader: AirflowReader) -> list[str]:
    """Connections Airflow knows of the two ML platform types: from the environment and the metadata database."""
    from_env = [
        name[len("AIRFLOW_CONN_") :].lower()
        for name, value in os.environ.items()
        if name.startswith("AIRFLOW_CONN_") and any(t in value for t in PLATFORM_TYPES)
    ]
    return sorted(set(from_env) | set(reader.connection_ids(PLATFORM_TYPES)))


def _endpoint_view(platform: Any, endpoint: EndpointState) -> EndpointView:
    view = EndpointView(endpoint)
    try:
        view.deployments = sorted(platform.list_deployments(endpoint.name), key=lambda d: d.name)
    except PlatformError as e:
        view.error = str(e)
    return view


def read_platform(conn_id: str) -> PlatformView:
    """One connection's endpoints with their deployments and live numbers; an unreachable platform says why."""
    hook = MLPlatformHook(conn_id)
    try:
        conn = hook.get_connection(conn_id)
        view = PlatformView(conn_id, conn.conn_type)
        if conn.conn_type not in PLATFORM_TYPES:
            return view
        platform = hook.platform
        endpoints = sorted(platform.list_endpoints(), key=lambda e: e.name)
        with ThreadPoolExecutor(PARALLEL_READS) as pool:
            view.endpoints = list(pool.map(lambda e: _endpoint_view(platform, e), endpoints))
        if conn.conn_type == LOCAL_RUNTIME:
            live = metrics.live_numbers(f"http://{conn.host or '127.0.0.1'}:{conn.port or 7070}/metrics")
            for endpoint_view in view.endpoints:
                name = endpoint_view.endpoint.name
                endpoint_view.live = {d: n for (e, d), n in live.items() if e == name}
    except PlatformError as e:
        return PlatformView(conn_id, "?", error=str(e))
    finally:
        hook.close()
    return view


def attach_runs(reader: AirflowReader, platforms: Iterable[PlatformView]) -> None:
    """Each endpoint's latest real-time runs (by their conf's endpoint_name), with links to their reports."""
    views = {(p.conn_id, e.endpoint.name): e for p in platforms for e in p.endpoints}
    chosen: list[tuple[EndpointView, dict[str, Any]]] = []
    taken: dict[tuple[str, str], int] = {}
    runs = reader.latest_runs(REALTIME_DAG)
    defaults = reader.dag_params(REALTIME_DAG) if runs else {}  # a run's conf holds only what was given
    for run in runs:
        conf = {**defaults, **(run.get("conf") or {})}
        key = (conf.get("ml_platform_conn_id"), conf.get("endpoint_name"))
        if key in views and taken.get(key, 0) < RUNS_PER_ENDPOINT:
            taken[key] = taken.get(key, 0) + 1
            chosen.append((views[key], run))
    run_ids = [run["dag_run_id"] for _, run in chosen]
    # A rolled-back rollout fails its task and still leaves its timeline: link finished rollouts either way.
    finished = {
        (ti["dag_run_id"], ti["task_id"])
        for ti in reader.task_instances(REALTIME_DAG, run_ids, [PROFILE_TASK, *ROLLOUT_TASKS])
        if ti["state"] == "success" or (ti["task_id"] in ROLLOUT_TASKS and ti["state"] == "failed")
    }
    for view, run in chosen:
        run_id = run["dag_run_id"]
        links = RunLinks(run_id, run["state"], run.get("start_date"), run_route(REALTIME_DAG, run_id))
        if (run_id, PROFILE_TASK) in finished:
            links.profile_chart_url = report_route(REALTIME_DAG, run_id, PROFILE_TASK, "chart")
        rollout = [task for task in reversed(ROLLOUT_TASKS) if (run_id, task) in finished]
        if rollout:
            links.timeline_url = report_route(REALTIME_DAG, run_id, rollout[0], "timeline")
        view.runs.append(links)


def gather(reader: AirflowReader) -> list[PlatformView]:
    platforms = [read_platform(conn_id) for conn_id in platform_connection_ids(reader)]
    attach_runs(reader, platforms)
    return platforms
