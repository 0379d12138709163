"""A simulated Azure ML workspace behind azure-core's transport: the real MLClient, its operations,
pollers and (de)serialisers run unchanged; only the bytes on the wire are answered here.

Answers follow the REST specification's examples for Microsoft.MachineLearningServices:
resource envelopes with ``id``/``name``/``type``/``systemData``, long-running PUTs answered
``201`` with an ``Azure-AsyncOperation`` header, DELETEs ``202`` with a ``Location`` header,
and operation status documents that stay ``InProgress`` for a few polls. Every request body
is checked against the specification's schema (``deployflow.azureml.spec``); a body the service
would refuse is answered ``400`` like the service does, and recorded in ``refused``.

Blob uploads of code and model folders reach the same transport through azure-storage-blob.
The contract tests play a workspace with it; the dry run (``dry_run``) answers a run with it.
"""

from __future__ import annotations

import base64
import io
import json
import re
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import requests
import urllib3
from azure.core.pipeline.transport import HttpTransport
from azure.core.pipeline.transport._requests_basic import RequestsTransportResponse
from azure.core.rest import HttpRequest as RestHttpRequest
from azure.core.rest._requests_basic import RestRequestsTransportResponse
from requests.adapters import HTTPAdapter

from deployflow.azureml.spec import SpecSchema

ARM_HOST = "management.azure.com"
PROVIDER = "Microsoft.MachineLearningServices"
API_VERSION = "2025-12-01"


def unsigned_token(scope: str) -> str:
    """A token shaped as an unsigned JWT: the SDK reads its claims (tenant, object id, and the
    audience of the Azure ML token it forwards), nothing checks a signature."""
    claims = {
        "aud": scope.removesuffix("/.default"),
        "oid": str(uuid.UUID(int=7)),
        "tid": str(uuid.UUID(int=8)),
        "exp": 4102444800,
    }
    parts = ({"alg": "none", "typ": "JWT"}, claims)
    encoded = [base64.urlsafe_b64encode(json.dumps(p).encode()).decode().rstrip("=") for p in parts]
    return ".".join([*encoded, "bm90LXNpZ25lZA"])


_RESOURCE_TYPES = {
    "onlineEndpoints": f"{PROVIDER}/workspaces/onlineEndpoints",
    "deployments": f"{PROVIDER}/workspaces/onlineEndpoints/deployments",
    "models": f"{PROVIDER}/workspaces/models",
    "codes": f"{PROVIDER}/workspaces/codes",
    "environments": f"{PROVIDER}/workspaces/environments",
    "components": f"{PROVIDER}/workspaces/components",
    "versions": f"{PROVIDER}/workspaces/versions",
    "computes": f"{PROVIDER}/workspaces/computes",
    "jobs": f"{PROVIDER}/workspaces/jobs",
}
# which definition of the specification a PUT body must satisfy, by the collection it goes in
BODY_SCHEMAS = {
    ("onlineEndpoints",): "OnlineEndpointTrackedResource",
    ("onlineEndpoints", "deployments"): "OnlineDeploymentTrackedResource",
    ("models",): "ModelContainerResource",
    ("models", "versions"): "ModelVersionResource",
    ("codes",): "CodeContainerResource",
    ("codes", "versions"): "CodeVersionResource",
    ("environments",): "EnvironmentContainerResource",
    ("environments", "versions"): "EnvironmentVersionResource",
    ("components",): "ComponentContainerResource",
    ("components", "versions"): "ComponentVersionResource",
    ("computes",): "ComputeResource",
    ("jobs",): "JobBaseResource",
}
# POST actions whose body the specification defines
ACTION_SCHEMAS = {"getLogs": "DeploymentLogsRequest", "startPendingUpload": "PendingUploadRequestDto"}


# Where the SDK itself strays from the schema and the service is known to accept it: the
# code asset's hash_version property is sent as a number in a string-to-string map.
SDK_DEVIATIONS = {("CodeVersionResource", "$.properties.properties.hash_version: expected string")}

# VM sizes as the region's vmSizes list gives them (name: family, vCPUs, memory GB), for those
# deployflow's defaults and tests name; the family names key the vCPU quota in the usages list.
VM_SIZES = {
    "Standard_DS1_v2": ("standardDSv2Family", 1, 3.5),
    "Standard_DS2_v2": ("standardDSv2Family", 2, 7.0),
    "Standard_DS3_v2": ("standardDSv2Family", 4, 14.0),
    "Standard_DS4_v2": ("standardDSv2Family", 8, 28.0),
    "Standard_F2s_v2": ("standardFSv2Family", 2, 4.0),
    "Standard_F4s_v2": ("standardFSv2Family", 4, 8.0),
    "Standard_E2s_v3": ("standardESv3Family", 2, 16.0),
}
#: the simulated subscription's dedicated vCPU limit per VM family in the region
DEFAULT_FAMILY_LIMIT = 24


