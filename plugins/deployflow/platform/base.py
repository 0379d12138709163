"""The contract: what the flows need from an ML platform, and nothing else."""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

from deployflow.platform.batch import BatchJobSpec, BatchJobState
from deployflow.platform.errors import PlatformError
from deployflow.platform.specs import (
    DeploymentSpec,
    DeploymentState,
    EndpointKeys,
    EndpointSpec,
    EndpointState,
    InvokeResult,
    ModelRef,
)

#: what a dry run says of a check, gate or measurement whose answers it did not send for
NOT_JUDGED = "not judged (dry run)"


class MLPlatform(ABC):
    """Azure ML or the local runtime, behind the same calls.

    Long operations are split into ``begin_*`` (returns once the platform accepted the
    request) and ``get_*`` (reads the state), so a trigger can do the waiting.
    """

    #: short name for logs: "azureml" or "local"
    kind: str
    #: a dry run's platform: control-plane calls are answered by a simulated workspace and recorded,
    #: the scoring URI is never called (see ``scoring_not_sent``)
    dry_run: bool = False

    # models
    @abstractmethod
    def register_model(
        self, name: str, package_path: str, *, version: str | None = None, description: str = ""
    ) -> ModelRef:
        """Register the package's model/ folder as a model version; returns what was registered."""

    @abstractmethod
    def get_model(self, name: str, version: str | None = None) -> ModelRef:
        """A registered model version, the latest when ``version`` is None; PlatformNotFoundError if none."""

    @abstractmethod
    def model_package(self, model: ModelRef, into: Path) -> Path:
        """A local folder holding the registered version's files (downloaded under ``into`` if need be),
        for validation and for the samples the smoke test and the probes replay."""

    # endpoints
    @abstractmethod
    def create_or_update_endpoint(self, spec: EndpointSpec, *, timeout_s: float = 900) -> EndpointState:
        """Create the endpoint or update its description/tags; traffic is left as it is."""

    @abstractmethod
    def get_endpoint(self, name: str) -> EndpointState: ...

    @abstractmethod
    def list_endpoints(self) -> list[EndpointState]:
        """Every online endpoint of the workspace (or runtime), by name."""

    @abstractmethod
    def delete_endpoint(self, name: str, *, timeout_s: float = 900) -> bool:
        """Delete the endpoint and its deployments; False when there was none."""

    @abstractmethod
    def set_traffic(
        self,
        endpoint: str,
        *,
        traffic: dict[str, int] | None = None,
        mirror_traffic: dict[str, int] | None = None,
        timeout_s: float = 900,
    ) -> EndpointState:
        """Set live traffic (percent per deployment, summing to 100) and/or mirror traffic
        (at most one deployment, at most 50 %); None leaves that part as it is."""

    @abstractmethod
    def get_keys(self, endpoint: str) -> EndpointKeys: ...

    # deployments
    @abstractmethod
    def begin_create_or_update_deployment(self, spec: DeploymentSpec) -> DeploymentState:
        """Start creating (or updating) the deployment with no traffic; returns at once."""

    @abstractmethod
    def get_deployment(self, endpoint: str, name: str) -> DeploymentState: ...

    @abstractmethod
    def list_deployments(self, endpoint: str) -> list[DeploymentState]: ...

    @abstractmethod
    def delete_deployment(self, endpoint: str, name: str, *, timeout_s: float = 900) -> bool:
        """Delete the deployment; False when there was none. It must carry no live traffic."""

    @abstractmethod
    def get_deployment_logs(self, endpoint: str, name: str, *, lines: int = 100) -> str: ...

    # data plane
    @abstractmethod
    def invoke(
        self,
        endpoint: str,
        payload: Any,
        *,
        deployment: str | None = None,
        timeout_s: float = 30,
    ) -> InvokeResult:
        """POST a JSON payload to the endpoint's scoring URI, pinned to ``deployment`` if given."""

    @abstractmethod
    def scoring_headers(self, endpoint: str) -> dict[str, str]:
        """Headers that authorise a request to the scoring URI (for the load generator).
        They hold a secret: never log or return them through XCom."""

    def scoring_headers_until(self, endpoint: str) -> tuple[dict[str, str], float | None]:
        """``scoring_headers``, and until when (seconds since the epoch) they may be used: a load that
        runs past it asks again (an Azure ML aml_token expires); None when they do not expire."""
        return self.scoring_headers(endpoint), None

    def scoring_not_sent(self, endpoint: str, bodies: list[Any], *, deployment: str | None, what: str) -> str:
        """A dry run's stand-in for scoring: the requests ``what`` would send to the endpoint (pinned to
        ``deployment``) are recorded, not sent; returns the line saying so. Only a dry run has it."""
        raise PlatformError(f"the {self.kind} platform sends its scoring requests; only a dry run records them")

    def assume(self, line: str) -> None:
        """A dry run's record of what it assumed where a real run measures or judges. Only a dry run has it."""
        raise PlatformError(f"the {self.kind} platform measures and judges; only a dry run assumes")

    # batch scoring
    def submit_batch_job(self, spec: BatchJobSpec, *, storage_connection_string: str | None = None) -> BatchJobState:
        """Submit a batch-scoring job; returns at once with its id. ``storage_connection_string``
        (a secret, resolved by the caller from ``spec.input.storage_conn_id``) lets a platform that
        reads blobs itself reach the storage account; Azure ML reads through its datastores."""
        raise PlatformError(f"the {self.kind} platform does not run batch jobs yet")

    def get_batch_job(self, job_id: str) -> BatchJobState:
        raise PlatformError(f"the {self.kind} platform does not run batch jobs yet")

    def cancel_batch_job(self, job_id: str) -> BatchJobState:
        raise PlatformError(f"the {self.kind} platform does not run batch jobs yet")

    def wait_for_deployment(
        self, endpoint: str, name: str, *, timeout_s: float = 1800, poll_s: float = 2.0
    ) -> DeploymentState:
        """Block until the deployment reaches a terminal state, or raise at the deadline."""
        deadline = time.monotonic() + timeout_s
        while True:
            state = self.get_deployment(endpoint, name)
            if state.done:
                return state
            if time.monotonic() >= deadline:
                raise PlatformError(
                    f"deployment {endpoint}/{name} is still {state.provisioning_state} "
                    f"after {timeout_s:g} s; "
                    "check its logs, or raise the timeout"
                )
            time.sleep(min(poll_s, max(deadline - time.monotonic(), 0.05)))

    def shadow_disagreements(self, endpoint: str, name: str) -> list[dict[str, str]]:
        """The last mirrored answers of the deployment that differed from the live ones, oldest first, as
        the platform's router kept them; empty where mirrored answers are dropped (Azure ML)."""
        return []

    def live_metrics(self) -> Any:
        """Where rollout gates read what users' traffic got: a ``rollout.live.LiveMetrics`` (not imported:
        the rollout sits above the platform), or None for the probe only."""
        return None

    def close(self) -> None:
        """Release HTTP clients; the platform is unusable afterwards."""
        return None
