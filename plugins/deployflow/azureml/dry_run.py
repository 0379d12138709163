"""A dry run on Azure ML: the real backend and SDK build every request, a simulated workspace
answers it, and nothing leaves the machine.

Each request is logged and appended to ``requests.jsonl`` in the dry run's folder (method, URL
path, body with secrets masked, whether the body is valid against the REST specification). The
simulated workspace keeps its state in the same folder, so every task of a run, and the
triggers that wait for it, see what earlier tasks "created". Computes the workspace does not hold
are assumed to be attached Kubernetes clusters that define whatever instance type is asked for;
the report lists each assumption. Calls to a scoring URI (smoke tests, load, probes) are recorded
and not sent (``scoring_not_sent``): the operators then go on with the platform calls and say that
what the answers would have decided was not judged, or was assumed. A scoring call made some other
way is still recorded and skips its task, so nothing can reach a scoring URI.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn, TypeVar

from azure.ai.ml import MLClient
from azure.core.credentials import AccessToken, AccessTokenInfo

from deployflow.azureml.backend import AzureMLPlatform
from deployflow.azureml.calls import RetryPolicy
from deployflow.azureml.simulated import ACTION_SCHEMAS, BODY_SCHEMAS, Sent, SimulatedWorkspace, unsigned_token
from deployflow.platform.specs import InvokeResult
from deployflow.reports import reports_dir

log = logging.getLogger(__name__)
T = TypeVar("T")

REQUESTS_FILE = "requests.jsonl"
#: what the dry run could not know and assumed instead (a compute, a profile's choice, a gate's verdict)
ASSUMPTIONS_FILE = "assumptions.jsonl"
STATE_FILE = "workspace.json"
MASK = "***"
# names of fields and variables whose values are never written: keys, secrets, tokens, SAS signatures
_SECRET_NAME = re.compile(r"key|secret|password|token|credential|connection_?string|sas", re.IGNORECASE)
_SAS_SIGNATURE = re.compile(r"(sig=)[^&\s\"]+", re.IGNORECASE)
# where Airflow names the running task, in the task's environment
_TASK_CONTEXT = {"dag_id": "AIRFLOW_CTX_DAG_ID", "run_id": "AIRFLOW_CTX_DAG_RUN_ID", "task_id": "AIRFLOW_CTX_TASK_ID"}


def dry_run_folder(conn_id: str, configured: str | None = None) -> Path:
    """The connection's ``dry_run_dir``, else ``<reports dir>/dry-run/<conn id>``."""
    return Path(configured) if configured else reports_dir() / "dry-run" / re.sub(r"[^A-Za-z0-9._-]+", "_", conn_id)