@dataclass
class Sent:
    """One request as the service saw it: what the dry-run log and the tests read."""

    method: str
    host: str
    path: str
    query: dict[str, str]
    body: Any
    status: int = 0
    #: bytes in the request's body (a blob upload's is not JSON)
    size: int = 0


@dataclass
class Operation:
    """A long-running operation: ``polls`` status reads stay InProgress, then it ends."""

    resource: str
    polls: int
    status: str = "InProgress"
    error: dict[str, Any] | None = None
    on_done: Callable[[], None] | None = None


@dataclass
class Workspace:
    """What the workspace holds, by lower-cased ARM path of each resource."""

    resources: dict[str, dict[str, Any]] = field(default_factory=dict)
    blobs: dict[str, bytes] = field(default_factory=dict)
    blob_metadata: dict[str, dict[str, str]] = field(default_factory=dict)
    operations: dict[str, Operation] = field(default_factory=dict)
    logs: dict[str, str] = field(default_factory=dict)
    keys: dict[str, dict[str, str]] = field(default_factory=dict)
    #: dedicated vCPU limit per VM family (absent: DEFAULT_FAMILY_LIMIT)
    family_limits: dict[str, int] = field(default_factory=dict)


class ServiceAnswer(Exception):
    """Raised by a handler to answer with an ARM error document."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class SimulatedWorkspace(HttpTransport):
    """The ARM and blob endpoints of one workspace, answering from memory.

    ``polls`` is how many status reads a long-running operation stays InProgress; with 0 a
    resource is final as soon as it is written (nothing is provisioned, so nothing waits).
    """

    def __init__(
        self,
        *,
        subscription: str,
        resource_group: str,
        workspace: str,
        location: str = "westeurope",
        polls: int = 2,
        schema: SpecSchema | None = None,
    ) -> None:
        self.subscription, self.resource_group, self.workspace, self.location = (
            subscription,
            resource_group,
            workspace,
            location,
        )
        self.workspace_id = (
            f"/subscriptions/{subscription}/resourceGroups/{resource_group}/providers/{PROVIDER}/workspaces/{workspace}"
        )
        self.storage_account = re.sub(r"[^a-z0-9]", "", workspace.lower())[:16] + "storage"
        self.storage_account_id = (
            f"/subscriptions/{subscription}/resourceGroups/{resource_group}/providers/Microsoft.Storage/"
            f"storageAccounts/{self.storage_account}"
        )
        self.blob_host = f"{self.storage_account}.blob.core.windows.net"
        self.blob_container = "azureml-blobstore-0f1e2d3c"
        self.state = Workspace()
        self.polls = polls
        # how long an aml_token lasts; the service says to refresh it halfway
        self.token_lifetime_s = 3600
        self.schema = schema or SpecSchema.load()
        self.sent: list[Sent] = []
        self.refused: list[tuple[Sent, list[str]]] = []
        self.unhandled: list[Sent] = []
        self._add_workspace_defaults()

    # the HttpTransport contract
    def __enter__(self) -> SimulatedWorkspace:
        return self

    def __exit__(self, *args: object) -> None:
        return None

    def open(self) -> None:
        return None

    def close(self) -> None:
        return None

    def send(self, request: Any, **kwargs: Any) -> Any:
        url = urlsplit(request.url)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        sent = Sent(request.method, url.netloc.lower(), url.path, query, _json_body(request))
        self.sent.append(sent)
        raw_body = _raw_body(request)
        sent.size = len(raw_body)
        try:
            if url.netloc.lower() == ARM_HOST:
                self._authorise(request)
                status, headers, body = self._arm(sent)
            elif url.netloc.lower() == self.blob_host:
                status, headers, body = self._blob(sent, request, raw_body)
            else:
                raise ServiceAnswer(404, "HostNotFound", f"no such host {url.netloc}")
        except ServiceAnswer as e:
            status, headers, body = e.status, {}, {"error": {"code": e.code, "message": e.message}}
            if e.code == "NoRoute":
                self.unhandled.append(sent)
        sent.status = status
        return _response(request, status, headers, body, stream=kwargs.get("stream", False))

    # what tests read
    def requests_to(self, method: str, pattern: str) -> list[Sent]:
        """The requests with this method whose path matches the regular expression."""
        return [s for s in self.sent if s.method == method and re.search(pattern, s.path)]

    def resource(self, relative: str) -> dict[str, Any] | None:
        """A stored resource by its path under the workspace, e.g. ``onlineEndpoints/ep``."""
        return self.state.resources.get(f"{self.workspace_id}/{relative}".lower())

    def put_resource(self, relative: str, body: dict[str, Any]) -> dict[str, Any]:
        """Seed a resource as if it had been created earlier (tests' "given")."""
        return self._store(f"{self.workspace_id}/{relative}", body, state="Succeeded")

    def define_instance_types(self, compute: str, manifests: list[dict[str, Any]]) -> None:
        """What ``kubectl apply`` of InstanceType manifests does: the compute lists them afterwards."""
        stored = self._get(f"{self.workspace_id}/computes/{compute}")
        listed = stored["properties"].setdefault("properties", {}).setdefault("instanceTypes", {})
        for manifest in manifests:
            resources = manifest["spec"]["resources"]
            listed[manifest["metadata"]["name"]] = {"resources": resources}

    def instance_types_of(self, compute: str) -> list[str]:
        stored = self.state.resources.get(f"{self.workspace_id}/computes/{compute}".lower(), {})
        return sorted(((stored.get("properties") or {}).get("properties") or {}).get("instanceTypes") or {})

    # what a subclass plays differently
    def _authorise(self, request: Any) -> None:
        """Accept the request's credential (the contract tests check the bearer token here)."""

    def _deployment_error(self, name: str) -> dict[str, Any] | None:
        """The error a deployment's provisioning ends with; None: it comes up."""
        return None

    def _offers_instance_type(self, compute: str, instance_type: str) -> bool:
        return instance_type in self.instance_types_of(compute)

    # ARM

    def _arm(self, sent: Sent) -> tuple[int, dict[str, str], Any]:
        path = sent.path.rstrip("/")
        if "/mfeOperationsStatus/" in path:
            return self._operation_status(path.rsplit("/", 1)[-1])
        if "/mfeOperationResults/" in path:
            return self._operation_result(path.rsplit("/", 1)[-1])
        region = f"/subscriptions/{self.subscription}/providers/{PROVIDER}/locations/{self.location}/".lower()
        if sent.method == "GET" and path.lower() == region + "usages":
            return 200, {}, {"value": self._usages()}
        if sent.method == "GET" and path.lower() == region + "vmsizes":
            return 200, {}, {"value": [_vm_size(name) for name in VM_SIZES]}
        if not path.lower().startswith(self.workspace_id.lower()):
            raise ServiceAnswer(404, "ResourceNotFound", f"workspace not found for {path}")
        relative = path[len(self.workspace_id) :].strip("/")
        parts = relative.split("/") if relative else []
        if not parts:
            if sent.method != "GET":
                raise ServiceAnswer(405, "NoRoute", f"{sent.method} on the workspace")
            return 200, {}, self._workspace()
        action = self._action(sent, parts)
        if action is not None:
            return action
        kinds, names = parts[0::2], parts[1::2]
        self._check_names(kinds, names, creating=sent.method == "PUT")
        full = f"{self.workspace_id}/{relative}"
        if len(kinds) == len(names):  # one resource
            if sent.method == "GET":
                return 200, {}, self._get(full)
            if sent.method == "PUT":
                return self._put(tuple(kinds), full, sent.body)
            if sent.method == "DELETE":
                return self._delete(full)
            if sent.method == "PATCH":
                return self._patch(full, sent.body)
        elif sent.method == "GET":  # a collection
            return 200, {}, {"value": self._children(full, kinds[-1], sent.query)}
        raise ServiceAnswer(405, "NoRoute", f"{sent.method} {relative}")

    def _action(self, sent: Sent, parts: list[str]) -> tuple[int, dict[str, str], Any] | None:
        tail = parts[-1]
        parent = f"{self.workspace_id}/{'/'.join(parts[:-1])}"
        if sent.method == "POST" and tail == "listKeys" and parts[0] == "onlineEndpoints":
            self._get(parent)
            return 200, {}, self.state.keys.setdefault(parent.lower(), _new_keys())
        if sent.method == "POST" and tail == "token" and parts[0] == "onlineEndpoints":
            self._get(parent)
            return (
                200,
                {},
                {
                    "accessToken": "aml-token-" + uuid.uuid4().hex,
                    "tokenType": "Bearer",
                    "expiryTimeUtc": int(time.time()) + self.token_lifetime_s,
                    "refreshAfterTimeUtc": int(time.time()) + self.token_lifetime_s // 2,
                },
            )
        if sent.method == "POST" and tail == "getLogs":
            self._validate(ACTION_SCHEMAS["getLogs"], sent)
            self._get(parent)
            tail_lines = (sent.body or {}).get("tail")
            lines = self.state.logs.get(parent.lower(), "").splitlines()
            if tail_lines:
                lines = lines[-int(tail_lines) :]
            return 200, {}, {"content": "\n".join(lines)}
        if sent.method == "POST" and tail == "cancel" and parts[0] == "jobs":
            job = self._get(parent)
            job["properties"]["status"] = "CancelRequested"
            return 202, {"Location": self._new_operation(parent, on_done=lambda: _set_status(job, "Canceled"))[1]}, None
        if sent.method == "POST" and tail == "listSecrets" and parts[0] == "datastores":
            self._get(parent)
            return 200, {}, {"secretsType": "Sas", "sasToken": "sv=2024-08-04&sig=not-a-real-signature"}
        if sent.method == "GET" and parts == ["datastores"] and sent.query.get("isDefault") == "true":
            return 200, {}, {"value": [self._get(f"{self.workspace_id}/datastores/workspaceblobstore")]}
        if sent.method == "POST" and tail == "startPendingUpload" and parts[0] == "codes":
            self._validate(ACTION_SCHEMAS["startPendingUpload"], sent)
            blob_uri = f"https://{self.blob_host}/{self.blob_container}/LocalUpload/{uuid.uuid4().hex}"
            return (
                200,
                {},
                {
                    "pendingUploadId": uuid.uuid4().hex,
                    "pendingUploadType": "TemporaryBlobReference",
                    "blobReferenceForConsumption": {
                        "blobUri": blob_uri,
                        "storageAccountArmId": self.storage_account_id,
                        "credential": {
                            "credentialType": "SAS",
                            "sasUri": f"{blob_uri}?sv=2024-08-04&sr=c&sig=not-a-real-signature",
                        },
                    },
                },
            )
        if sent.method == "GET" and tail == "skus" and "deployments" in parts:
            return 200, {}, {"value": []}
        return None

    def _check_names(self, kinds: list[str], names: list[str], *, creating: bool) -> None:
        for kind, name in zip(kinds, names, strict=False):
            for pattern in (self.schema.name_pattern(kind), self.schema.service_name_rule(kind) if creating else None):
                if pattern and not re.match(pattern, name):
                    raise ServiceAnswer(
                        400, "ValidationError", f"the name {name!r} of a {kind} resource does not match {pattern}"
                    )

    def _put(self, kinds: tuple[str, ...], full: str, body: Any) -> tuple[int, dict[str, str], Any]:
        definition = BODY_SCHEMAS.get(kinds)
        if definition is None:
            raise ServiceAnswer(405, "NoRoute", f"PUT of {'/'.join(kinds)}")
        errors = [
            e
            for e in self.schema.validate(definition, body)
            if not any(definition == d and e.startswith(prefix) for d, prefix in SDK_DEVIATIONS)
        ]
        if errors:
            self.refused.append((self.sent[-1], errors))
            raise ServiceAnswer(400, "UserError", "; ".join(errors))
        self._check_put(kinds, full, body)
        existed = full.lower() in self.state.resources
        long_running = kinds[0] in ("onlineEndpoints", "computes") or kinds == ("onlineEndpoints", "deployments")
        if not long_running:
            stored = self._store(full, body, state="Succeeded")
            if kinds == ("jobs",):
                stored["properties"]["status"] = "NotStarted"
            return (200 if existed else 201), {}, stored
        error = None
        if kinds == ("onlineEndpoints", "deployments"):
            error = self._deployment_error(full.rsplit("/", 1)[-1])
            self.state.logs[full.lower()] = _container_log(full.rsplit("/", 1)[-1], failed=error is not None)
        if self.polls == 0:
            state = "Failed" if error else "Succeeded"
        else:
            state = "Updating" if existed else "Creating"
        stored = self._store(full, body, state=state)
        op_id, status_url = self._new_operation(full, error=error)
        headers = {"Azure-AsyncOperation": status_url, "x-ms-async-operation-timeout": "PT1H"}
        return (200 if existed else 201), headers, stored

    def _check_put(self, kinds: tuple[str, ...], full: str, body: dict[str, Any]) -> None:
        """What the service checks beyond the schema, where a default path would trip on it."""
        props = body.get("properties", {})
        if kinds == ("onlineEndpoints",):
            for share_kind in ("traffic", "mirrorTraffic"):
                for deployment in props.get(share_kind) or {}:
                    if f"{full}/deployments/{deployment}".lower() not in self.state.resources:
                        raise ServiceAnswer(
                            400, "BadArgument", f"{share_kind} names deployment {deployment}, which does not exist"
                        )
            compute = self._endpoint_compute(props)
            if props.get("mirrorTraffic") and any(props["mirrorTraffic"].values()) and compute:
                raise ServiceAnswer(400, "BadArgument", "mirror traffic is not supported on Kubernetes endpoints")
        if kinds == ("onlineEndpoints", "deployments"):
            endpoint = self._get(full.rsplit("/deployments/", 1)[0])
            compute = self._endpoint_compute(endpoint["properties"])
            want = "Kubernetes" if compute else "Managed"
            if props.get("endpointComputeType") != want:
                raise ServiceAnswer(
                    400, "BadArgument", f"a {props.get('endpointComputeType')} deployment on a {want} endpoint"
                )
            instance_type = props.get("instanceType")
            if compute and instance_type:
                if not self._offers_instance_type(compute, instance_type):
                    raise ServiceAnswer(
                        400,
                        "BadArgument",
                        f"instance type {instance_type} is not defined on compute {compute}; "
                        f"defined: {self.instance_types_of(compute)}",
                    )
            model = props.get("model")
            if model and model.lower() not in self.state.resources:
                raise ServiceAnswer(404, "ResourceNotFound", f"model {model} not found")

    def _endpoint_compute(self, props: dict[str, Any]) -> str | None:
        compute = props.get("compute")
        return compute.rstrip("/").rsplit("/", 1)[-1] if compute else None

    def _store(self, full: str, body: dict[str, Any], *, state: str) -> dict[str, Any]:
        kinds = full[len(self.workspace_id) :].strip("/").split("/")[0::2]
        name = full.rsplit("/", 1)[-1]
        stored = json.loads(json.dumps(body))
        stored["id"] = full
        stored["name"] = name
        stored["type"] = _RESOURCE_TYPES.get(kinds[-1], f"{PROVIDER}/workspaces/{kinds[-1]}")
        stored["systemData"] = {
            "createdAt": "2026-11-02T09:00:00Z",
            "createdBy": "deployflow@example.com",
            "createdByType": "User",
            "lastModifiedAt": "2026-11-02T09:00:00Z",
        }
        props = stored.setdefault("properties", {})
        if kinds[0] in ("onlineEndpoints", "computes"):
            stored.setdefault("location", self.location)
        if kinds == ["onlineEndpoints"]:
            props["provisioningState"] = state
            props["scoringUri"] = f"https://{name}.{self.location}.inference.ml.azure.com/score"
            props["swaggerUri"] = f"https://{name}.{self.location}.inference.ml.azure.com/swagger.json"
            props.setdefault("traffic", {})
            props.setdefault("mirrorTraffic", {})
            props.setdefault("properties", {})
            if props.get("compute"):
                props["compute"] = f"{self.workspace_id}/computes/{self._endpoint_compute(props)}"
        elif kinds == ["onlineEndpoints", "deployments"]:
            props["provisioningState"] = state
            stored.setdefault("location", self.location)
            if not props.get("scaleSettings"):
                # the spec: absent scale settings mean TargetUtilization on Kubernetes, Default on managed
                kubernetes = props.get("endpointComputeType") == "Kubernetes"
                props["scaleSettings"] = (
                    {
                        "scaleType": "TargetUtilization",
                        "minInstances": 1,
                        "maxInstances": 1,
                        "targetUtilizationPercentage": 70,
                        "pollingInterval": "PT1S",
                    }
                    if kubernetes
                    else {"scaleType": "Default"}
                )
        elif kinds == ["computes"]:
            props["provisioningState"] = state
            props.setdefault("createdOn", "2026-11-02T09:00:00Z")
        elif kinds[-1] == "versions":
            props["provisioningState"] = "Succeeded"
            if kinds[0] == "models":
                props.setdefault("flavors", {})
        self.state.resources[full.lower()] = stored
        return stored

    def _get(self, full: str) -> dict[str, Any]:
        found = self.state.resources.get(full.rstrip("/").lower())
        if found is None:
            raise ServiceAnswer(404, "ResourceNotFound", f"{full.rsplit('/', 1)[-1]} could not be found")
        return found

    def _children(self, collection: str, kind: str, query: dict[str, str]) -> list[dict[str, Any]]:
        prefix = collection.lower() + "/"
        return [r for k, r in self.state.resources.items() if k.startswith(prefix) and "/" not in k[len(prefix) :]]

    def _delete(self, full: str) -> tuple[int, dict[str, str], Any]:
        if full.lower() not in self.state.resources:
            return 204, {}, None

        def remove() -> None:
            for key in [k for k in self.state.resources if k == full.lower() or k.startswith(full.lower() + "/")]:
                del self.state.resources[key]

        self.state.resources[full.lower()].get("properties", {})["provisioningState"] = "Deleting"
        op_id, _ = self._new_operation(full, on_done=remove)
        result_url = f"https://{ARM_HOST}/subscriptions/{self.subscription}/providers/{PROVIDER}/locations/{self.location}/mfeOperationResults/{op_id}"
        return 202, {"Location": result_url, "retry-after-ms": "10"}, None

    def _patch(self, full: str, body: Any) -> tuple[int, dict[str, str], Any]:
        stored = self._get(full)
        stored.setdefault("tags", {}).update((body or {}).get("tags") or {})
        return 200, {}, stored

    # long-running operations
    def _new_operation(
        self, resource: str, *, error: dict[str, Any] | None = None, on_done: Callable[[], None] | None = None
    ) -> tuple[str, str]:
        op_id = uuid.uuid4().hex
        self.state.operations[op_id] = Operation(resource=resource, polls=self.polls, error=error, on_done=on_done)
        url = (
            f"https://{ARM_HOST}/subscriptions/{self.subscription}/providers/{PROVIDER}/locations/{self.location}"
            f"/mfeOperationsStatus/{op_id}?api-version={API_VERSION}"
        )
        return op_id, url

    def _advance(self, op_id: str) -> Operation:
        op = self.state.operations.get(op_id)
        if op is None:
            raise ServiceAnswer(404, "ResourceNotFound", f"operation {op_id} not found")
        if op.status == "InProgress":
            if op.polls > 0:
                op.polls -= 1
            else:
                op.status = "Failed" if op.error else "Succeeded"
                resource = self.state.resources.get(op.resource.lower())
                if resource is not None and "provisioningState" in resource.get("properties", {}):
                    resource["properties"]["provisioningState"] = op.status
                if op.on_done is not None:
                    op.on_done()
        return op

    def _operation_status(self, op_id: str) -> tuple[int, dict[str, str], Any]:
        op = self._advance(op_id)
        body: dict[str, Any] = {"id": op_id, "name": op_id, "status": op.status}
        if op.error:
            body["error"] = op.error if op.status == "Failed" else None
        body = {k: v for k, v in body.items() if v is not None}
        headers = {"retry-after-ms": "10"} if op.status == "InProgress" else {}
        return 200, headers, body

    def _operation_result(self, op_id: str) -> tuple[int, dict[str, str], Any]:
        op = self._advance(op_id)
        if op.status == "InProgress":
            return 202, {"Location": f"https://{ARM_HOST}/x/mfeOperationResults/{op_id}", "retry-after-ms": "10"}, None
        if op.status == "Failed":
            raise ServiceAnswer(400, op.error.get("code", "Failed") if op.error else "Failed", "operation failed")
        return 200, {}, None

    def settle(self) -> None:
        """Finish every running operation, as if the service had been left alone for a while."""
        for op_id in list(self.state.operations):
            while self.state.operations[op_id].status == "InProgress":
                self._advance(op_id)

    # the region's VM sizes and the subscription's vCPU quota per family
    def _usages(self) -> list[dict[str, Any]]:
        """Dedicated vCPUs per VM family: the limit, and what the managed deployments held here use."""
        used: dict[str, int] = {}
        for key, resource in self.state.resources.items():
            props = resource.get("properties") or {}
            if "/deployments/" not in key or props.get("endpointComputeType") != "Managed":
                continue
            family, vcpus, _ = VM_SIZES.get(props.get("instanceType") or "", ("", 0, 0.0))
            if family:
                used[family] = used.get(family, 0) + vcpus * int((resource.get("sku") or {}).get("capacity") or 1)
        families = sorted({family for family, _, _ in VM_SIZES.values()})
        return [
            {
                "id": f"/subscriptions/{self.subscription}/usages/{_quota_name(f).replace(' ', '_')}",
                "amlWorkspaceLocation": self.location,
                "type": f"{PROVIDER}/vmFamily/usages",
                "unit": "Count",
                "currentValue": used.get(f, 0),
                "limit": self.state.family_limits.get(f, DEFAULT_FAMILY_LIMIT),
                "name": {"value": _quota_name(f), "localizedValue": _quota_name(f)},
            }
            for f in families
        ]

    # the workspace and its default datastore
    def _workspace(self) -> dict[str, Any]:
        return {
            "id": self.workspace_id,
            "name": self.workspace,
            "type": f"{PROVIDER}/workspaces",
            "location": self.location,
            "identity": {
                "type": "SystemAssigned",
                "principalId": str(uuid.UUID(int=1)),
                "tenantId": str(uuid.UUID(int=2)),
            },
            "kind": "Default",
            "properties": {
                "friendlyName": self.workspace,
                "storageAccount": self.storage_account_id,
                "discoveryUrl": f"https://{self.location}.api.azureml.ms/discovery",
                "mlFlowTrackingUri": f"azureml://{self.location}.api.azureml.ms/mlflow/v1.0{self.workspace_id}",
                "workspaceId": str(uuid.UUID(int=3)),
                "provisioningState": "Succeeded",
                "publicNetworkAccess": "Enabled",
            },
        }

    def _add_workspace_defaults(self) -> None:
        self.state.resources[f"{self.workspace_id}/datastores/workspaceblobstore".lower()] = {
            "id": f"{self.workspace_id}/datastores/workspaceblobstore",
            "name": "workspaceblobstore",
            "type": f"{PROVIDER}/workspaces/datastores",
            "properties": {
                "datastoreType": "AzureBlob",
                "accountName": self.storage_account,
                "containerName": self.blob_container,
                "endpoint": "core.windows.net",
                "protocol": "https",
                "serviceDataAccessAuthIdentity": "WorkspaceSystemAssignedIdentity",
                "credentials": {"credentialsType": "AccountKey"},
                "isDefault": True,
                "description": "",
                "properties": {},
                "tags": {},
            },
        }

    # blob storage: just enough of the Blob service for the SDK's folder upload
    def _blob(self, sent: Sent, request: Any, raw: bytes) -> tuple[int, dict[str, str], Any]:
        path = sent.path.lstrip("/")
        comp = sent.query.get("comp")
        common = {"x-ms-version": "2025-05-05", "x-ms-request-id": str(uuid.uuid4())}
        if sent.method == "GET" and comp == "list":
            prefix = f"{path}/{sent.query.get('prefix', '')}"
            names = sorted(n.split("/", 1)[1] for n in self.state.blobs if n.startswith(prefix))
            items = "".join(
                f"<Blob><Name>{n}</Name><Properties><Content-Length>{len(self.state.blobs[f'{path}/{n}'])}"
                "</Content-Length><BlobType>BlockBlob</BlobType></Properties><Metadata /></Blob>"
                for n in names
            )
            xml = (
                f'<?xml version="1.0" encoding="utf-8"?><EnumerationResults ContainerName="{path}">'
                f"<Blobs>{items}</Blobs><NextMarker /></EnumerationResults>"
            )
            return 200, {**common, "Content-Type": "application/xml"}, xml.encode()
        if sent.method == "PUT" and comp == "metadata":
            if path not in self.state.blobs:
                raise _blob_not_found()
            self.state.blob_metadata[path] = {
                k[len("x-ms-meta-") :]: v for k, v in request.headers.items() if k.lower().startswith("x-ms-meta-")
            }
            return 200, {**common, "ETag": '"0x1"', "Last-Modified": "Mon, 02 Nov 2026 09:00:00 GMT"}, b""
        if sent.method == "PUT" and comp is None:
            self.state.blobs[path] = raw
            self.state.blob_metadata[path] = {
                k[len("x-ms-meta-") :]: v for k, v in request.headers.items() if k.lower().startswith("x-ms-meta-")
            }
            return 201, {**common, "ETag": '"0x1"', "Last-Modified": "Mon, 02 Nov 2026 09:00:00 GMT"}, b""
        if sent.method in ("HEAD", "GET") and comp is None:
            if path not in self.state.blobs:
                raise _blob_not_found()
            meta = {f"x-ms-meta-{k}": v for k, v in self.state.blob_metadata.get(path, {}).items()}
            headers = {
                **common,
                **meta,
                "Content-Length": str(len(self.state.blobs[path])),
                "x-ms-blob-type": "BlockBlob",
                "ETag": '"0x1"',
                "Last-Modified": "Mon, 02 Nov 2026 09:00:00 GMT",
            }
            content = self.state.blobs[path]
            ranged = re.fullmatch(
                r"bytes=(\d+)-(\d*)", request.headers.get("x-ms-range") or request.headers.get("Range") or ""
            )
            if sent.method == "GET" and ranged:  # the SDK downloads in ranges: 206 with the part asked for
                start = int(ranged.group(1))
                end = min(int(ranged.group(2) or len(content) - 1), len(content) - 1)
                if content and start >= len(content):
                    raise ServiceAnswer(416, "InvalidRange", "The range specified is invalid for the current size.")
                part = content[start : end + 1]
                headers["Content-Length"] = str(len(part))
                headers["Content-Range"] = f"bytes {start}-{max(start, end)}/{len(content)}"
                return 206, headers, part
            return 200, headers, (b"" if sent.method == "HEAD" else content)
        raise ServiceAnswer(405, "NoRoute", f"blob {sent.method} {path} comp={comp}")

    def _validate(self, definition: str, sent: Sent) -> None:
        errors = self.schema.validate(definition, sent.body)
        if errors:
            self.refused.append((sent, errors))
            raise ServiceAnswer(400, "UserError", "; ".join(errors))


def _quota_name(family: str) -> str:
    """The usages list's name of a family's quota: "Standard DSv2 Family Cluster Dedicated vCPUs"."""
    series = family.removeprefix("standard").removesuffix("Family")
    return f"Standard {series} Family Cluster Dedicated vCPUs"


def _vm_size(name: str) -> dict[str, Any]:
    family, vcpus, memory_gb = VM_SIZES[name]
    return {
        "name": name,
        "family": family,
        "vCPUs": vcpus,
        "gpus": 0,
        "osVhdSizeMB": 1047552,
        "maxResourceVolumeMB": vcpus * 7168,
        "memoryGB": memory_gb,
        "lowPriorityCapable": True,
        "premiumIO": True,
        "supportedComputeTypes": ["AmlCompute", "ComputeInstance"],
    }


def _blob_not_found() -> ServiceAnswer:
    return ServiceAnswer(404, "BlobNotFound", "The specified blob does not exist.")


def _set_status(job: dict[str, Any], status: str) -> None:
    job["properties"]["status"] = status


def _new_keys() -> dict[str, str]:
    return {"primaryKey": "pk-" + uuid.uuid4().hex, "secondaryKey": "sk-" + uuid.uuid4().hex}


def _container_log(deployment: str, *, failed: bool) -> str:
    lines = [
        "Azure ML Inferencing HTTP server v1.5.1",
        f"Server Settings: deployment {deployment}",
        "Initializing logger",
        "Starting up app insights client",
        "Found user script at /var/azureml-app/score.py",
        "run() is decorated with @input_schema / not decorated",
    ]
    if failed:
        lines += [
            "Invoking user's init function",
            "Traceback (most recent call last):",
            '  File "/var/azureml-app/score.py", line 4, in init',
            "ModuleNotFoundError: No module named 'sklearn'",
            "User's init function failed",
        ]
    else:
        lines += [
            "Invoking user's init function",
            "Users's init has completed successfully",
            "Listening at: http://0.0.0.0:31311",
        ]
    return "\n".join(lines) + "\n"


def _raw_body(request: Any) -> bytes:
    for attr in ("content", "body", "data"):
        value = getattr(request, attr, None)
        if value is None:
            continue
        if isinstance(value, str):
            return value.encode()
        if isinstance(value, (bytes, bytearray)):
            return bytes(value)
        if hasattr(value, "read"):
            return value.read()
        if isinstance(value, Iterator) or hasattr(value, "__iter__"):
            return b"".join(chunk if isinstance(chunk, bytes) else chunk.encode() for chunk in value)
    return b""


def _json_body(request: Any) -> Any:
    content_type = request.headers.get("Content-Type", "")
    if "json" not in content_type:
        return None
    for attr in ("content", "body"):
        value = getattr(request, attr, None)
        if isinstance(value, (str, bytes)) and value:
            return json.loads(value)
    return None


def _response(request: Any, status: int, headers: dict[str, str], body: Any, *, stream: bool) -> Any:
    if body is None:
        payload = b""
    elif isinstance(body, bytes):
        payload = body
    else:
        payload = json.dumps(body).encode()
        headers = {"Content-Type": "application/json; charset=utf-8", **headers}
    headers = {"x-ms-request-id": str(uuid.uuid4()), "Content-Length": str(len(payload)), **headers}
    raw = urllib3.HTTPResponse(
        body=io.BytesIO(payload),
        headers=headers,
        status=status,
        reason=_REASONS.get(status, ""),
        preload_content=False,
        enforce_content_length=False,  # a HEAD answer gives the blob's length with no body
    )
    prepared = requests.Request(request.method, request.url).prepare()
    response = HTTPAdapter().build_response(prepared, raw)
    if isinstance(request, RestHttpRequest):
        answer = RestRequestsTransportResponse(request=request, internal_response=response)
        if not stream:
            answer.read()
        return answer
    return RequestsTransportResponse(request, response)


_REASONS = {
    200: "OK",
    201: "Created",
    202: "Accepted",
    204: "No Content",
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    405: "Method Not Allowed",
}


def blob_clients_through(transport: HttpTransport) -> dict[str, type]:
    """azure-storage-blob clients that send through ``transport``: the SDK builds its own for
    uploads and passes no transport, so tests swap these in where it looks them up."""
    from azure.storage.blob import BlobServiceClient, ContainerClient

    class Service(BlobServiceClient):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, transport=transport, **kwargs)

    class Container(ContainerClient):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, transport=transport, **kwargs)

    return {"BlobServiceClient": Service, "ContainerClient": Container}
