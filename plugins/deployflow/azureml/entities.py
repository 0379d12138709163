"""Translation between the contract's specs and states and azure-ai-ml's entities. No I/O.

A managed endpoint (no compute) is the test deployment; an endpoint on an attached AKS
compute is a Kubernetes endpoint, sized by cpu/memory requests or an instance type.
"""

from __future__ import annotations

import logging
import re
import time
from pathlib import Path
from typing import Any

from azure.ai.ml._restclient.arm_ml_service import models as rest
from azure.ai.ml.entities import (
    CodeConfiguration,
    DefaultScaleSettings,
    Environment,
    KubernetesOnlineDeployment,
    KubernetesOnlineEndpoint,
    ManagedOnlineDeployment,
    ManagedOnlineEndpoint,
    OnlineDeployment,
    OnlineEndpoint,
    OnlineRequestSettings,
    ProbeSettings,
    ResourceRequirementsSettings,
    ResourceSettings,
)

from deployflow.azureml.quantities import format_cpu, format_memory, instance_type_name, parse_cpu, parse_memory
from deployflow.packages import MLMODEL, REQUIREMENTS, SCORING_SCRIPT
from deployflow.platform.contract import CANCELED, FAILED, SUCCEEDED
from deployflow.platform.errors import PlatformError
from deployflow.platform.specs import (
    DeploymentSpec,
    DeploymentState,
    EndpointKeys,
    EndpointSpec,
    EndpointState,
    Resources,
)
from deployflow.platform.specs import ProbeSettings as ProbeSpec

log = logging.getLogger(__name__)

# Azure ML's documented base image for an environment built from a conda file (Ubuntu 22.04);
# the conda file brings Python and azureml-inference-server-http.
BASE_IMAGE = "mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu22.04:latest"
# The smallest general-purpose SKU Azure ML recommends for managed online deployments.
DEFAULT_INSTANCE_TYPE = "Standard_DS3_v2"
# Azure VM sizes name managed instances; a Kubernetes compute offers InstanceType resources instead.
_VM_SIZE = re.compile(r"^Standard_", re.IGNORECASE)
# azmlinfsrv reads its number of worker processes from this variable.
WORKER_COUNT_VARIABLE = "WORKER_COUNT"
# an aml_token is asked for again this long before it expires, when the service gives no refresh time
TOKEN_EXPIRY_MARGIN_S = 300.0
TOKEN_UNKNOWN_LIFETIME_S = 300.0

_MODEL_ARM_ID = re.compile(r"/models/([^/]+)/versions/([^/]+)$", re.IGNORECASE)
_TERMINAL = {s.lower(): s for s in (SUCCEEDED, FAILED, CANCELED)} | {"cancelled": CANCELED}


def build_endpoint(spec: EndpointSpec) -> OnlineEndpoint:
    """The SDK entity for an endpoint spec: managed without compute, Kubernetes with one."""
    common: dict[str, Any] = {
        "name": spec.name,
        "auth_mode": spec.auth_mode,
        "description": spec.description or None,
        "tags": dict(spec.tags),
    }
    if spec.compute is None:
        return ManagedOnlineEndpoint(**common)
    return KubernetesOnlineEndpoint(compute=spec.compute, **common)


def build_deployment(
    spec: DeploymentSpec, *, code_path: Path, conda: dict[str, Any] | None, kubernetes: bool
) -> OnlineDeployment:
    """The SDK entity for a deployment spec, on the kind of endpoint it goes behind. With no conda
    environment (an MLflow model), neither code nor environment is sent: Azure ML's no-code MLflow
    deployment generates both from the registered model."""
    common: dict[str, Any] = {
        "name": spec.name,
        "endpoint_name": spec.endpoint,
        "model": f"azureml:{spec.model.name}:{spec.model.version}",
        "request_settings": OnlineRequestSettings(
            request_timeout_ms=spec.request_settings.request_timeout_ms,
            max_concurrent_requests_per_instance=spec.request_settings.max_concurrent_requests_per_instance,
        ),
        "liveness_probe": _probe(spec.liveness_probe),
        "readiness_probe": _probe(spec.readiness_probe),
        "environment_variables": _environment_variables(spec),
        "instance_count": spec.instance_count,
    }
    if conda is not None:
        common["code_configuration"] = CodeConfiguration(code=str(code_path), scoring_script=SCORING_SCRIPT)
        common["environment"] = Environment(image=BASE_IMAGE, conda_file=conda)
    if kubernetes:
        # without scale settings the service autoscales Kubernetes deployments (TargetUtilization):
        # a fixed instance_count is what the profile measured and the rollout plans for
        return KubernetesOnlineDeployment(
            resources=kubernetes_resources(spec),
            instance_type=kubernetes_instance_type(spec),
            scale_settings=DefaultScaleSettings(),
            **common,
        )
    if spec.resources.cpu is not None or spec.resources.memory_gb is not None:
        log.warning(
            "deployment %s/%s is on a managed endpoint, which is sized by instance type only; "
            "cpu/memory (%s) are not applied",
            spec.endpoint,
            spec.name,
            spec.resources.describe(),
        )
    return ManagedOnlineDeployment(instance_type=spec.resources.instance_type or DEFAULT_INSTANCE_TYPE, **common)


