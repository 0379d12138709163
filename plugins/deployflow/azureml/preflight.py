"""What a run needs from an Azure ML workspace, checked before the run creates anything.

A run fails late and leaves things behind when its credential, its workspace, a compute, an
instance type or the quota is missing. Preflight reads (never writes) what it can: a token, the
workspace, each compute and the InstanceTypes it lists, the endpoints' current deployments, and
the region's VM sizes and vCPU usage. Blue/green needs the new deployment next to the old one,
so capacity is judged with both at once. What Azure ML cannot tell (a Kubernetes cluster's free
capacity) is reported as unchecked, with how to check it by hand.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from azure.ai.ml.entities import AmlCompute, KubernetesCompute
from azure.core.exceptions import AzureError

from deployflow.azureml.backend import AzureMLPlatform, _listed_instance_types
from deployflow.azureml.calls import call_sdk, platform_error
from deployflow.azureml.entities import DEFAULT_INSTANCE_TYPE, kubernetes_instance_type
from deployflow.azureml.quantities import parse_cpu, parse_memory
from deployflow.platform.errors import PlatformError, PlatformNotFoundError
from deployflow.platform.specs import DeploymentSpec, DeploymentState, ModelRef, Resources

ARM_SCOPE = "https://management.azure.com/.default"
#: Azure ML keeps spare capacity for upgrading managed deployments on some SKUs (20 % by its docs)
UPGRADE_RESERVE = 0.2


@dataclass(frozen=True)
class PlannedEndpoint:
    """An endpoint the run creates or updates (no compute: managed), and the shapes it may deploy there."""

    name: str
    compute: str | None
    resources: tuple[Resources, ...]
    instance_count: int = 1


@dataclass(frozen=True)
class PlannedCluster:
    """An AmlCompute cluster a batch job of the run is submitted to, on ``instance_count`` nodes."""

    name: str
    instance_count: int = 1


@dataclass
class PreflightReport:
    """What passed, what to fix, and what could not be checked (with how to check it)."""

    passed: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    unchecked: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "passed": self.passed, "problems": self.problems, "unchecked": self.unchecked}


def preflight(
    platform: AzureMLPlatform,
    *,
    endpoints: Iterable[PlannedEndpoint] = (),
    clusters: Iterable[PlannedCluster] = (),
    upgrade_reserve: float = UPGRADE_RESERVE,
) -> PreflightReport:
    """Check the workspace behind ``platform`` for a run that will deploy ``endpoints`` and submit to ``clusters``."""
    from deployflow.azureml.dry_run import DryRunAzureMLPlatform

    report = PreflightReport()
    client = platform.ml_client
    workspace = str(client.workspace_name)
    if not _token(platform, report):
        return report
    try:
        found = call_sdk(
            lambda: client.workspaces.get(workspace),
            what=f"get workspace {workspace}",
            check="the subscription id, resource group and workspace name in the connection, and the identity's role",
            policy=platform.retry,
        )
    except PlatformError as e:
        report.problems.append(str(e))
        return report
    location = str(found.location)
    report.passed.append(f"workspace {workspace} is reachable (region {location})")
    endpoints, clusters = list(endpoints), list(clusters)
    if isinstance(platform, DryRunAzureMLPlatform):
        _what_a_real_run_needs(endpoints, clusters, report)
        return report
    computes: dict[str, Any] = {}
    for name in sorted({e.compute for e in endpoints if e.compute} | {c.name for c in clusters}):
        computes[name] = _compute(platform, name, report)
    for endpoint in endpoints:
        existing = _existing_deployments(platform, endpoint, report)
        if endpoint.compute is None:
            _check_managed(platform, endpoint, location, report, upgrade_reserve)
        elif isinstance(computes.get(endpoint.compute), KubernetesCompute):
            _check_kubernetes(endpoint, computes[endpoint.compute], existing, report)
        elif computes.get(endpoint.compute) is not None:
            report.problems.append(
                f"compute {endpoint.compute} (for endpoint {endpoint.name}) is a {_kind(computes[endpoint.compute])}; "
                "an online endpoint needs an attached Kubernetes compute (AttachSharedAksOperator attaches one)"
            )
    for cluster in clusters:
        _check_cluster(cluster, computes.get(cluster.name), report)
    return report


def _token(platform: AzureMLPlatform, report: PreflightReport) -> bool:
    credential = getattr(platform.ml_client, "_credential", None)
    if credential is None:
        report.unchecked.append("the credential: the workspace client does not expose it")
        return True
    try:
        credential.get_token(ARM_SCOPE)
    except AzureError as e:  # azure-identity's CredentialUnavailableError is one too
        report.problems.append(str(platform_error(e, what="get a token for Azure Resource Manager", check="")))
        return False
    report.passed.append("the credential gives a token for Azure Resource Manager")
    return True


def _compute(platform: AzureMLPlatform, name: str, report: PreflightReport) -> Any:
    client = platform.ml_client
    try:
        found = call_sdk(
            lambda: client.compute.get(name=name),
            what=f"get compute {name}",
            check="the compute name, and the identity's role on the workspace",
            policy=platform.retry,
        )
    except PlatformNotFoundError:
        report.problems.append(
            f"compute {name} does not exist in workspace {client.workspace_name}: attach the AKS cluster under "
            "that name (AttachSharedAksOperator), create the cluster, or change the run's compute params"
        )
        return None
    except PlatformError as e:
        report.problems.append(str(e))
        return None
    report.passed.append(f"compute {name} exists ({_kind(found)})")
    return found


def _existing_deployments(
    platform: AzureMLPlatform, endpoint: PlannedEndpoint, report: PreflightReport
) -> list[DeploymentState]:
    try:
        state = platform.get_endpoint(endpoint.name)
    except PlatformNotFoundError:
        report.passed.append(f"endpoint {endpoint.name} does not exist yet: the run creates it")
        return []
    except PlatformError as e:
        report.problems.append(str(e))
        return []
    if state.compute != endpoint.compute:
        report.problems.append(
            f"endpoint {endpoint.name} exists on {state.compute or 'managed compute'}, but the run puts it on "
            f"{endpoint.compute or 'managed compute'}; an endpoint cannot move: change the endpoint name or the "
            "compute param, or delete the endpoint"
        )
    try:
        return platform.list_deployments(endpoint.name)
    except PlatformError as e:
        report.problems.append(str(e))
        return []


def _check_kubernetes(
    endpoint: PlannedEndpoint, compute: KubernetesCompute, existing: list[DeploymentState], report: PreflightReport
) -> None:
    listed = _listed_instance_types(compute)
    shapes = _instance_type_shapes(compute)
    asked: dict[str, Resources] = {}
    for resources in endpoint.resources:
        try:
            name = kubernetes_instance_type(_probe_spec(endpoint.name, resources))
        except PlatformError as e:
            report.problems.append(str(e))
            continue
        if name is not None:
            asked.setdefault(name, resources)
    missing = sorted(n for n in asked if n not in listed)
    if not listed:
        report.unchecked.append(
            f"compute {endpoint.compute} lists no instance types, so {', '.join(sorted(asked)) or 'none'} could not "
            "be checked; check with `kubectl get instancetype` on the cluster"
        )
    elif missing:
        report.problems.append(
            f"compute {endpoint.compute} does not define instance type(s) {', '.join(missing)} that endpoint "
            f"{endpoint.name} may ask for (it has {', '.join(listed)}): apply the manifests "
            "deployflow.azureml.render_instance_types writes for them (kubectl apply -f), or change the resources"
        )
    elif asked:
        report.passed.append(f"compute {endpoint.compute} defines {', '.join(sorted(asked))}")
    # blue/green: the old deployments keep serving while the new one comes up next to them
    old_cpu = old_memory = 0.0
    unknown: list[str] = []
    for deployment in existing:
        cpu, memory = _requests(deployment.resources, shapes)
        if cpu is None or memory is None:
            unknown.append(deployment.name)
            continue
        old_cpu += cpu * deployment.instance_count
        old_memory += memory * deployment.instance_count
    sized = [_requests(r, shapes) for r in asked.values()]
    sized = [(c, m) for c, m in sized if c is not None and m is not None]
    if not sized:
        return
    new_cpu = max(c for c, _ in sized) * endpoint.instance_count
    new_memory = max(m for _, m in sized) * endpoint.instance_count
    note = f" (and {', '.join(unknown)}, whose size could not be read)" if unknown else ""
    report.unchecked.append(
        f"cluster capacity for endpoint {endpoint.name} on {endpoint.compute}: its {len(existing)} current "
        f"deployment(s) request {old_cpu:g} cpu / {old_memory:g} GiB{note}, the new one up to {new_cpu:g} cpu / "
        f"{new_memory:g} GiB ({endpoint.instance_count} instance(s)); both run at once during the rollout, so the "
        f"cluster needs {old_cpu + new_cpu:g} cpu / {old_memory + new_memory:g} GiB allocatable in the namespace. "
        "Azure ML does not report a cluster's free capacity: check with `kubectl describe nodes`"
    )


def _check_managed(
    platform: AzureMLPlatform, endpoint: PlannedEndpoint, location: str, report: PreflightReport, reserve: float
) -> None:
    client = platform.ml_client
    sizes_wanted = sorted({r.instance_type or DEFAULT_INSTANCE_TYPE for r in endpoint.resources})
    try:
        sizes = {
            s.name: s
            for s in call_sdk(
                lambda: list(client.compute.list_sizes(location=location)),
                what=f"list the VM sizes of region {location}",
                check="the identity's read access to the subscription",
                policy=platform.retry,
            )
        }
        usages = call_sdk(
            lambda: list(client.compute.list_usage(location=location)),
            what=f"list the vCPU usage and quota of region {location}",
            check="the identity's read access to the subscription",
            policy=platform.retry,
        )
    except PlatformError as e:
        report.unchecked.append(f"quota for endpoint {endpoint.name}: {e}")
        return
    # the new deployment comes up while the old one still holds its vCPUs, which current usage counts
    instances = math.ceil(endpoint.instance_count * (1 + reserve))
    for size_name in sizes_wanted:
        size = sizes.get(size_name)
        if size is None:
            report.problems.append(
                f"VM size {size_name} (for endpoint {endpoint.name}) is not offered in region {location}; "
                "choose one the region lists (az ml compute list-sizes)"
            )
            continue
        family, vcpus = str(size.family), int(_field(size, "v_cp_us", "vCPUs") or 0)
        usage = next((u for u in usages if _family_key(_usage_name(u)) == _family_key(family)), None)
        if usage is None:
            report.unchecked.append(f"quota of VM family {family} ({size_name}): the region's usage list has no entry")
            continue
        limit = int(_field(usage, "limit") or 0)
        free, needed = limit - int(_field(usage, "current_value", "currentValue") or 0), vcpus * instances
        line = (
            f"VM family {family} in {location}: {needed} vCPUs needed for {instances} x {size_name} "
            f"({endpoint.instance_count} instance(s) + {reserve:.0%} upgrade reserve), "
            f"{free} free of {limit}"
        )
        if needed > free:
            report.problems.append(
                f"{line}: request a quota increase for the family, or choose a smaller size or fewer instances"
            )
        else:
            report.passed.append(line)


def _check_cluster(cluster: PlannedCluster, compute: Any, report: PreflightReport) -> None:
    if compute is None:
        return
    if not isinstance(compute, AmlCompute):
        report.problems.append(
            f"compute {cluster.name} is a {_kind(compute)}; batch jobs need an AmlCompute cluster: "
            "create one (ensure_batch_cluster) or name another"
        )
        return
    if compute.max_instances is not None and compute.max_instances < cluster.instance_count:
        report.problems.append(
            f"compute cluster {cluster.name} scales to {compute.max_instances} node(s), but the batch job asks for "
            f"{cluster.instance_count}: raise its max instances, or lower instance_count"
        )
    else:
        report.passed.append(
            f"compute cluster {cluster.name} ({compute.size}) can run {cluster.instance_count} node(s)"
        )
    report.unchecked.append(
        f"the vCPU quota of cluster {cluster.name}'s VM family is taken when its nodes start: Azure ML checks it then"
    )


def _what_a_real_run_needs(
    endpoints: list[PlannedEndpoint], clusters: list[PlannedCluster], report: PreflightReport
) -> None:
    """In a dry run the workspace is simulated: say what the real one must have instead of checking it."""
    for endpoint in endpoints:
        if endpoint.compute is None:
            sizes = sorted({r.instance_type or DEFAULT_INSTANCE_TYPE for r in endpoint.resources})
            need = f"vCPU quota for {endpoint.instance_count} x {', '.join(sizes)} (+{UPGRADE_RESERVE:.0%})"
        else:
            names = set()
            for resources in endpoint.resources:
                try:
                    names.add(kubernetes_instance_type(_probe_spec(endpoint.name, resources)))
                except PlatformError as e:
                    report.problems.append(str(e))
            need = f"compute {endpoint.compute} defining instance types {', '.join(sorted(n for n in names if n))}"
        report.unchecked.append(f"dry run: endpoint {endpoint.name} will need {need}")
    for cluster in clusters:
        report.unchecked.append(f"dry run: AmlCompute cluster {cluster.name} with {cluster.instance_count} node(s)")


def _probe_spec(endpoint: str, resources: Resources) -> DeploymentSpec:
    return DeploymentSpec(endpoint=endpoint, name="preflight", model=ModelRef("preflight", "1"), resources=resources)


def _instance_type_shapes(compute: KubernetesCompute) -> dict[str, tuple[float | None, float | None]]:
    """cpu and memory requests of each InstanceType the compute lists."""
    listed = (compute.properties or {}).get("instanceTypes") if isinstance(compute.properties, dict) else None
    shapes: dict[str, tuple[float | None, float | None]] = {}
    for name, value in (listed or {}).items():
        requests = ((value or {}).get("resources") or {}).get("requests") or {}
        try:
            cpu = parse_cpu(requests["cpu"]) if "cpu" in requests else None
            memory = parse_memory(requests["memory"]) if "memory" in requests else None
        except ValueError:
            cpu = memory = None
        shapes[name] = (cpu, memory)
    return shapes


def _requests(
    resources: Resources, shapes: dict[str, tuple[float | None, float | None]]
) -> tuple[float | None, float | None]:
    if resources.cpu is not None and resources.memory_gb is not None:
        return resources.cpu, resources.memory_gb
    return shapes.get(resources.instance_type or "", (None, None))


def _field(entity: Any, *names: str) -> Any:
    """An attribute of a usage or VM size entity: the SDK copies the REST answer's keys onto it as
    they come (``currentValue``), leaving its own snake_case attributes (``current_value``) empty."""
    return next((getattr(entity, n) for n in names if getattr(entity, n, None) is not None), None)


def _kind(compute: Any) -> str:
    return str(getattr(compute, "type", None) or type(compute).__name__)


def _usage_name(usage: Any) -> str:
    name = getattr(usage, "name", None)
    return str(name.get("value", "") if isinstance(name, dict) else getattr(name, "value", name) or "")


def _family_key(name: str) -> str:
    """ "standardDSv2Family" and "Standard DSv2 Family Cluster Dedicated vCPUs" name the same quota."""
    key = re.sub(r"[^a-z0-9]", "", name.lower())
    return key.removesuffix("clusterdedicatedvcpus")
