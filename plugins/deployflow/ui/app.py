"""The plugin's FastAPI app, mounted by Airflow's API server under /deployflow.

Every route needs a logged-in user with read access to DAGs (Airflow's own auth manager
decides, from the UI's session cookie or a Bearer token); reading a task's report needs read
access to that DAG's XCom. A report is served only from under reports_dir(), whatever path a
task returned.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity
from airflow.api_fastapi.core_api.security import requires_access_dag
from airflow.sdk import conf
from fastapi import Depends, FastAPI, Header, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse

from deployflow.reports import report_path, reports_dir
from deployflow.ui.airflow_api import AirflowReader, caller_token
from deployflow.ui.overview import gather
from deployflow.ui.page import render_page
from deployflow.ui.routes import PAGE, REPORT_KEYS

# Reports are files written by tasks: shown as documents, never allowed to run anything.
REPORT_HEADERS = {"Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src data:"}
SUFFIXES = {"report": ".json", "record": ".json", "chart": ".html", "timeline": ".html"}
MEDIA_TYPES = {".html": "text/html; charset=utf-8", ".json": "application/json"}


def _reader(request: Request, authorization: str | None) -> AirflowReader:
    token = caller_token(authorization, dict(request.cookies))
    if token is None:  # the auth dependency let the request in, so this cannot be reached without a token
        raise HTTPException(401, "Not authenticated")
    # Back to this same API server: its configured address, else the one the caller reached.
    base = (conf.get("api", "base_url", fallback="") or "").rstrip(
        "/"
    ) or f"{request.url.scheme}://{request.url.netloc}"
    return AirflowReader(base, token=token)


def _served_path(returned: object, kind: str, dag_id: str, run_id: str, task_id: str) -> Path:
    """The report's file: the path the task returned, else where the stage writes it by convention."""
    named = returned.get(REPORT_KEYS[kind]) if isinstance(returned, dict) else None
    path = Path(named) if isinstance(named, str) else report_path(None, dag_id, run_id, task_id, suffix=SUFFIXES[kind])
    resolved, root = path.resolve(), reports_dir().resolve()
    if not resolved.is_relative_to(root):
        raise HTTPException(404, f"the {kind} of {task_id} is not under the reports folder {root}; it is not served")
    if not resolved.is_file():
        raise HTTPException(404, f"{task_id} of run {run_id} has no {kind} (no file at {resolved.name})")
    return resolved


def create_app() -> FastAPI:
    app = FastAPI(title="deployflow", description="Deployments page and task reports for Airflow's UI")

    @app.get(PAGE, response_class=HTMLResponse, dependencies=[Depends(requires_access_dag("GET"))])
    def deployments_page(request: Request, authorization: Annotated[str | None, Header()] = None) -> HTMLResponse:
        started = time.perf_counter()
        with _reader(request, authorization) as reader:
            platforms = gather(reader)
        return HTMLResponse(render_page(platforms, elapsed_ms=1000 * (time.perf_counter() - started)))

    @app.get(
        "/reports/{dag_id}/{run_id}/{task_id}/{kind}",
        dependencies=[Depends(requires_access_dag("GET", DagAccessEntity.XCOM))],
        response_model=None,
    )
    def task_report(
        dag_id: str, run_id: str, task_id: str, kind: str, request: Request,
        authorization: Annotated[str | None, Header()] = None,
    ) -> FileResponse | JSONResponse:  # fmt: skip
        if kind not in REPORT_KEYS:
            raise HTTPException(404, f"no report kind {kind!r}; one of {', '.join(REPORT_KEYS)}")
        with _reader(request, authorization) as reader:
            returned = reader.return_value(dag_id, run_id, task_id)
        if kind == "record" and isinstance(returned, dict) and isinstance(returned.get("decision_record"), dict):
            return JSONResponse(returned["decision_record"], headers=REPORT_HEADERS)
        path = _served_path(returned, kind, dag_id, run_id, task_id)
        return FileResponse(path, media_type=MEDIA_TYPES.get(path.suffix, "text/plain"), headers=REPORT_HEADERS)

    return app