def kubernetes_instance_type(spec: DeploymentSpec) -> str | None:
    """The InstanceType a Kubernetes deployment asks the cluster for.

    A shape given as cpu/memory asks for the InstanceType ``aks.render_instance_types`` renders for
    it (``cpu500m-mem2gi``), unless an instance type of the cluster's own is named. An Azure VM size
    (``Standard_DS3_v2``) is no InstanceType of a cluster: it gives way to the rendered name, or is
    refused when there is no cpu/memory to render one from.
    """
    r = spec.resources
    named = r.instance_type
    if named and not _VM_SIZE.match(named):
        return named
    if r.cpu is not None and r.memory_gb is not None:
        return instance_type_name(r)
    if named:
        raise PlatformError(
            f"deployment {spec.endpoint}/{spec.name}: {named} is an Azure VM size, and a Kubernetes compute "
            "offers InstanceType resources instead; give cpu and memory_gb (the InstanceType rendered for "
            "them is used), or the name of an InstanceType the cluster defines"
        )
    return None


def kubernetes_resources(spec: DeploymentSpec) -> ResourceRequirementsSettings | None:
    """Requests equal to limits (a guaranteed pod, so a profile measures what it asked for);
    GPUs go in limits only, as Kubernetes requires. None leaves sizing to the instance type."""
    r = spec.resources
    if r.cpu is None and r.memory_gb is None and not r.gpu:
        return None
    if r.cpu is None or r.memory_gb is None:
        raise PlatformError(
            f"deployment {spec.endpoint}/{spec.name}: a Kubernetes deployment sized by resources needs "
            f"both cpu and memory_gb (got {r.describe()}); give both, or only an instance_type"
        )
    cpu, memory = format_cpu(r.cpu), format_memory(r.memory_gb)
    return ResourceRequirementsSettings(
        requests=ResourceSettings(cpu=cpu, memory=memory),
        limits=ResourceSettings(cpu=cpu, memory=memory, gpu=str(r.gpu) if r.gpu else None),
    )


def endpoint_state(entity: OnlineEndpoint) -> EndpointState:
    compute = getattr(entity, "compute", None)
    return EndpointState(
        name=str(entity.name),
        scoring_uri=entity.scoring_uri or "",
        provisioning_state=provisioning_state(entity.provisioning_state),
        traffic={k: int(v) for k, v in (entity.traffic or {}).items()},
        mirror_traffic={k: int(v) for k, v in (entity.mirror_traffic or {}).items()},
        compute=compute_name(compute) if compute else None,
        auth_mode=str(entity.auth_mode or "key"),
        description=str(entity.description or ""),
        tags={str(k): str(v) for k, v in (entity.tags or {}).items()},
    )


def deployment_from_rest(answer: rest.OnlineDeployment) -> OnlineDeployment:
    """The SDK entity for a deployment as the service answers it. A Kubernetes deployment sized by
    instance type comes back without containerResourceRequirements, which the SDK's own reader
    cannot take: give it an empty one."""
    props = answer.properties
    if isinstance(props, rest.KubernetesOnlineDeployment) and props.container_resource_requirements is None:
        props.container_resource_requirements = rest.ContainerResourceRequirements()
    return OnlineDeployment._from_rest_object(answer)


def deployment_state(entity: OnlineDeployment, endpoint: str) -> DeploymentState:
    return DeploymentState(
        endpoint=entity.endpoint_name or endpoint,
        name=str(entity.name),
        provisioning_state=provisioning_state(entity.provisioning_state),
        model=model_ref(entity.model),
        instance_count=entity.instance_count,
        resources=_resources(entity),
    )


def provisioning_state(value: object) -> str:
    """The state as the contract spells it. The SDK hands back str-enums whose ``str()`` is
    "EndpointProvisioningState.SUCCEEDED", and pollers may answer in lower case."""
    if value is None:
        return "Unknown"
    text = str(getattr(value, "value", value))
    return _TERMINAL.get(text.lower(), text)


