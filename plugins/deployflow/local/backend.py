"""The platform contract over the local runtime's REST API."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import httpx

from deployflow.local.client import LocalRuntimeClient, RuntimeClientError
from deployflow.platform.base import MLPlatform
from deployflow.platform.batch import BatchJobSpec, BatchJobState
from deployflow.platform.contract import DEPLOYMENT_HEADER
from deployflow.platform.errors import PlatformError, PlatformNotFoundError
from deployflow.platform.specs import (
    DeploymentSpec,
    DeploymentState,
    EndpointKeys,
    EndpointSpec,
    EndpointState,
    InvokeResult,
    ModelRef,
    Resources,
)

if TYPE_CHECKING:
    from deployflow.rollout.live import LiveMetrics

T = TypeVar("T")


class LocalPlatform(MLPlatform):
    """The local runtime at ``control_url``, reached with its admin token."""

    kind = "local"

    def __init__(
        self, control_url: str, token: str, *, timeout_s: float = 30.0, prometheus_url: str | None = None
    ) -> None:
        self.client = LocalRuntimeClient(control_url, token, timeout_s=timeout_s)
        self.prometheus_url = prometheus_url

    def live_metrics(self) -> LiveMetrics:
        """PromQL through the Prometheus that scrapes the runtime when one is configured, else the
        runtime's own /metrics, read directly."""
        from deployflow.rollout.live import prometheus_metrics, runtime_metrics

        if self.prometheus_url:
            return prometheus_metrics(self.prometheus_url)
        return runtime_metrics(f"{self.client.control_url}/metrics")

    def __repr__(self) -> str:
        return f"LocalPlatform({self.client.control_url!r})"

    def close(self) -> None:
        self.client.close()

    def _call(self, what: str, call: Callable[[], T]) -> T:
        try:
            return call()
        except RuntimeClientError as e:
            if e.status_code == 404:
                raise PlatformNotFoundError(f"{what}: {e}", status_code=404) from e
            if e.status_code == 0:
                raise PlatformError(f"{what}: {e}; is it running? (`./dev up` starts it)") from e
            raise PlatformError(f"{what}: {e}", status_code=e.status_code) from e

    # models
    def register_model(
        self, name: str, package_path: str, *, version: str | None = None, description: str = ""
    ) -> ModelRef:
        model = self._call(
            f"registering model {name} from {package_path}",
            lambda: self.client.register_model(name, package_path, version),
        )
        return ModelRef(model["name"], model["version"])

    def get_model(self, name: str, version: str | None = None) -> ModelRef:
        if version is not None:
            model = self._call(f"reading model {name}:{version}", lambda: self.client.get_model(name, version))
            return ModelRef(model["name"], model["version"])
        versions = [m for m in self._call("listing models", self.client.list_models) if m["name"] == name]
        if not versions:
            raise PlatformNotFoundError(f"no model named {name} is registered on the local runtime", status_code=404)
        latest = max(versions, key=lambda m: (m["created_at"], _numeric(m["version"])))
        return ModelRef(latest["name"], latest["version"])

    def model_package(self, model: ModelRef, into: Path) -> Path:
        """The runtime's own copy of the registered package (the runtime runs on this machine)."""
        document = self._call(f"reading model {model}", lambda: self.client.get_model(model.name, model.version))
        return Path(document["path"])

    # endpoints
    def create_or_update_endpoint(self, spec: EndpointSpec, *, timeout_s: float = 900) -> EndpointState:
        document = self._call(
            f"creating endpoint {spec.name}",
            lambda: self.client.put_endpoint(
                spec.name, description=spec.description, tags=spec.tags, compute=spec.compute
            ),
        )
        return _endpoint_state(document)

    def get_endpoint(self, name: str) -> EndpointState:
        return _endpoint_state(self._call(f"reading endpoint {name}", lambda: self.client.get_endpoint(name)))

    def list_endpoints(self) -> list[EndpointState]:
        listed = self._call("listing endpoints", self.client.list_endpoints)
        return sorted((_endpoint_state(e) for e in listed), key=lambda e: e.name)

    def delete_endpoint(self, name: str, *, timeout_s: float = 900) -> bool:
        try:
            self._call(f"deleting endpoint {name}", lambda: self.client.delete_endpoint(name))
        except PlatformNotFoundError:
            return False
        return True

    def set_traffic(
        self,
        endpoint: str,
        *,
        traffic: dict[str, int] | None = None,
        mirror_traffic: dict[str, int] | None = None,
        timeout_s: float = 900,
    ) -> EndpointState:
        document = self._call(
            f"setting traffic on endpoint {endpoint}",
            lambda: self.client.set_traffic(endpoint, traffic, mirror_traffic),
        )
        return _endpoint_state(document)

    def get_keys(self, endpoint: str) -> EndpointKeys:
        keys = self._call(f"reading the keys of endpoint {endpoint}", lambda: self.client.keys(endpoint))
        return EndpointKeys(keys["primary_key"], keys["secondary_key"])

    # deployments
    def begin_create_or_update_deployment(self, spec: DeploymentSpec) -> DeploymentState:
        body = _deployment_body(spec)
        document = self._call(
            f"creating deployment {spec.endpoint}/{spec.name}",
            lambda: self.client.put_deployment(spec.endpoint, spec.name, **body),
        )
        return _deployment_state(document)

    def get_deployment(self, endpoint: str, name: str) -> DeploymentState:
        document = self._call(
            f"reading deployment {endpoint}/{name}", lambda: self.client.get_deployment(endpoint, name)
        )
        return _deployment_state(document)

    def list_deployments(self, endpoint: str) -> list[DeploymentState]:
        documents = self._call(
            f"listing the deployments of endpoint {endpoint}", lambda: self.client.list_deployments(endpoint)
        )
        return [_deployment_state(d) for d in documents]

    def delete_deployment(self, endpoint: str, name: str, *, timeout_s: float = 900) -> bool:
        try:
            what = f"deleting deployment {endpoint}/{name}"
            self._call(what, lambda: self.client.delete_deployment(endpoint, name))
        except PlatformNotFoundError:
            return False
        return True

    def get_deployment_logs(self, endpoint: str, name: str, *, lines: int = 100) -> str:
        return self._call(
            f"reading the logs of deployment {endpoint}/{name}",
            lambda: self.client.logs(endpoint, name, lines=lines),
        )

    def shadow_disagreements(self, endpoint: str, name: str) -> list[dict[str, str]]:
        return self._call(
            f"reading the shadow answers of deployment {endpoint}/{name}", lambda: self.client.shadow(endpoint, name)
        )["disagreements"]

    def deployment_request_counts(self, endpoint: str) -> dict[str, dict[str, int]]:
        """Answers per deployment by HTTP status, counted by the router since it started."""
        documents = self._call(
            f"reading request counts of endpoint {endpoint}", lambda: self.client.list_deployments(endpoint)
        )
        return {d["name"]: d["requests_by_status"] for d in documents}

    # batch scoring
    def submit_batch_job(self, spec: BatchJobSpec, *, storage_connection_string: str | None = None) -> BatchJobState:
        document = self._call(
            f"submitting batch job {spec.name}",
            lambda: self.client.submit_job(spec.to_dict(), storage_connection_string),
        )
        return _job_state(document)

    def get_batch_job(self, job_id: str) -> BatchJobState:
        return _job_state(self._call(f"reading batch job {job_id}", lambda: self.client.get_job(job_id)))

    def cancel_batch_job(self, job_id: str) -> BatchJobState:
        return _job_state(self._call(f"canceling batch job {job_id}", lambda: self.client.cancel_job(job_id)))

    # data plane
    def scoring_headers(self, endpoint: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.get_keys(endpoint).primary_key}"}

    def invoke(
        self, endpoint: str, payload: Any, *, deployment: str | None = None, timeout_s: float = 30
    ) -> InvokeResult:
        scoring_uri = self.get_endpoint(endpoint).scoring_uri
        headers = {**self.scoring_headers(endpoint), "Content-Type": "application/json"}
        if deployment:
            headers[DEPLOYMENT_HEADER] = deployment
        content = payload if isinstance(payload, (bytes, str)) else json.dumps(payload)
        started = time.perf_counter()
        try:
            response = self.client.scoring_http.post(scoring_uri, content=content, headers=headers,
                                                     timeout=timeout_s)  # fmt: skip
        except httpx.HTTPError as e:
            raise PlatformError(f"invoking endpoint {endpoint}: no answer from {scoring_uri} ({e})") from e
        elapsed_ms = (time.perf_counter() - started) * 1000
        try:
            body = response.json()
            is_json = True
        except ValueError:
            body = response.text
            is_json = False
        return InvokeResult(
            status_code=response.status_code,
            body=body,
            deployment=response.headers.get(DEPLOYMENT_HEADER),
            request_id=response.headers.get("x-request-id"),
            elapsed_ms=elapsed_ms,
            is_json=is_json,
        )


