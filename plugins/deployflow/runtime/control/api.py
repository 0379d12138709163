"""The control plane: a REST API for models, endpoints, deployments, traffic, keys, logs and batch jobs.

Shaped after Azure ML's online endpoints: creating a deployment answers 202 at once and
provisions in the background, so clients poll ``provisioning_state`` as they would an
Azure long-running operation. Every route but ``/health``, ``/metrics`` (and the API's own description)
needs the admin token, checked with the body-size cap before the body is read (``guard.py``).

``GET /metrics`` (the router's live metrics, Prometheus text format) lives here rather than on
the router's port: a scraper needs neither the admin token nor an endpoint's keys to read it,
the scoring port serves nothing but scoring, and rendering a scrape stays off the router's
request parsing. It holds endpoint and deployment names and counts only, never a key.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Body, FastAPI, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest

from deployflow.runtime.control.guard import ControlPlaneGuard
from deployflow.runtime.control.service import Runtime
from deployflow.runtime.errors import Invalid, NotFound, RuntimeApiError, invalid_fields
from deployflow.runtime.schemas import (
    DEPLOYMENT_NAME_PATTERN,
    ENDPOINT_NAME_PATTERN,
    Deployment,
    DeploymentSpec,
    Endpoint,
    EndpointKeys,
    EndpointSpec,
    ErrorAnswer,
    Job,
    Model,
    ModelRegistration,
    RegenerateKeys,
)
from deployflow.runtime.serving.metrics import router_registry

# Documented for every operation in place of FastAPI's own {"detail": [...]}: what the handler below answers.
INVALID_REQUEST = {422: {"model": ErrorAnswer, "description": "the request is not valid; the message names each field"}}


def create_app(runtime: Runtime, token: str) -> FastAPI:
    app = FastAPI(title="deployflow local runtime", version="1", responses=INVALID_REQUEST)
    metrics = router_registry(runtime.endpoints)
    app.add_middleware(ControlPlaneGuard, token=token, max_body_bytes=runtime.config.control_max_body_bytes)

    @app.exception_handler(RuntimeApiError)
    async def _api_error(_: Request, error: RuntimeApiError) -> JSONResponse:
        return JSONResponse({"error": {"code": error.code, "message": str(error)}}, status_code=error.status_code)

    @app.exception_handler(RequestValidationError)
    async def _invalid_request(request: Request, error: RequestValidationError) -> JSONResponse:
        # the API's own error shape, naming each wrong field (never echoing its value: a body may hold a secret)
        return await _api_error(request, Invalid(f"the request is not valid: {invalid_fields(error.errors())}"))

    def endpoint_view(name: str) -> Endpoint:
        return runtime.endpoint(name).view(runtime.config.scoring_uri(name))

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/metrics")
    async def router_metrics() -> Response:
        if not runtime.config.metrics:
            raise NotFound("router metrics are off: the runtime was started with --no-metrics")
        return Response(generate_latest(metrics), media_type=CONTENT_TYPE_PLAIN_0_0_4)

    @app.post("/models", status_code=201)
    async def register_model(registration: ModelRegistration) -> Model:
        return await runtime.register_model(registration)

    @app.get("/models")
    async def list_models() -> list[Model]:
        return runtime.list_models()

    @app.get("/models/{name}/versions/{version}")
    async def get_model(name: str, version: str) -> Model:
        return runtime.get_model(name, version)

    @app.get("/endpoints")
    async def list_endpoints() -> list[Endpoint]:
        return [endpoint_view(name) for name in sorted(runtime.endpoints)]

    @app.put("/endpoints/{name}")
    async def put_endpoint(spec: EndpointSpec, name: str = Path(pattern=ENDPOINT_NAME_PATTERN)) -> Endpoint:
        runtime.put_endpoint(name, spec)
        return endpoint_view(name)

    @app.get("/endpoints/{name}")
    async def get_endpoint(name: str) -> Endpoint:
        return endpoint_view(name)

    @app.delete("/endpoints/{name}", status_code=204)
    async def delete_endpoint(name: str) -> None:
        await runtime.delete_endpoint(name)

    @app.post("/endpoints/{name}/keys")
    async def list_keys(name: str) -> EndpointKeys:
        endpoint = runtime.endpoint(name)
        return EndpointKeys(primary_key=endpoint.primary_key, secondary_key=endpoint.secondary_key)

    @app.post("/endpoints/{name}/regenerate-keys")
    async def regenerate_keys(name: str, body: RegenerateKeys) -> EndpointKeys:
        endpoint = runtime.regenerate_key(name, body.key_type)
        return EndpointKeys(primary_key=endpoint.primary_key, secondary_key=endpoint.secondary_key)

    @app.get("/endpoints/{name}/deployments")
    async def list_deployments(name: str) -> list[Deployment]:
        return [d.view() for d in runtime.endpoint(name).deployments.values()]

    @app.put("/endpoints/{name}/deployments/{deployment}", status_code=202)
    async def put_deployment(
        name: str, spec: DeploymentSpec, deployment: str = Path(pattern=DEPLOYMENT_NAME_PATTERN)
    ) -> Deployment:
        return runtime.put_deployment(name, deployment, spec).view()

    @app.get("/endpoints/{name}/deployments/{deployment}")
    async def get_deployment(name: str, deployment: str) -> Deployment:
        return runtime.deployment(name, deployment).view()

    @app.delete("/endpoints/{name}/deployments/{deployment}", status_code=204)
    async def delete_deployment(name: str, deployment: str) -> None:
        await runtime.delete_deployment(name, deployment)

    @app.get("/endpoints/{name}/deployments/{deployment}/logs")
    async def deployment_logs(
        name: str, deployment: str, lines: int = Query(100, ge=1, le=10_000)
    ) -> PlainTextResponse:
        return PlainTextResponse(runtime.logs(name, deployment, lines))

    @app.get("/endpoints/{name}/deployments/{deployment}/shadow")
    async def shadow_answers(name: str, deployment: str) -> dict[str, Any]:
        """How the deployment's mirrored answers compared with the live ones, and the last that differed."""
        shadow = runtime.deployment(name, deployment).metrics.shadow
        return {"agreed": shadow.agreed, "disagreed": shadow.disagreed, "disagreements": list(shadow.disagreements)}

    @app.post("/jobs", status_code=201)
    async def submit_job(document: Annotated[dict[str, Any], Body()]) -> Job:
        # a raw document: the connection string in it must not reach a validation error's echo
        return runtime.jobs.submit(document)

    @app.get("/jobs")
    async def list_jobs() -> list[Job]:
        return runtime.jobs.list()

    @app.get("/jobs/{job_id}")
    async def get_job(job_id: str) -> Job:
        return runtime.jobs.get(job_id)

    @app.post("/jobs/{job_id}/cancel")
    async def cancel_job(job_id: str) -> Job:
        return await runtime.jobs.cancel(job_id)

    @app.get("/jobs/{job_id}/logs")
    async def job_logs(job_id: str, lines: int = Query(100, ge=1, le=10_000)) -> PlainTextResponse:
        return PlainTextResponse(runtime.jobs.logs(job_id, lines))

    return app
