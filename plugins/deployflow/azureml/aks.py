"""One AKS cluster shared by several workspaces, and the instance types it offers.

Attaching is idempotent: a workspace where the compute already points at the same cluster is
skipped. Instance types are Kubernetes custom resources of the Azure ML extension; they are
rendered here as YAML for ``kubectl apply -f``, one per resource shape the profiler tries.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import yaml
from azure.ai.ml import MLClient
from azure.ai.ml.entities import IdentityConfiguration, KubernetesCompute

from deployflow.azureml.backend import AzureMLPlatform
from deployflow.azureml.calls import RetryPolicy, call_sdk, wait_for
from deployflow.azureml.quantities import format_cpu, format_memory, instance_type_name
from deployflow.platform.errors import PlatformError, PlatformNotFoundError
from deployflow.platform.specs import Resources

log = logging.getLogger(__name__)

INSTANCE_TYPE_API_VERSION = "amlarc.azureml.com/v1alpha1"
GPU_RESOURCE = "nvidia.com/gpu"
# an AKS cluster, or an Arc-enabled Kubernetes cluster
_CLUSTER_ID = re.compile(
    r"^/subscriptions/[^/]+/resourceGroups/[^/]+/providers/"
    r"(Microsoft\.ContainerService/managedClusters|Microsoft\.Kubernetes/connectedClusters)/[^/]+$",
    re.IGNORECASE,
)
_CHECK_ATTACH = (
    "that the Azure ML extension is installed on the cluster, the namespace exists, and the identity "
    "may attach computes to the workspace"
)


@dataclass(frozen=True)
class AttachReport:
    """Workspaces the cluster was attached to now, and those where it already was."""

    attached: list[str]
    already_attached: list[str]


def attach_shared_aks(
    targets: Iterable[MLClient | AzureMLPlatform],
    *,
    compute_name: str,
    resource_id: str,
    namespace: str = "default",
    identity: IdentityConfiguration | None = None,
    timeout_s: float = 900,
    retry: RetryPolicy | None = None,
) -> AttachReport:
    """Attach the cluster ``resource_id`` as ``compute_name`` in every workspace.

    Every workspace is checked before any is changed, so a name already taken by another
    compute stops the whole run rather than leaving it half done.
    """
    if not _CLUSTER_ID.match(resource_id):
        raise PlatformError(
            f"{resource_id!r} is not the resource id of an AKS or Arc Kubernetes cluster "
            "(/subscriptions/.../providers/Microsoft.ContainerService/managedClusters/<name>)"
        )
    policy = retry or RetryPolicy()
    clients = [t.ml_client if isinstance(t, AzureMLPlatform) else t for t in targets]
    attached: list[str] = []
    already_attached: list[str] = []
    to_attach: list[MLClient] = []
    for client in clients:
        workspace = str(client.workspace_name)
        existing = _find_compute(client, compute_name, policy)
        if existing is None:
            to_attach.append(client)
            continue
        _check_same_cluster(existing, workspace=workspace, resource_id=resource_id, namespace=namespace)
        already_attached.append(workspace)
        log.info("compute %s in workspace %s already points at the cluster; skipped", compute_name, workspace)
    for client in to_attach:
        workspace = str(client.workspace_name)
        compute = KubernetesCompute(name=compute_name, resource_id=resource_id, namespace=namespace, identity=identity)
        what = f"attach cluster as compute {compute_name} in workspace {workspace}"
        poller = call_sdk(
            lambda client=client, compute=compute: client.compute.begin_create_or_update(compute),
            what=what,
            check=_CHECK_ATTACH,
            policy=policy,
        )
        wait_for(poller, what=what, check=_CHECK_ATTACH, timeout_s=timeout_s)
        attached.append(workspace)
        log.info("attached compute %s in workspace %s (namespace %s)", compute_name, workspace, namespace)
    return AttachReport(attached=attached, already_attached=already_attached)


def instance_type_manifest(resources: Resources) -> dict[str, Any]:
    """The ``InstanceType`` resource for one shape: requests equal to limits, GPUs in limits only."""
    if resources.cpu is None or resources.memory_gb is None:
        raise ValueError(f"an instance type needs both cpu and memory_gb, got {resources.describe()}")
    cpu, memory = format_cpu(resources.cpu), format_memory(resources.memory_gb)
    limits: dict[str, str | int] = {"cpu": cpu, "memory": memory}
    if resources.gpu:
        limits[GPU_RESOURCE] = resources.gpu
    return {
        "apiVersion": INSTANCE_TYPE_API_VERSION,
        "kind": "InstanceType",
        "metadata": {"name": instance_type_name(resources)},
        "spec": {"resources": {"requests": {"cpu": cpu, "memory": memory}, "limits": limits}},
    }


def render_instance_types(configs: Iterable[Resources]) -> str:
    """YAML for ``kubectl apply``: one ``InstanceType``, or an ``InstanceTypeList`` for several.

    Shapes that name the same instance type are rendered once, in first-seen order.
    """
    manifests: dict[str, dict[str, Any]] = {}
    for resources in configs:
        manifest = instance_type_manifest(resources)
        manifests.setdefault(manifest["metadata"]["name"], manifest)
    if not manifests:
        raise ValueError("no resource configurations to render as instance types")
    if len(manifests) == 1:
        document = next(iter(manifests.values()))
    else:
        items = [{k: v for k, v in m.items() if k in ("metadata", "spec")} for m in manifests.values()]
        document = {"apiVersion": INSTANCE_TYPE_API_VERSION, "kind": "InstanceTypeList", "items": items}
    return yaml.safe_dump(document, sort_keys=False)


def _find_compute(client: MLClient, name: str, policy: RetryPolicy) -> object | None:
    try:
        return call_sdk(
            lambda: client.compute.get(name=name),
            what=f"get compute {name} in workspace {client.workspace_name}",
            check="the identity's role on the workspace",
            policy=policy,
        )
    except PlatformNotFoundError:
        return None


def _check_same_cluster(existing: object, *, workspace: str, resource_id: str, namespace: str) -> None:
    name = getattr(existing, "name", "?")
    if not isinstance(existing, KubernetesCompute):
        raise PlatformError(
            f"workspace {workspace} already has a compute {name} of type {getattr(existing, 'type', '?')}; "
            "choose another compute_name"
        )
    if str(existing.resource_id or "").lower() != resource_id.lower():
        raise PlatformError(
            f"compute {name} in workspace {workspace} is attached to another cluster "
            f"({existing.resource_id}); choose another compute_name, or detach it first"
        )
    if existing.namespace != namespace:
        raise PlatformError(
            f"compute {name} in workspace {workspace} uses namespace {existing.namespace}, not {namespace}; "
            "detach it first to change the namespace"
        )