def _endpoint_state(document: dict[str, Any]) -> EndpointState:
    return EndpointState(
        name=document["name"],
        scoring_uri=document["scoring_uri"],
        provisioning_state=document["provisioning_state"],
        traffic=dict(document["traffic"]),
        mirror_traffic=dict(document["mirror_traffic"]),
        compute=document["compute"],
        auth_mode=document["auth_mode"],
        description=document.get("description") or "",
        tags=dict(document.get("tags") or {}),
    )


def _job_state(document: dict[str, Any]) -> BatchJobState:
    """The contract's job state; the summary keeps the counts (items, succeeded, failed, mini_batches...)."""
    counts = {k: v for k, v in document["summary"].items() if isinstance(v, int) and not isinstance(v, bool)}
    return BatchJobState(
        job_id=document["id"],
        status=document["status"],
        output_uri=document["output_uri"],
        error=document["error"],
        summary=counts,
        failed_files=tuple(document["summary"].get("failed_files", ())),
        file_errors=dict(document["summary"].get("file_errors") or {}),
        skipped_files=dict(document["summary"].get("skipped_files") or {}),
        retryable=document.get("retryable") is not False,
    )


def _deployment_state(document: dict[str, Any]) -> DeploymentState:
    resources = document["resources"]
    return DeploymentState(
        endpoint=document["endpoint_name"],
        name=document["name"],
        provisioning_state=document["provisioning_state"],
        model=document["model"],
        instance_count=document["instance_count"],
        resources=Resources(cpu=resources["cpu"], memory_gb=resources["memory_gb"]),
        error=document["error"],
        enforcement=document["enforcement"],
        cpu_seconds=_total(i.get("cpu_seconds") for i in document["instances"]),
        memory_gb=_total([i.get("memory_mb") for i in document["instances"]], scale=1 / 1024),
        instance_states=[i["state"] for i in document["instances"]],
    )


