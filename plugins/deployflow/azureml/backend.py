"""The platform contract on Azure Machine Learning (azure-ai-ml v2, MLClient).

Every SDK call goes through ``call_sdk`` (retries, error translation) and every long-running
operation through ``wait_for`` (deadline); entities are built in ``entities``. Keys and
tokens are only ever put in request headers, never in logs or errors.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable
from contextlib import nullcontext
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import httpx
from azure.ai.ml import MLClient
from azure.ai.ml.constants import AssetTypes
from azure.ai.ml.entities import Job, KubernetesCompute, KubernetesOnlineEndpoint, Model, OnlineEndpoint
from azure.core.credentials import TokenCredential
from azure.core.exceptions import AzureError
from azure.core.polling import LROPoller

from deployflow.azureml.batch import (
    ENTRY_SCRIPT,
    ENTRY_SOURCE,
    FAILURES_TAG,
    MLFLOW_SCRIPT,
    batch_job_state,
    build_batch_job,
    check_package,
    failures_uri,
    job_status,
)
from deployflow.azureml.calls import RetryPolicy, call_sdk, platform_error, wait_for
from deployflow.azureml.cluster import ensure_compute_cluster
from deployflow.azureml.code import code_folder, scripts_folder
from deployflow.azureml.conda import (
    PARALLEL_RUNTIME,
    conda_environment,
    conda_environment_from_file,
    read_requirements,
)
from deployflow.azureml.entities import (
    build_deployment,
    build_endpoint,
    compute_name,
    deployment_from_rest,
    deployment_state,
    endpoint_keys,
    endpoint_state,
    package_folder,
)
from deployflow.azureml.parallel_entry import FAILED_SUFFIX, SKIPPED_SUFFIX
from deployflow.azureml.traffic import check_traffic
from deployflow.packages import MLFLOW_BATCH_SCRIPT, MODEL_DIR, REQUIREMENTS, ModelPackage
from deployflow.platform.base import MLPlatform
from deployflow.platform.batch import BatchJobSpec, BatchJobState
from deployflow.platform.contract import CREATING, DEPLOYMENT_HEADER, JOB_COMPLETED, UPDATING
from deployflow.platform.errors import PlatformError, PlatformNotFoundError
from deployflow.platform.specs import (
    DeploymentSpec,
    DeploymentState,
    EndpointKeys,
    EndpointSpec,
    EndpointState,
    InvokeResult,
    ModelRef,
)

log = logging.getLogger(__name__)
if TYPE_CHECKING:
    from deployflow.rollout.live import LiveMetrics

T = TypeVar("T")

REQUEST_ID_HEADER = "x-request-id"
#: lines of the container log put in the error of a deployment that did not come up
LOG_TAIL_LINES = 20
_CHECK_ENDPOINT = "the endpoint name, the identity's role on the workspace, and the region's endpoint quota"
_CHECK_DEPLOYMENT = (
    "the deployment name, the instance type or resources against the compute's quota and instance types, "
    "and the identity's role on the workspace"
)
_CHECK_JOB = "the job id, and the identity's role on the workspace"
_CHECK_REPORTS = "that the identity may read the output datastore (datastores/listSecrets, or Storage Blob Data Reader)"
_CHECK_SUBMIT = (
    "the compute cluster's name and state, the model name and version, the datastore in the URIs, "
    "and that the identity may submit jobs and write to the workspace's datastore"
)


class AzureMLPlatform(MLPlatform):
    """One Azure ML workspace, reached through an already-built ``MLClient``."""

    kind = "azureml"

    def __init__(
        self, ml_client: MLClient, *, retry: RetryPolicy | None = None, prometheus_url: str | None = None
    ) -> None:
        self.ml_client = ml_client
        self.prometheus_url = prometheus_url
        self.retry = retry or RetryPolicy()
        # deployment operations started here, so a failure can be told with the service's own reason
        self._deployment_operations: dict[tuple[str, str], LROPoller[Any]] = {}
        # aml_tokens by endpoint until their refresh time (_scoring_keys)
        self._tokens: dict[str, EndpointKeys] = {}

    @classmethod
    def from_workspace(
        cls,
        subscription_id: str,
        resource_group: str,
        workspace: str,
        *,
        credential: TokenCredential,
        retry: RetryPolicy | None = None,
    ) -> AzureMLPlatform:
        """Build the MLClient for a workspace; no call is made until the first operation."""
        client = MLClient(
            credential=credential,
            subscription_id=subscription_id,
            resource_group_name=resource_group,
            workspace_name=workspace,
        )
        return cls(client, retry=retry)

    def __repr__(self) -> str:
        return f"AzureMLPlatform(workspace={self.ml_client.workspace_name!r})"

    @cached_property
    def _http(self) -> httpx.Client:
        return httpx.Client()

    def close(self) -> None:
        if "_http" in self.__dict__:
            self._http.close()
            del self.__dict__["_http"]

    def _call(self, action: Callable[[], T], *, what: str, check: str) -> T:
        return call_sdk(action, what=what, check=check, policy=self.retry)

    def live_metrics(self) -> LiveMetrics:
        """A Prometheus when the connection names one (an AKS cluster's, with the router's counters),
        else the managed online endpoint's own platform metrics through Azure Monitor."""
        from azure.monitor.query import MetricsQueryClient

        from deployflow.rollout.live import AzureMonitorMetrics, prometheus_metrics

        if self.prometheus_url:
            return prometheus_metrics(self.prometheus_url)
        client = self.ml_client
        workspace = (
            f"/subscriptions/{client.subscription_id}/resourceGroups/{client.resource_group_name}"
            f"/providers/Microsoft.MachineLearningServices/workspaces/{client.workspace_name}"
        )
        return AzureMonitorMetrics(
            MetricsQueryClient(client._credential), lambda endpoint: f"{workspace}/onlineEndpoints/{endpoint}"
        )

    # models
    def register_model(
        self, name: str, package_path: str, *, version: str | None = None, description: str = ""
    ) -> ModelRef:
        # An MLflow model is registered whole, as an mlflow_model (Azure ML then needs no code or
        # environment); a scoring-script package registers its model/ folder as a custom model.
        # Absolute, so the upload does not depend on the worker's current directory.
        package = ModelPackage(Path(package_path).resolve())
        model_dir = package.path if package.is_mlflow else package.path / MODEL_DIR
        if not model_dir.is_dir():
            raise PlatformError(f"model package {package_path} has no {MODEL_DIR}/ folder to register")
        model = Model(
            name=name,
            version=version,
            path=str(model_dir),
            type=AssetTypes.MLFLOW_MODEL if package.is_mlflow else AssetTypes.CUSTOM_MODEL,
            description=description or None,
        )
        registered = self._call(
            lambda: self.ml_client.models.create_or_update(model),
            what=f"register model {name} from {model_dir}",
            check="the model name and version, and that the identity can write to the workspace's datastore",
        )
        return ModelRef(str(registered.name), str(registered.version))

    def get_model(self, name: str, version: str | None = None) -> ModelRef:
        if version is None:
            read = lambda: self.ml_client.models.get(name=name, label="latest")  # noqa: E731
        else:
            read = lambda: self.ml_client.models.get(name=name, version=version)  # noqa: E731
        model = self._call(read, what=f"read model {name}:{version or 'latest'}", check="the model's name and version")
        return ModelRef(str(model.name), str(model.version))

    def model_package(self, model: ModelRef, into: Path) -> Path:
        """Download the version once into ``into/name/version``; the SDK writes it under the model's
        name and, for a folder, the folder's own name: that folder is the package."""
        target = into / model.name / model.version
        if not target.is_dir():
            partial = target.with_name(f".{model.version}.partial")
            shutil.rmtree(partial, ignore_errors=True)
            self._call(
                lambda: self.ml_client.models.download(model.name, model.version, download_path=str(partial)),
                what=f"download model {model}",
                check="that the identity can read the workspace's default datastore",
            )
            partial.rename(target)
        downloaded = target / model.name
        folders = [p for p in downloaded.iterdir() if p.is_dir()] if downloaded.is_dir() else []
        return folders[0] if len(folders) == 1 and len(list(downloaded.iterdir())) == 1 else downloaded

    # endpoints
    def create_or_update_endpoint(self, spec: EndpointSpec, *, timeout_s: float = 900) -> EndpointState:
        entity = build_endpoint(spec)
        existing = self._find_endpoint(spec.name)
        if existing is not None:
            current = endpoint_state(existing).compute
            if current != (compute_name(spec.compute) if spec.compute else None):
                raise PlatformError(
                    f"endpoint {spec.name} already exists on {current or 'managed compute'}, not "
                    f"{spec.compute or 'managed compute'}; an endpoint cannot move: "
                    "use another name, or delete it first"
                )
            # a PUT replaces the whole endpoint: carry over what this call must leave as it is
            entity.traffic = dict(existing.traffic)
            entity.mirror_traffic = dict(existing.mirror_traffic)
            entity.identity = existing.identity
        what = f"create or update endpoint {spec.name}"
        poller = self._call(
            lambda: self.ml_client.online_endpoints.begin_create_or_update(entity),
            what=what,
            check=_CHECK_ENDPOINT,
        )
        wait_for(poller, what=what, check=_CHECK_ENDPOINT, timeout_s=timeout_s)
        return self.get_endpoint(spec.name)

    def get_endpoint(self, name: str) -> EndpointState:
        return endpoint_state(self._get_endpoint_entity(name))

    def list_endpoints(self) -> list[EndpointState]:
        listed = self._call(
            lambda: list(self.ml_client.online_endpoints.list()), what="list endpoints", check=_CHECK_ENDPOINT
        )
        return sorted((endpoint_state(e) for e in listed), key=lambda e: e.name)

    def delete_endpoint(self, name: str, *, timeout_s: float = 900) -> bool:
        if self._find_endpoint(name) is None:
            return False
        what = f"delete endpoint {name}"
        poller = self._call(
            lambda: self.ml_client.online_endpoints.begin_delete(name=name), what=what, check=_CHECK_ENDPOINT
        )
        wait_for(poller, what=what, check=_CHECK_ENDPOINT, timeout_s=timeout_s)
        return True

    def set_traffic(
        self,
        endpoint: str,
        *,
        traffic: dict[str, int] | None = None,
        mirror_traffic: dict[str, int] | None = None,
        timeout_s: float = 900,
    ) -> EndpointState:
        entity = self._get_endpoint_entity(endpoint)
        if traffic is None and mirror_traffic is None:
            return endpoint_state(entity)
        live = dict(traffic) if traffic is not None else dict(entity.traffic)
        mirror = dict(mirror_traffic) if mirror_traffic is not None else dict(entity.mirror_traffic)
        check_traffic(endpoint, live, mirror, kubernetes=isinstance(entity, KubernetesOnlineEndpoint))
        entity.traffic = live
        entity.mirror_traffic = mirror
        what = f"set traffic of endpoint {endpoint} to {live or 'none'} (mirror {mirror or 'none'})"
        check = "that every deployment named exists on the endpoint and has finished provisioning"
        poller = self._call(
            lambda: self.ml_client.online_endpoints.begin_create_or_update(entity), what=what, check=check
        )
        wait_for(poller, what=what, check=check, timeout_s=timeout_s)
        return self.get_endpoint(endpoint)

    def get_keys(self, endpoint: str) -> EndpointKeys:
        credentials = self._call(
            lambda: self.ml_client.online_endpoints.get_keys(name=endpoint),
            what=f"get the keys of endpoint {endpoint}",
            check="that the identity may list endpoint keys (onlineEndpoints/listKeys/action)",
        )
        return endpoint_keys(credentials, endpoint)

    # deployments
    def begin_create_or_update_deployment(self, spec: DeploymentSpec) -> DeploymentState:
        package = package_folder(spec)
        endpoint = self._get_endpoint_entity(spec.endpoint)
        try:  # an MLflow model brings its own environment: Azure ML builds it (no-code deployment)
            conda = None if ModelPackage(package).is_mlflow else conda_environment_from_file(package / REQUIREMENTS)
        except ValueError as e:
            raise PlatformError(f"deployment {spec.endpoint}/{spec.name}: {e}") from e
        kubernetes = isinstance(endpoint, KubernetesOnlineEndpoint)
        # the code is the package without model/, which is already the registered model asset
        staged = code_folder(package) if conda is not None else nullcontext(package)  # MLflow: no code sent
        with staged as code:  # uploaded by begin_create_or_update, before it returns
            entity = build_deployment(spec, code_path=code, conda=conda, kubernetes=kubernetes)
            if kubernetes and entity.instance_type:
                self._check_instance_type(endpoint_state(endpoint).compute or "", entity.instance_type, spec)
            existed = any(d.name == spec.name for d in self.list_deployments(spec.endpoint))
            poller = self._call(
                lambda: self.ml_client.online_deployments.begin_create_or_update(entity),
                what=f"start deployment {spec.endpoint}/{spec.name} of model {spec.model}",
                check=_CHECK_DEPLOYMENT,
            )
        self._deployment_operations[(spec.endpoint, spec.name)] = poller
        log.info("deployment %s/%s of model %s submitted", spec.endpoint, spec.name, spec.model)
        return DeploymentState(
            endpoint=spec.endpoint,
            name=spec.name,
            provisioning_state=UPDATING if existed else CREATING,
            model=str(spec.model),
            instance_count=spec.instance_count,
            resources=dataclasses.replace(spec.resources, instance_type=entity.instance_type),
        )

    def get_deployment(self, endpoint: str, name: str) -> DeploymentState:
        # read through the REST layer: the SDK's reader fails on some answers (deployment_from_rest)
        operations = self.ml_client.online_deployments._online_deployment
        answer = self._call(
            lambda: operations.get(
                resource_group_name=self.ml_client.resource_group_name,
                workspace_name=self.ml_client.workspace_name,
                endpoint_name=endpoint,
                deployment_name=name,
            ),
            what=f"get deployment {endpoint}/{name}",
            check=_CHECK_DEPLOYMENT,
        )
        state = deployment_state(deployment_from_rest(answer), endpoint)
        if state.failed and state.error is None:
            state = dataclasses.replace(state, error=self._failure_reason(endpoint, name, state.provisioning_state))
        return state

    def _failure_reason(self, endpoint: str, name: str, provisioning: str) -> str:
        """Why a deployment did not come up: the operation's error where this platform started it,
        and the tail of the inference server's log, which usually names the failing line of init()."""
        parts = [f"deployment {endpoint}/{name} is {provisioning}"]
        poller = self._deployment_operations.get((endpoint, name))
        if poller is not None and poller.done():
            try:
                poller.result(timeout=0)
            except AzureError as e:
                parts.append(
                    str(platform_error(e, what=f"create deployment {endpoint}/{name}", check=_CHECK_DEPLOYMENT))
                )
        try:
            tail = self.get_deployment_logs(endpoint, name, lines=LOG_TAIL_LINES).strip()
        except PlatformError as e:
            tail = f"(its container log could not be read: {e})"
        if tail:
            parts.append(f"last lines of its container log:\n{tail}")
        return "; ".join(parts)

    def list_deployments(self, endpoint: str) -> list[DeploymentState]:
        operations = self.ml_client.online_deployments._online_deployment
        answers = self._call(
            lambda: list(
                operations.list(
                    resource_group_name=self.ml_client.resource_group_name,
                    workspace_name=self.ml_client.workspace_name,
                    endpoint_name=endpoint,
                )
            ),
            what=f"list the deployments of endpoint {endpoint}",
            check=_CHECK_ENDPOINT,
        )
        return [deployment_state(deployment_from_rest(a), endpoint) for a in answers]

    def delete_deployment(self, endpoint: str, name: str, *, timeout_s: float = 900) -> bool:
        try:
            self.get_deployment(endpoint, name)
        except PlatformNotFoundError:
            return False
        state = self.get_endpoint(endpoint)
        if state.traffic.get(name, 0) or state.mirror_traffic.get(name, 0):
            raise PlatformError(
                f"deployment {endpoint}/{name} still receives traffic (live {state.traffic.get(name, 0)} %, "
                f"mirror {state.mirror_traffic.get(name, 0)} %); set its traffic to 0 before deleting it"
            )
        what = f"delete deployment {endpoint}/{name}"
        poller = self._call(
            lambda: self.ml_client.online_deployments.begin_delete(name=name, endpoint_name=endpoint),
            what=what,
            check=_CHECK_DEPLOYMENT,
        )
        wait_for(poller, what=what, check=_CHECK_DEPLOYMENT, timeout_s=timeout_s)
        return True

    def get_deployment_logs(self, endpoint: str, name: str, *, lines: int = 100) -> str:
        return str(
            self._call(
                lambda: self.ml_client.online_deployments.get_logs(name=name, endpoint_name=endpoint, lines=lines),
                what=f"get the logs of deployment {endpoint}/{name}",
                check=_CHECK_DEPLOYMENT,
            )
        )

    # batch scoring
    def submit_batch_job(self, spec: BatchJobSpec, *, storage_connection_string: str | None = None) -> BatchJobState:
        # Azure ML reads blobs through its datastores and URIs: a connection string is not needed
        code = check_package(spec)
        try:
            if code.mlflow:  # the environment that serves it: its requirements with mlflow-skinny and pandas
                requirements = read_requirements(ModelPackage(code.package).serving_requirements())
                conda = conda_environment(requirements, extra_pip=PARALLEL_RUNTIME)
            else:
                conda = conda_environment_from_file(code.package / REQUIREMENTS, extra_pip=PARALLEL_RUNTIME)
        except ValueError as e:
            raise PlatformError(f"batch job {spec.name}: {e}") from e
        staged = (
            scripts_folder(code.package.name, {ENTRY_SCRIPT: ENTRY_SOURCE, MLFLOW_SCRIPT: MLFLOW_BATCH_SCRIPT})
            if code.mlflow
            else code_folder(code.package, extra={ENTRY_SCRIPT: ENTRY_SOURCE})
        )
        with staged as code_path:  # uploaded by the submission
            job = build_batch_job(
                spec, code_path=code_path, conda=conda, failures_at=failures_uri(spec, uuid.uuid4().hex),
                mlflow=code.mlflow,
            )  # fmt: skip
            submitted = self._call(
                lambda: self.ml_client.jobs.create_or_update(job, experiment_name=spec.name),
                what=f"submit batch job {spec.name} of model {spec.model} on {spec.compute}",
                check=_CHECK_SUBMIT,
            )
        state = batch_job_state(submitted, output_uri=spec.output_uri)
        log.info("batch job %s submitted as %s (%s)", spec.name, state.job_id, state.status)
        return state

    def get_batch_job(self, job_id: str) -> BatchJobState:
        job = self._get_job(job_id)
        failures = (job.tags or {}).get(FAILURES_TAG)
        if job_status(job.status) == JOB_COMPLETED and failures:
            errors, skipped = self._file_reports(job_id, failures)
            return batch_job_state(job, file_errors=errors, skipped_files=skipped)
        return batch_job_state(job)

    def _file_reports(self, job_id: str, uri: str) -> tuple[dict[str, str], dict[str, str]]:
        """The reports the job's entry script left (``parallel_entry``): files that failed alone, name
        (relative to the input) → error, and empty files skipped, name → reason. Read with the SDK's
        own datastore download (what ``jobs.download`` uses)."""
        from azure.ai.ml._artifacts._artifact_utilities import download_artifact_from_aml_uri

        found: dict[str, dict[str, str]] = {FAILED_SUFFIX: {}, SKIPPED_SUFFIX: {}}
        with tempfile.TemporaryDirectory(prefix="deployflow-reports-") as folder:
            self._call(
                lambda: download_artifact_from_aml_uri(uri, folder, self.ml_client.datastores),
                what=f"read the failed-file reports of batch job {job_id} under {uri}",
                check=_CHECK_REPORTS,
            )
            for path in sorted(Path(folder).rglob("*.json")):
                relative = path.relative_to(folder).as_posix()
                suffix = next((s for s in found if relative.endswith(s)), None)
                if suffix is None:
                    continue
                try:
                    report = json.loads(path.read_text())
                    name = str(report.get("file") or relative.removesuffix(suffix))
                    found[suffix][name] = str(report.get("error") or report.get("reason") or "failed")
                except (ValueError, AttributeError):
                    found[suffix][relative.removesuffix(suffix)] = "its report could not be read"
        return found[FAILED_SUFFIX], found[SKIPPED_SUFFIX]

    def cancel_batch_job(self, job_id: str) -> BatchJobState:
        state = batch_job_state(self._get_job(job_id))
        if state.done:
            return state
        self._call(
            lambda: self.ml_client.jobs.begin_cancel(name=job_id), what=f"cancel batch job {job_id}", check=_CHECK_JOB
        )
        log.info("cancellation of batch job %s requested", job_id)
        return self.get_batch_job(job_id)

    def ensure_batch_cluster(
        self,
        name: str,
        *,
        size: str,
        max_instances: int,
        min_instances: int = 0,
        idle_time_before_scale_down: int = 120,
        timeout_s: float = 900,
    ) -> bool:
        """Create the AmlCompute cluster batch jobs run on, unless it exists; True when created."""
        return ensure_compute_cluster(
            self.ml_client,
            name,
            size=size,
            max_instances=max_instances,
            min_instances=min_instances,
            idle_time_before_scale_down=idle_time_before_scale_down,
            timeout_s=timeout_s,
            retry=self.retry,
        )

    # data plane
    def scoring_headers(self, endpoint: str) -> dict[str, str]:
        key = self._scoring_keys(endpoint).primary_key
        return {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}

    def scoring_headers_until(self, endpoint: str) -> tuple[dict[str, str], float | None]:
        headers = self.scoring_headers(endpoint)
        token = self._tokens.get(endpoint)
        return headers, (token.refresh_at if token is not None else None)

    def _scoring_keys(self, endpoint: str) -> EndpointKeys:
        """The endpoint's keys; an aml_token is kept until its refresh time, then asked for again, so
        a long load can ask before every slice without a management call each time. Plain keys are
        read every time (a regenerated key takes effect at once)."""
        token = self._tokens.get(endpoint)
        if token is not None and token.refresh_at is not None and time.time() < token.refresh_at:
            return token
        keys = self.get_keys(endpoint)
        if keys.refresh_at is not None:
            self._tokens[endpoint] = keys
            log.info("endpoint %s: a new aml_token, good until %s", endpoint,
                     time.strftime("%H:%M:%S", time.gmtime(keys.refresh_at)))  # fmt: skip
        else:
            self._tokens.pop(endpoint, None)
        return keys

    def invoke(
        self,
        endpoint: str,
        payload: Any,
        *,
        deployment: str | None = None,
        timeout_s: float = 30,
    ) -> InvokeResult:
        scoring_uri = self.get_endpoint(endpoint).scoring_uri
        if not scoring_uri:
            raise PlatformError(f"endpoint {endpoint} has no scoring URI yet; wait until it has finished provisioning")
        headers = self.scoring_headers(endpoint)
        if deployment:
            headers[DEPLOYMENT_HEADER] = deployment
        content = payload if isinstance(payload, (bytes, str)) else json.dumps(payload)
        started = time.perf_counter()
        try:
            response = self._http.post(scoring_uri, content=content, headers=headers, timeout=timeout_s)
        except httpx.HTTPError as e:
            raise PlatformError(
                f"could not call the scoring URI of endpoint {endpoint} ({type(e).__name__}); "
                "check that the endpoint is reachable from this worker and the timeout"
            ) from e
        elapsed_ms = (time.perf_counter() - started) * 1000
        try:
            body: Any = response.json()
            is_json = True
        except ValueError:
            body = response.text
            is_json = False
        served_by = response.headers.get(DEPLOYMENT_HEADER)
        log.info(
            "endpoint %s answered %d in %.0f ms (deployment %s)",
            endpoint,
            response.status_code,
            elapsed_ms,
            served_by,
        )
        return InvokeResult(
            status_code=response.status_code,
            body=body,
            deployment=served_by,
            request_id=response.headers.get(REQUEST_ID_HEADER),
            elapsed_ms=elapsed_ms,
            is_json=is_json,
        )

    # helpers
    def _check_instance_type(self, compute: str, instance_type: str, spec: DeploymentSpec) -> None:
        """Refuse, before anything is created, an instance type the Kubernetes compute does not list."""
        found = self._call(
            lambda: self.ml_client.compute.get(name=compute),
            what=f"get compute {compute}",
            check="the compute name of the endpoint, and the identity's role on the workspace",
        )
        offered = _listed_instance_types(found) if isinstance(found, KubernetesCompute) else []
        if offered and instance_type not in offered:
            raise PlatformError(
                f"deployment {spec.endpoint}/{spec.name} asks compute {compute} for instance type {instance_type}, "
                f"which it does not define (it has {', '.join(offered)}); apply the InstanceType manifests "
                "rendered by deployflow.azureml.render_instance_types to the cluster, or choose one it has"
            )

    def _get_job(self, job_id: str) -> Job:
        return self._call(
            lambda: self.ml_client.jobs.get(name=job_id), what=f"get batch job {job_id}", check=_CHECK_JOB
        )

    def _get_endpoint_entity(self, name: str) -> OnlineEndpoint:
        return self._call(
            lambda: self.ml_client.online_endpoints.get(name=name),
            what=f"get endpoint {name}",
            check=_CHECK_ENDPOINT,
        )

    def _find_endpoint(self, name: str) -> OnlineEndpoint | None:
        try:
            return self._get_endpoint_entity(name)
        except PlatformNotFoundError:
            return None


def _listed_instance_types(compute: object) -> list[str]:
    """The InstanceType names a Kubernetes compute reports in its properties (``instanceTypes``)."""
    properties = getattr(compute, "properties", None)
    listed = properties.get("instanceTypes") if isinstance(properties, dict) else None
    return sorted(listed) if isinstance(listed, dict) else []