def mask_secrets(value: Any, name: str = "") -> Any:
    """The value with every secret-looking field replaced by ``***`` and SAS signatures cut."""
    if isinstance(value, dict):
        # an environment variable's value is secret when its name says so
        if set(value) == {"name", "value"} and _SECRET_NAME.search(str(value["name"])):
            return {"name": value["name"], "value": MASK}
        return {k: mask_secrets(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [mask_secrets(v, name) for v in value]
    if isinstance(value, str):
        if name and _SECRET_NAME.search(name):
            return MASK
        return _SAS_SIGNATURE.sub(rf"\g<1>{MASK}", value)
    return value


class DryRunCredential:
    """Hands the SDK a placeholder token: a dry run signs in nowhere."""

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken(unsigned_token(scopes[0]), int(time.time()) + 3600)

    def get_token_info(self, *scopes: str, options: Any = None) -> AccessTokenInfo:
        return AccessTokenInfo(unsigned_token(scopes[0]), int(time.time()) + 3600)


class DryRunWorkspace(SimulatedWorkspace):
    """The simulated workspace of one connection, kept in ``folder``; every request is recorded there."""

    def __init__(self, folder: Path, *, subscription: str, resource_group: str, workspace: str) -> None:
        super().__init__(subscription=subscription, resource_group=resource_group, workspace=workspace, polls=0)
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        self._state_mtime: int | None = None

    @property
    def requests_file(self) -> Path:
        return self.folder / REQUESTS_FILE

    def send(self, request: Any, **kwargs: Any) -> Any:
        with self._locked():
            self._load()
            refused_before = len(self.refused)
            response = super().send(request, **kwargs)
            sent = self.sent[-1]
            errors = [e for s, found in self.refused[refused_before:] if s is sent for e in found]
            self._save()
            self._record(sent, errors)
        return response

    def record_not_sent(self, method: str, url: str, body: Any, why: str) -> None:
        """A request to the data plane (a scoring URI), written down and not sent."""
        entry = {
            "method": method,
            "url": url,
            "body": mask_secrets(body),
            "status": None,
            "spec": None,
            "valid": None,
            "errors": [],
            "sent": False,
            "note": why,
        }
        with self._locked():
            self._append(entry)
        log.info("dry run, not sent: %s %s %s (%s)", method, url, json.dumps(entry["body"]), why)

    def assume(self, line: str) -> None:
        """Write down something the dry run could not know and assumed (the report of what a real run
        might do differently)."""
        with self._locked():
            self._assumed(line)

    def assumptions(self) -> list[dict[str, Any]]:
        """Every assumption written so far, oldest first, with the task that made it."""
        path = self.folder / ASSUMPTIONS_FILE
        return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []

    def _assumed(self, line: str) -> None:
        log.warning("dry run assumes: %s", line)
        self._append({"assumed": line}, self.folder / ASSUMPTIONS_FILE)

    def assumed_computes(self) -> dict[str, list[str]]:
        """Computes the dry run assumed, with the instance types the run asked of each."""
        with self._locked():
            self._load()
        found: dict[str, list[str]] = {}
        for resource in self.state.resources.values():
            assumed = (resource.get("properties") or {}).get("description") == _ASSUMED
            if assumed:
                found[resource["name"]] = sorted(resource.get("askedInstanceTypes", []))
        return found

    # what the simulated workspace plays differently for a dry run
    def _get(self, full: str) -> dict[str, Any]:
        relative = full[len(self.workspace_id) :].strip("/").split("/")
        if len(relative) == 2 and relative[0] == "computes" and full.rstrip("/").lower() not in self.state.resources:
            self._assume_compute(relative[1])
        return super()._get(full)

    def _offers_instance_type(self, compute: str, instance_type: str) -> bool:
        stored = self.state.resources.get(f"{self.workspace_id}/computes/{compute}".lower())
        if stored is not None and stored["properties"].get("description") == _ASSUMED:
            asked = stored.setdefault("askedInstanceTypes", [])
            if instance_type not in asked:
                asked.append(instance_type)
            return True
        return super()._offers_instance_type(compute, instance_type)

    def _assume_compute(self, name: str) -> None:
        self._assumed(
            f"compute {name} is an attached Kubernetes cluster that defines every instance type asked of it "
            "(the real workspace is not read)"
        )
        cluster = (
            f"/subscriptions/{self.subscription}/resourceGroups/{self.resource_group}"
            f"/providers/Microsoft.ContainerService/managedClusters/{name}"
        )
        self.state.resources[f"{self.workspace_id}/computes/{name}".lower()] = {
            "id": f"{self.workspace_id}/computes/{name}",
            "name": name,
            "type": "Microsoft.MachineLearningServices/workspaces/computes",
            "location": self.location,
            "properties": {
                "computeType": "Kubernetes",
                "resourceId": cluster,
                "description": _ASSUMED,
                "provisioningState": "Succeeded",
                "properties": {"namespace": "default"},
            },
        }

    # the folder
    @contextmanager
    def _locked(self) -> Iterator[None]:
        with open(self.folder / ".lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _load(self) -> None:
        """Read the state another task or trigger wrote since this one last looked."""
        path = self.folder / STATE_FILE
        if not path.is_file() or path.stat().st_mtime_ns == self._state_mtime:
            return
        saved = json.loads(path.read_text())
        self.state.resources = saved["resources"]
        self.state.keys = saved["keys"]
        self.state.logs = saved["logs"]
        self._state_mtime = path.stat().st_mtime_ns

    def _save(self) -> None:
        path = self.folder / STATE_FILE
        partial = path.with_name(f".{path.name}.partial")
        state = {"resources": self.state.resources, "keys": self.state.keys, "logs": self.state.logs}
        partial.write_text(json.dumps(state))
        partial.replace(path)
        self._state_mtime = path.stat().st_mtime_ns

    def _record(self, sent: Sent, errors: list[str]) -> None:
        definition = self.definition_for(sent)
        body = mask_secrets(sent.body) if sent.body is not None else ({"bytes": sent.size} if sent.size else None)
        entry = {
            "method": sent.method,
            "url": f"https://{sent.host}{sent.path}",
            "api_version": sent.query.get("api-version"),
            "body": body,
            "status": sent.status,
            "spec": definition,
            "valid": not errors if definition else None,
            "errors": errors,
            "sent": False,
        }
        self._append(entry)
        check = f"valid {definition}" if definition and not errors else (f"INVALID {definition}" if errors else "")
        log.info(
            "dry run, not sent: %s %s%s %s -> %d %s",
            sent.method,
            sent.host,
            sent.path,
            json.dumps(body) if body is not None else "",
            sent.status,
            check,
        )
        for error in errors:
            log.error("dry run: the service would refuse %s %s: %s", sent.method, sent.path, error)

    def _append(self, entry: dict[str, Any], path: Path | None = None) -> None:
        context = {name: os.environ[variable] for name, variable in _TASK_CONTEXT.items() if variable in os.environ}
        with (path or self.requests_file).open("a") as out:
            out.write(json.dumps({**context, **entry}) + "\n")

    def definition_for(self, sent: Sent) -> str | None:
        """The specification's definition the request's body is checked against, if it has one."""
        if sent.host != "management.azure.com" or not sent.path.lower().startswith(self.workspace_id.lower()):
            return None
        parts = sent.path[len(self.workspace_id) :].strip("/").split("/")
        if sent.method == "PUT" and len(parts) % 2 == 0:
            return BODY_SCHEMAS.get(tuple(parts[0::2]))
        if sent.method == "POST":
            return ACTION_SCHEMAS.get(parts[-1])
        return None


_ASSUMED = "assumed by the dry run: the real workspace was not read"


class DryRunAzureMLPlatform(AzureMLPlatform):
    """The Azure ML backend over a dry run's simulated workspace: control-plane calls are answered
    there; scoring requests are recorded by ``scoring_not_sent``, and any other call to a scoring URI
    is recorded and skips the task."""

    dry_run = True

    def __init__(self, ml_client: MLClient, workspace: DryRunWorkspace, *, retry: RetryPolicy | None = None) -> None:
        super().__init__(ml_client, retry=retry or RetryPolicy(attempts=1))
        self.workspace = workspace

    def __repr__(self) -> str:
        return (
            f"DryRunAzureMLPlatform(workspace={self.ml_client.workspace_name!r}, folder={str(self.workspace.folder)!r})"
        )

    def _call(self, action: Callable[[], T], *, what: str, check: str) -> T:
        with _blob_uploads_through(self.workspace):
            return super()._call(action, what=what, check=check)

    def scoring_headers(self, endpoint: str) -> dict[str, str]:
        self._not_sent(endpoint, None, deployment=None, what="load on the scoring URI")

    def invoke(
        self, endpoint: str, payload: Any, *, deployment: str | None = None, timeout_s: float = 30
    ) -> InvokeResult:
        self._not_sent(endpoint, payload, deployment=deployment, what="a scoring request")

    def scoring_not_sent(self, endpoint: str, bodies: list[Any], *, deployment: str | None, what: str) -> str:
        """Read the endpoint and its keys as a real client would (recorded), then record each body
        to the scoring URI as not sent."""
        uri = self.get_endpoint(endpoint).scoring_uri or f"(endpoint {endpoint} has no scoring URI)"
        self.get_keys(endpoint)  # the key read a real client makes first; the simulated keys are not written
        pinned = f", pinned to deployment {deployment}" if deployment else ""
        for payload in bodies:
            body = payload.decode() if isinstance(payload, bytes) else payload
            self.workspace.record_not_sent("POST", uri, body, f"dry run: {what}{pinned}")
        return (
            f"dry run: not sent: {what} to endpoint {endpoint}{pinned} "
            f"({len(bodies)} request(s) recorded in {self.workspace.requests_file})"
        )

    def assume(self, line: str) -> None:
        """Put what the run assumed instead of measuring or judging into the dry run's report."""
        self.workspace.assume(line)

    def live_metrics(self) -> None:
        """No metrics are read: Azure Monitor and Prometheus are outside the simulated workspace."""
        return None

    def _not_sent(self, endpoint: str, payload: Any, *, deployment: str | None, what: str) -> NoReturn:
        from airflow.sdk.exceptions import AirflowSkipException  # the dry run stops the task, not the backend

        uri = self.get_endpoint(endpoint).scoring_uri or f"(endpoint {endpoint} has no scoring URI)"
        body = payload.decode() if isinstance(payload, bytes) else payload
        pinned = f", pinned to deployment {deployment}" if deployment else ""
        self.workspace.record_not_sent("POST", uri, body, f"dry run: {what}{pinned}")
        raise AirflowSkipException(
            f"dry run: not sent: {what} to endpoint {endpoint}{pinned} "
            f"(the request is in {self.workspace.requests_file})"
        )


def dry_run_platform(
    folder: Path, *, subscription_id: str, resource_group: str, workspace_name: str
) -> DryRunAzureMLPlatform:
    """The platform an ``azure_ml`` connection gives with ``dry_run`` on."""
    simulated = DryRunWorkspace(
        folder, subscription=subscription_id, resource_group=resource_group, workspace=workspace_name
    )
    client = MLClient(
        DryRunCredential(),
        subscription_id,
        resource_group,
        workspace_name,
        transport=simulated,
        enable_telemetry=False,
        show_progress=False,
    )
    log.info("dry run: requests to workspace %s are answered and recorded in %s", workspace_name, folder)
    return DryRunAzureMLPlatform(client, simulated)


@contextmanager
def _blob_uploads_through(workspace: DryRunWorkspace) -> Iterator[None]:
    """The SDK builds its own blob clients for uploads, with no transport of ours: point them at the
    simulated workspace while one call runs."""
    import azure.ai.ml._artifacts._blob_storage_helper as blob_helper

    from deployflow.azureml.simulated import blob_clients_through

    replaced = {name: getattr(blob_helper, name) for name in ("BlobServiceClient", "ContainerClient")}
    for name, client in blob_clients_through(workspace).items():
        setattr(blob_helper, name, client)
    try:
        yield
    finally:
        for name, client in replaced.items():
            setattr(blob_helper, name, client)