def _total(values: Iterable[float | None], scale: float = 1.0) -> float | None:
    """The sum of what was reported, or None when no instance reported anything."""
    known = [v for v in values if v is not None]
    return round(sum(known) * scale, 3) if known else None


def _deployment_body(spec: DeploymentSpec) -> dict[str, Any]:
    """The runtime's deployment document for a spec; what the runtime cannot honour is refused."""
    resources = spec.resources
    if resources.gpu:
        raise PlatformError(
            f"deployment {spec.endpoint}/{spec.name} asks for {resources.gpu} GPU; the local runtime has "
            "none: profile GPU configurations against Azure ML",
            status_code=400,
        )
    if resources.instance_type and resources.cpu is None:
        raise PlatformError(
            f"deployment {spec.endpoint}/{spec.name} names instance type {resources.instance_type} only; "
            "the local runtime needs cpu and memory_gb",
            status_code=400,
        )
    readiness = spec.readiness_probe
    return {
        "model": str(spec.model),
        "instance_count": spec.instance_count,
        "worker_count": spec.worker_count,
        "resources": {"cpu": resources.cpu, "memory_gb": resources.memory_gb},
        "request_settings": spec.request_settings.to_dict(),
        "liveness_probe": spec.liveness_probe.to_dict(),
        "readiness_timeout_s": readiness.initial_delay_s + readiness.period_s * readiness.failure_threshold,
        "environment_variables": spec.environment_variables,
    }


def _numeric(version: str) -> int:
    return int(version) if version.isdigit() else -1
