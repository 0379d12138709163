"""The plugin's reads of Airflow: its REST API, called with the credentials of the person asking.

Going through the API (not the metadata database) means Airflow's own permission checks apply
to what the page shows: a user who may not read a DAG's runs or XCom sees none of them here.
"""

from __future__ import annotations

import json
from typing import Any

import httpx

COOKIE_NAME_JWT_TOKEN = "_token"  # the UI's session cookie (airflow.api_fastapi.auth.managers.base_auth_manager)
TIMEOUT_S = 10


class AirflowReadError(RuntimeError):
    """Airflow's API refused or failed a read; the message has its status and detail."""

    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code


class AirflowReader:
    """GETs (and the one batch POST) of ``/api/v2`` on this API server, as the caller."""

    def __init__(self, base_url: str, *, token: str) -> None:
        self.http = httpx.Client(
            base_url=base_url.rstrip("/") + "/api/v2", headers={"Authorization": f"Bearer {token}"}, timeout=TIMEOUT_S
        )

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> AirflowReader:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _json(self, response: httpx.Response) -> Any:
        if response.is_error:
            raise AirflowReadError(
                response.status_code, f"Airflow answered {response.status_code} to {response.request.method} "
                f"{response.request.url.path}: {response.text[:300]}"
            )  # fmt: skip
        return response.json()

    def latest_runs(self, dag_id: str, limit: int = 200) -> list[dict[str, Any]]:
        """The DAG's latest runs, newest first (an unknown DAG or no access: none)."""
        response = self.http.get(f"/dags/{dag_id}/dagRuns", params={"order_by": "-run_after", "limit": limit})
        if response.status_code in (403, 404):
            return []
        return self._json(response)["dag_runs"]

    def dag_params(self, dag_id: str) -> dict[str, Any]:
        """The DAG's params with their default values (what a run's conf falls back to)."""
        params = self._json(self.http.get(f"/dags/{dag_id}/details"))["params"] or {}
        return {name: (p.get("value") if isinstance(p, dict) else p) for name, p in params.items()}

    def task_instances(self, dag_id: str, run_ids: list[str], task_ids: list[str]) -> list[dict[str, Any]]:
        """The task instances of those runs and tasks, in one call."""
        if not run_ids:
            return []
        body = {"dag_ids": [dag_id], "dag_run_ids": run_ids, "task_ids": task_ids, "page_limit": 1000}
        return self._json(self.http.post("/dags/~/dagRuns/~/taskInstances/list", json=body))["task_instances"]

    def return_value(self, dag_id: str, run_id: str, task_id: str) -> Any:
        """A task instance's return value (its XCom), or None when it returned nothing."""
        response = self.http.get(f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/return_value")
        if response.status_code == 404:
            return None
        value = self._json(response)["value"]
        if isinstance(value, str):  # the stored form may be the JSON text itself
            try:
                return json.loads(value)
            except ValueError:
                return value
        return value

    def connection_ids(self, conn_types: tuple[str, ...]) -> list[str]:
        """Ids of the metadata database's connections of those types (no access: none)."""
        response = self.http.get("/connections", params={"limit": 1000})
        if response.status_code == 403:
            return []
        return [c["connection_id"] for c in self._json(response)["connections"] if c["conn_type"] in conn_types]


def caller_token(authorization: str | None, cookies: dict[str, str]) -> str | None:
    """The caller's JWT as Airflow reads it: a Bearer header first, else the UI's session cookie."""
    if authorization and authorization.lower().startswith("bearer "):
        return authorization.split(" ", 1)[1]
    return cookies.get(COOKIE_NAME_JWT_TOKEN)
