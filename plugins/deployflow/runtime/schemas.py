"""The control plane's documents, shaped after Azure ML's online endpoints and deployments."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from deployflow.platform import contract
from deployflow.platform.contract import (  # noqa: F401 - the name patterns are re-exported for the API
    DEPLOYMENT_NAME_PATTERN,
    ENDPOINT_NAME_PATTERN,
    JOB_NAME_PATTERN,
    MAX_MIRROR_PERCENT,
)

ModelName = Annotated[str, Field(pattern=r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,254}$")]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ModelRegistration(Strict):
    name: ModelName
    # A letter or digit first: the runtime stages a copy as ".<version>.partial" beside the versions.
    version: Annotated[str, Field(pattern=r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,63}$")] | None = None
    path: str = Field(description="a model package folder readable by the runtime")


class Model(Strict):
    name: str
    version: str
    path: str
    content_hash: str
    created_at: str


class ResourceSettings(Strict):
    """Per instance: fractional cpu cores and memory; None leaves it unlimited."""

    cpu: float | None = Field(default=None, gt=0, le=64)
    memory_gb: float | None = Field(default=None, gt=0, le=256)
    gpu: int = Field(default=0, ge=0, le=0, description="the local runtime has no GPU")


class RequestSettings(Strict):
    request_timeout_ms: int = Field(default=5000, ge=1, le=180_000)
    max_concurrent_requests_per_instance: int = Field(default=1, ge=1, le=1000)


class ProbeSettings(Strict):
    initial_delay_s: float = Field(default=0, ge=0)
    period_s: float = Field(default=2, gt=0)
    timeout_s: float = Field(default=2, gt=0)
    failure_threshold: int = Field(default=3, ge=1)


class DeploymentSpec(Strict):
    model: str = Field(pattern=r"^[^:]+:[^:]+$", description="registered model as name:version")
    instance_count: int = Field(default=1, ge=1, le=16)
    worker_count: int = Field(default=1, ge=1, le=16, description="scoring server processes per instance")
    resources: ResourceSettings = ResourceSettings()
    request_settings: RequestSettings = RequestSettings()
    liveness_probe: ProbeSettings = ProbeSettings()
    readiness_timeout_s: float = Field(default=120, gt=0, le=3600)
    environment_variables: dict[str, str] = {}


class ProvisioningState(StrEnum):
    CREATING = contract.CREATING
    UPDATING = contract.UPDATING
    SUCCEEDED = contract.SUCCEEDED
    FAILED = contract.FAILED
    DELETING = contract.DELETING


class InstanceStatus(Strict):
    index: int
    state: str
    restarts: int
    pid: int | None
    cpu_seconds: float | None = Field(default=None, description="cpu time used by the instance's processes")
    memory_mb: float | None = Field(default=None, description="resident memory of the instance's processes")


class Deployment(DeploymentSpec):
    name: str
    endpoint_name: str
    provisioning_state: ProvisioningState
    error: str | None = None
    enforcement: str = Field(description="how cpu and memory limits are enforced on this machine")
    instances: list[InstanceStatus] = []
    requests: int = Field(default=0, description="answers given since the runtime started, mirrored included")
    mirrored_requests: int = 0
    requests_by_status: dict[str, int] = {}


class EndpointSpec(Strict):
    """Create or update an endpoint; traffic and mirror_traffic are left as they are when omitted."""

    auth_mode: Literal["key"] = "key"
    description: str = ""
    tags: dict[str, str] = {}
    compute: str | None = Field(default=None, description="local compute pool, e.g. test or production")
    traffic: dict[str, int] | None = None
    mirror_traffic: dict[str, int] | None = None

    @field_validator("traffic")
    @classmethod
    def _traffic_sums_to_100(cls, traffic: dict[str, int] | None) -> dict[str, int] | None:
        if traffic is None:
            return None
        if any(not 0 <= v <= 100 for v in traffic.values()):
            raise ValueError("each traffic share must be between 0 and 100")
        total = sum(traffic.values())
        if total not in (0, 100):
            raise ValueError(f"traffic shares must add up to 100 (or all be 0), not {total}")
        return {k: v for k, v in traffic.items() if v}

    @field_validator("mirror_traffic")
    @classmethod
    def _one_mirror_within_limit(cls, mirror: dict[str, int] | None) -> dict[str, int] | None:
        if mirror is None:
            return None
        mirror = {k: v for k, v in mirror.items() if v}
        if len(mirror) > 1:
            raise ValueError("mirror_traffic may name one deployment only")
        if any(not 0 < v <= MAX_MIRROR_PERCENT for v in mirror.values()):
            raise ValueError(f"mirror_traffic must be at most {MAX_MIRROR_PERCENT} percent")
        return mirror

    @model_validator(mode="after")
    def _mirror_takes_no_live_traffic(self) -> EndpointSpec:
        live = {k for k, v in (self.traffic or {}).items() if v}
        both = live & set(self.mirror_traffic or {})
        if both:
            raise ValueError(f"deployment {sorted(both)[0]} cannot take live and mirrored traffic at once")
        return self


class Endpoint(Strict):
    name: str
    auth_mode: str
    description: str
    tags: dict[str, str]
    compute: str | None
    traffic: dict[str, int]
    mirror_traffic: dict[str, int]
    scoring_uri: str
    provisioning_state: ProvisioningState = ProvisioningState.SUCCEEDED


class EndpointKeys(Strict):
    primary_key: str
    secondary_key: str


class RegenerateKeys(Strict):
    key_type: Literal["primary", "secondary"]


class ApiError(Strict):
    code: str = Field(description="what kind of error, e.g. InvalidRequest, NotFound, Conflict")
    message: str = Field(description="what is wrong and what to fix")


class ErrorAnswer(Strict):
    """Every 4xx and 5xx answer of the control plane (and the router) has this shape."""

    error: ApiError


# ---- batch jobs ------------------------------------------------------------------------


class JobStatus(StrEnum):
    """Azure ML's job statuses, the subset a local batch job goes through."""

    NOT_STARTED = contract.JOB_NOT_STARTED
    QUEUED = contract.JOB_QUEUED  # waiting for worker slots other jobs hold
    RUNNING = contract.JOB_RUNNING
    COMPLETED = contract.JOB_COMPLETED
    FAILED = contract.JOB_FAILED
    CANCELED = contract.JOB_CANCELED


