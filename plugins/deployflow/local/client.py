"""A typed client for the local runtime's control plane and router.

Used by the local platform backend, the demo command and the tests; it never logs the
admin token or endpoint keys.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from deployflow.platform.contract import DEPLOYMENT_HEADER, JOB_TERMINAL_STATES, TERMINAL_STATES


class RuntimeClientError(RuntimeError):
    """The runtime refused a call; ``status_code`` and the runtime's own message say why."""

    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(f"local runtime answered {status_code}: {message}")
        self.status_code = status_code


@dataclass
class ScoreResult:
    status_code: int
    body: Any
    headers: dict[str, str]

    @property
    def deployment(self) -> str | None:
        return self.headers.get(DEPLOYMENT_HEADER)


class LocalRuntimeClient:
    """Talks to one runtime: ``control_url`` (e.g. http://127.0.0.1:7070) with its admin token."""

    def __init__(self, control_url: str, token: str, *, timeout_s: float = 30.0) -> None:
        self.control_url = control_url.rstrip("/")
        self._http = httpx.Client(
            base_url=self.control_url, headers={"Authorization": f"Bearer {token}"}, timeout=timeout_s
        )
        self.scoring_http = httpx.Client(timeout=timeout_s)

    def __repr__(self) -> str:
        return f"LocalRuntimeClient({self.control_url!r})"

    def close(self) -> None:
        self._http.close()
        self.scoring_http.close()

    @property
    def closed(self) -> bool:
        """Whether ``close()`` has run: the client can make no more calls."""
        return self._http.is_closed and self.scoring_http.is_closed

    def __enter__(self) -> LocalRuntimeClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None, **params: Any) -> Any:
        try:
            response = self._http.request(method, path, json=body, params=params or None)
        except httpx.HTTPError as e:
            raise RuntimeClientError(0, f"cannot reach the runtime at {self.control_url} ({e})") from e
        if response.status_code >= 400:
            raise RuntimeClientError(response.status_code, _error_message(response))
        if response.status_code == 204:
            return None
        if response.headers.get("content-type", "").startswith("application/json"):
            return response.json()
        return response.text

    # models
    def health(self) -> bool:
        try:
            return self._http.get("/health").status_code == 200
        except httpx.HTTPError:
            return False

    def register_model(self, name: str, path: str | Path, version: str | None = None) -> dict[str, Any]:
        body = {"name": name, "path": str(Path(path).resolve())}
        if version is not None:
            body["version"] = version
        return self._call("POST", "/models", body)

    def get_model(self, name: str, version: str) -> dict[str, Any]:
        return self._call("GET", f"/models/{name}/versions/{version}")

    def list_models(self) -> list[dict[str, Any]]:
        return self._call("GET", "/models")

    # endpoints
    def put_endpoint(self, name: str, **spec: Any) -> dict[str, Any]:
        return self._call("PUT", f"/endpoints/{name}", spec)

    def get_endpoint(self, name: str) -> dict[str, Any]:
        return self._call("GET", f"/endpoints/{name}")

    def list_endpoints(self) -> list[dict[str, Any]]:
        return self._call("GET", "/endpoints")

    def delete_endpoint(self, name: str) -> None:
        self._call("DELETE", f"/endpoints/{name}")

    def set_traffic(
        self, name: str, traffic: dict[str, int] | None = None, mirror_traffic: dict[str, int] | None = None
    ) -> dict[str, Any]:
        current = self.get_endpoint(name)
        spec = {k: current[k] for k in ("description", "tags", "compute")}
        return self.put_endpoint(name, **spec, traffic=traffic, mirror_traffic=mirror_traffic)

    def keys(self, name: str) -> dict[str, str]:
        return self._call("POST", f"/endpoints/{name}/keys")

    def regenerate_key(self, name: str, key_type: str = "primary") -> dict[str, str]:
        return self._call("POST", f"/endpoints/{name}/regenerate-keys", {"key_type": key_type})

    # deployments
    def put_deployment(self, endpoint: str, name: str, **spec: Any) -> dict[str, Any]:
        return self._call("PUT", f"/endpoints/{endpoint}/deployments/{name}", spec)

    def get_deployment(self, endpoint: str, name: str) -> dict[str, Any]:
        return self._call("GET", f"/endpoints/{endpoint}/deployments/{name}")

    def list_deployments(self, endpoint: str) -> list[dict[str, Any]]:
        return self._call("GET", f"/endpoints/{endpoint}/deployments")

    def delete_deployment(self, endpoint: str, name: str) -> None:
        self._call("DELETE", f"/endpoints/{endpoint}/deployments/{name}")

    def logs(self, endpoint: str, name: str, lines: int = 100) -> str:
        return self._call("GET", f"/endpoints/{endpoint}/deployments/{name}/logs", lines=lines)

    def shadow(self, endpoint: str, name: str) -> dict:
        """The router's comparison of the deployment's mirrored answers: counts and the last that differed."""
        return self._call("GET", f"/endpoints/{endpoint}/deployments/{name}/shadow")

    def wait_for_deployment(self, endpoint: str, name: str, *, timeout_s: float = 600, poll_s: float = 0.5) -> dict:
        """Poll until the deployment is Succeeded, Failed or Canceled, or the deadline passes (TimeoutError)."""
        deadline = time.monotonic() + timeout_s
        while True:
            deployment = self.get_deployment(endpoint, name)
            if deployment["provisioning_state"] in TERMINAL_STATES:
                return deployment
            if time.monotonic() >= deadline:
                raise TimeoutError(
                    f"deployment {endpoint}/{name} still {deployment['provisioning_state']} after {timeout_s:.0f}s"
                )
            time.sleep(poll_s)

    # batch jobs
    def submit_job(self, spec: dict[str, Any], storage_connection_string: str | None = None) -> dict[str, Any]:
        """Submit a batch job (a BatchJobSpec document); the connection string is only sent, never kept."""
        body = dict(spec)
        if storage_connection_string:
            body["storage_connection_string"] = storage_connection_string
        return self._call("POST", "/jobs", body)

    def get_job(self, job_id: str) -> dict[str, Any]:
        return self._call("GET", f"/jobs/{job_id}")

    def list_jobs(self) -> list[dict[str, Any]]:
        return self._call("GET", "/jobs")

    def cancel_job(self, job_id: str) -> dict[str, Any]:
        return self._call("POST", f"/jobs/{job_id}/cancel")

    def job_logs(self, job_id: str, lines: int = 100) -> str:
        return self._call("GET", f"/jobs/{job_id}/logs", lines=lines)

    def wait_for_job(self, job_id: str, *, timeout_s: float = 600, poll_s: float = 0.2) -> dict[str, Any]:
        """Poll until the job is Completed, Failed or Canceled, or the deadline passes (TimeoutError)."""
        deadline = time.monotonic() + timeout_s
        while True:
            job = self.get_job(job_id)
            if job["status"] in JOB_TERMINAL_STATES:
                return job
            if time.monotonic() >= deadline:
                raise TimeoutError(f"batch job {job_id} still {job['status']} after {timeout_s:.0f}s")
            time.sleep(poll_s)

    # data plane
    def score(
        self,
        scoring_uri: str,
        payload: Any,
        key: str,
        *,
        deployment: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> ScoreResult:
        sent = {"Authorization": f"Bearer {key}", "Content-Type": "application/json", **(headers or {})}
        if deployment:
            sent[DEPLOYMENT_HEADER] = deployment
        content = payload if isinstance(payload, (bytes, str)) else json.dumps(payload)
        response = self.scoring_http.post(scoring_uri, content=content, headers=sent)
        try:
            body = response.json()
        except ValueError:
            body = response.text
        return ScoreResult(response.status_code, body, dict(response.headers))


def _error_message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:500]
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        return body["error"].get("message", str(body))
    return str(body)[:500]
