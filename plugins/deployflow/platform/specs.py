"""Typed specs and states that both backends take and return.

They are plain frozen dataclasses so that they cross every boundary the same way: into
a backend, through ``to_dict()`` into XCom or a trigger's kwargs, and back with
``from_dict()``. Secrets (endpoint keys) have their own type and never go into XCom.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Any, ClassVar, Self

from deployflow.platform.contract import (
    DEPLOYMENT_NAME_PATTERN,
    ENDPOINT_NAME_PATTERN,
    FAILURE_STATES,
    TERMINAL_STATES,
)

# Azure ML's naming rules, shared by both backends so a name that works locally works in Azure.
ENDPOINT_NAME = re.compile(ENDPOINT_NAME_PATTERN)
DEPLOYMENT_NAME = re.compile(DEPLOYMENT_NAME_PATTERN)


class _Spec:
    """to_dict/from_dict for nested frozen dataclasses (JSON-safe, for XCom and triggers).

    ``_nested`` names the fields that hold another spec, so from_dict can rebuild them.
    """

    _nested: ClassVar[dict[str, type[_Spec]]] = {}

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        kwargs: dict[str, Any] = {}
        for f in dataclasses.fields(cls):  # type: ignore[arg-type]
            if f.name not in data:
                continue
            value = data[f.name]
            nested = cls._nested.get(f.name)
            kwargs[f.name] = nested.from_dict(value) if nested and isinstance(value, dict) else value
        unknown = set(data) - {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        if unknown:
            raise ValueError(f"{cls.__name__} has no field(s) {sorted(unknown)}")
        return cls(**kwargs)


@dataclass(frozen=True)
class ModelRef(_Spec):
    """A registered model version."""

    name: str
    version: str

    @classmethod
    def parse(cls, text: str) -> ModelRef:
        name, sep, version = text.partition(":")
        if not sep or not name or not version:
            raise ValueError(f"a registered model is written name:version, got {text!r}")
        return cls(name, version)

    def __str__(self) -> str:
        return f"{self.name}:{self.version}"


@dataclass(frozen=True)
class Resources(_Spec):
    """Per instance. Either an Azure instance type, or cpu cores / memory / gpu requests."""

    cpu: float | None = None
    memory_gb: float | None = None
    gpu: int = 0
    instance_type: str | None = None

    def __post_init__(self) -> None:
        if self.cpu is not None and self.cpu <= 0:
            raise ValueError(f"cpu must be a positive number of cores, got {self.cpu}")
        if self.memory_gb is not None and self.memory_gb <= 0:
            raise ValueError(f"memory_gb must be positive, got {self.memory_gb}")
        if self.gpu < 0:
            raise ValueError(f"gpu must be 0 or more, got {self.gpu}")

    def describe(self) -> str:
        if self.instance_type and self.cpu is None:
            return self.instance_type
        parts = [f"{self.cpu:g} cpu" if self.cpu else "cpu unlimited"]
        parts.append(f"{self.memory_gb:g} GB" if self.memory_gb else "memory unlimited")
        if self.gpu:
            parts.append(f"{self.gpu} gpu")
        if self.instance_type:
            parts.append(f"on {self.instance_type}")
        return ", ".join(parts)


@dataclass(frozen=True)
class RequestSettings(_Spec):
    request_timeout_ms: int = 5000
    max_concurrent_requests_per_instance: int = 1


@dataclass(frozen=True)
class ProbeSettings(_Spec):
    initial_delay_s: int = 10
    period_s: int = 10
    timeout_s: int = 2
    failure_threshold: int = 30


@dataclass(frozen=True)
class EndpointSpec(_Spec):
    """An online endpoint. ``compute`` names the pool: an attached AKS compute in Azure ML
    (a Kubernetes endpoint) or a local pool; None means a managed endpoint (the test deployment)."""

    name: str
    compute: str | None = None
    auth_mode: str = "key"
    description: str = ""
    tags: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not ENDPOINT_NAME.match(self.name):
            raise ValueError(
                f"endpoint name {self.name!r} must be 3-32 letters, digits or '-', start with a letter "
                "and not end with '-'"
            )
        if self.auth_mode not in ("key", "aml_token"):
            raise ValueError(f"auth_mode must be 'key' or 'aml_token', got {self.auth_mode!r}")


@dataclass(frozen=True)
class DeploymentSpec(_Spec):
    """A deployment of one model version behind an endpoint.

    ``package_path`` is the model package folder (score.py, requirements.txt): Azure ML
    uploads it as the code and builds the environment from its requirements; the local
    runtime already knows it from the registered model.
    """

    endpoint: str
    name: str
    model: ModelRef
    package_path: str | None = None
    resources: Resources = field(default_factory=Resources)
    instance_count: int = 1
    worker_count: int = 1
    request_settings: RequestSettings = field(default_factory=RequestSettings)
    liveness_probe: ProbeSettings = field(default_factory=ProbeSettings)
    readiness_probe: ProbeSettings = field(default_factory=ProbeSettings)
    environment_variables: dict[str, str] = field(default_factory=dict)

    _nested: ClassVar[dict[str, type[_Spec]]] = {
        "model": ModelRef,
        "resources": Resources,
        "request_settings": RequestSettings,
        "liveness_probe": ProbeSettings,
        "readiness_probe": ProbeSettings,
    }

    def __post_init__(self) -> None:
        if not DEPLOYMENT_NAME.match(self.name):
            raise ValueError(
                f"deployment name {self.name!r} must be 3-32 letters, digits or '-', start with a letter "
                "and not end with '-'"
            )
        if not 1 <= self.instance_count <= 100:
            raise ValueError(f"instance_count must be between 1 and 100, got {self.instance_count}")
        if not 1 <= self.worker_count <= 64:
            raise ValueError(f"worker_count must be between 1 and 64, got {self.worker_count}")


@dataclass(frozen=True)
class EndpointState(_Spec):
    name: str
    scoring_uri: str
    provisioning_state: str
    traffic: dict[str, int] = field(default_factory=dict)
    mirror_traffic: dict[str, int] = field(default_factory=dict)
    compute: str | None = None
    auth_mode: str = "key"
    description: str = ""
    tags: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class DeploymentState(_Spec):
    endpoint: str
    name: str
    provisioning_state: str
    model: str | None = None
    instance_count: int | None = None
    resources: Resources | None = None
    error: str | None = None
    enforcement: str | None = None
    #: cpu time and resident memory summed over the instances, where the platform reports them
    cpu_seconds: float | None = None
    memory_gb: float | None = None
    #: each instance's state (e.g. "ready", "starting"), where the platform reports instances one by one
    instance_states: list[str] = field(default_factory=list)

    _nested: ClassVar[dict[str, type[_Spec]]] = {"resources": Resources}

    @property
    def done(self) -> bool:
        return self.provisioning_state in TERMINAL_STATES

    @property
    def failed(self) -> bool:
        return self.provisioning_state in FAILURE_STATES


@dataclass(frozen=True, repr=False)
class EndpointKeys:
    """Secrets: repr hides them, and they have no to_dict so they cannot drift into XCom.

    ``refresh_at`` (seconds since the epoch) is when a key that expires — an Azure ML ``aml_token`` —
    should be asked for again; None for keys that last until they are regenerated.
    """

    primary_key: str
    secondary_key: str
    refresh_at: float | None = None

    def __repr__(self) -> str:
        return "EndpointKeys(primary_key=***, secondary_key=***)"


@dataclass(frozen=True)
class InvokeResult(_Spec):
    """One scoring answer: ``body`` is the parsed JSON when ``is_json`` (a JSON string answer is a ``str``
    then too), else the answer's text."""

    status_code: int
    body: Any
    deployment: str | None = None
    request_id: str | None = None
    elapsed_ms: float = 0.0
    is_json: bool = False

    @property
    def ok(self) -> bool:
        return 200 <= self.status_code < 300