JOB_ACTIVE_STATUSES = frozenset({JobStatus.NOT_STARTED, JobStatus.QUEUED, JobStatus.RUNNING})


class JobModel(Strict):
    name: ModelName
    version: str


class JobInput(Strict):
    """A local folder or ``blob://<container>/<prefix>``; ``files`` limits the job to those names."""

    uri: str
    files: list[str] = []
    storage_conn_id: str | None = Field(default=None, description="the caller's connection id, for the record")


class JobSpec(Strict):
    """A batch-scoring job, shaped like the platform's BatchJobSpec; it holds no secret."""

    name: str = Field(pattern=JOB_NAME_PATTERN)
    model: JobModel
    package_path: str = Field(description="folder holding the scoring script and requirements.txt")
    scoring_script: str | None = Field(
        default=None, description="the package's batch script; none for an MLflow model (the platform's is run)"
    )
    input: JobInput
    output_uri: str
    mini_batch_size: int = Field(default=10, ge=1)
    error_threshold: int = Field(default=-1, ge=-1, description="failed items tolerated; -1: any number")
    max_retries: int = Field(default=3, ge=0)
    timeout_s: int = Field(default=60, ge=1, description="per attempt of a mini-batch")
    instance_count: int = Field(default=1, ge=1, le=16)
    max_concurrency_per_instance: int = Field(default=1, ge=1, le=16)
    compute: str | None = None
    environment_variables: dict[str, str] = {}


class JobSummary(Strict):
    """What the job has done so far; written as summary.json once it completes."""

    items: int = 0
    succeeded: int = 0
    failed: int = 0
    mini_batches: int = 0
    retries: int = 0
    rows: int = 0
    duration_s: float | None = None
    input_files: list[str] = []
    failed_files: list[str] = []
    # why each failed file failed (the last line of its error), and each file left unscored and why (0 bytes)
    file_errors: dict[str, str] = {}
    skipped_files: dict[str, str] = {}


class Job(JobSpec):
    id: str
    status: JobStatus
    error: str | None = None
    # for a Failed job: whether running it again could help (a storage hiccup, a restart) or not (bad data, code)
    retryable: bool | None = None
    summary: JobSummary = JobSummary()
    created_at: str
    started_at: str | None = None
    ended_at: str | None = None