def model_ref(model: object) -> str | None:
    """ "name:version" from an ARM id, an "azureml:name:version" reference or a Model entity."""
    if model is None:
        return None
    if not isinstance(model, str):
        name, version = getattr(model, "name", None), getattr(model, "version", None)
        return f"{name}:{version}" if name and version else None
    match = _MODEL_ARM_ID.search(model)
    if match:
        return f"{match.group(1)}:{match.group(2)}"
    return model.removeprefix("azureml:")


def compute_name(compute: str) -> str:
    """The compute's short name: the service answers with its full ARM id."""
    return compute.rstrip("/").rsplit("/", 1)[-1].removeprefix("azureml:")


def _resources(entity: OnlineDeployment) -> Resources:
    """What the deployment asked for; requests first, limits where no request was given."""
    settings = getattr(entity, "resources", None)
    requests = getattr(settings, "requests", None)
    limits = getattr(settings, "limits", None)

    def setting(name: str) -> str | None:
        for side in (requests, limits):
            value = getattr(side, name, None)
            if value not in (None, ""):
                return str(value)
        return None

    cpu, memory, gpu = setting("cpu"), setting("memory"), setting("gpu")
    try:
        return Resources(
            cpu=parse_cpu(cpu) if cpu else None,
            memory_gb=parse_memory(memory) if memory else None,
            gpu=int(float(gpu.strip('"'))) if gpu else 0,
            instance_type=entity.instance_type,
        )
    except ValueError as e:
        raise PlatformError(f"deployment {entity.endpoint_name}/{entity.name}: Azure ML reported {e}") from e


def _probe(probe: ProbeSpec) -> ProbeSettings:
    return ProbeSettings(
        initial_delay=probe.initial_delay_s,
        period=probe.period_s,
        timeout=probe.timeout_s,
        failure_threshold=probe.failure_threshold,
    )


def _environment_variables(spec: DeploymentSpec) -> dict[str, str]:
    given = spec.environment_variables.get(WORKER_COUNT_VARIABLE)
    if given is not None and given != str(spec.worker_count):
        raise PlatformError(
            f"deployment {spec.endpoint}/{spec.name}: environment variable {WORKER_COUNT_VARIABLE}={given} "
            f"contradicts worker_count={spec.worker_count}; set worker_count only"
        )
    return {
        **{k: str(v) for k, v in spec.environment_variables.items()},
        WORKER_COUNT_VARIABLE: str(spec.worker_count),
    }


def package_folder(spec: DeploymentSpec) -> Path:
    """The package folder Azure ML uploads as the deployment's code, checked for what it must hold."""
    if not spec.package_path:
        raise PlatformError(
            f"deployment {spec.endpoint}/{spec.name} has no package_path: Azure ML uploads the package "
            f"folder ({SCORING_SCRIPT}, {REQUIREMENTS}) as the deployment's code"
        )
    package = Path(spec.package_path).resolve()
    if (package / MLMODEL).is_file() and not (package / SCORING_SCRIPT).is_file():
        return package  # an MLflow model: Azure ML generates the scoring script and environment
    for required in (SCORING_SCRIPT, REQUIREMENTS):
        if not (package / required).is_file():
            raise PlatformError(f"model package {package} has no {required}")
    return package


def endpoint_keys(credentials: object, endpoint: str) -> EndpointKeys:
    """Keys for a key endpoint; for an aml_token endpoint the token (it expires) as the primary key."""
    primary = getattr(credentials, "primary_key", None)
    if primary:
        secondary = getattr(credentials, "secondary_key", None) or ""
        return EndpointKeys(primary_key=primary, secondary_key=secondary)
    token = getattr(credentials, "access_token", None)
    if token:
        return EndpointKeys(primary_key=token, secondary_key="", refresh_at=token_refresh_at(credentials))
    raise PlatformError(f"Azure ML returned no key or token for endpoint {endpoint}; check its auth_mode")


def token_refresh_at(token: object) -> float:
    """When to ask for a new aml_token: the service's refresh-after time, else a margin before it
    expires; a token that says neither is asked for again after TOKEN_UNKNOWN_LIFETIME_S."""
    refresh_after = float(getattr(token, "refresh_after_time_utc", 0) or 0)
    if refresh_after > 0:
        return refresh_after
    expiry = float(getattr(token, "expiry_time_utc", 0) or 0)
    if expiry > 0:
        return expiry - TOKEN_EXPIRY_MARGIN_S
    return time.time() + TOKEN_UNKNOWN_LIFETIME_S
