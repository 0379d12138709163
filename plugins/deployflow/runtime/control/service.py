"""The runtime's control logic: models, endpoints, deployments, replicas, and their restoration.

Everything here runs on one event loop; blocking work (copying a package, building an
environment) runs in threads, while processes are spawned on the loop's own thread so
that their death signal stays tied to the runtime.
"""

from __future__ import annotations

import asyncio
import logging
import math
import shutil
from datetime import UTC, datetime
from pathlib import Path
from weakref import WeakKeyDictionary

from deployflow.packages import ModelPackage, ModelPackageError
from deployflow.runtime import isolation
from deployflow.runtime.config import RuntimeConfig
from deployflow.runtime.environments import EnvironmentBuildError, EnvironmentCache
from deployflow.runtime.errors import Conflict, Invalid, NotFound
from deployflow.runtime.isolation import ChildUser, model_python
from deployflow.runtime.jobs.service import JobService
from deployflow.runtime.processes import tail
from deployflow.runtime.schemas import (
    DeploymentSpec,
    EndpointSpec,
    Model,
    ModelRegistration,
    ProvisioningState,
)
from deployflow.runtime.serving.endpoints import DeploymentRuntime, EndpointRuntime, new_key
from deployflow.runtime.serving.replicas import Replica, ReplicaStartError, ReplicaState, http_status
from deployflow.runtime.serving.resources import ResourceController, ResourceLimits
from deployflow.runtime.state_db import Store

log = logging.getLogger(__name__)

SUPERVISE_TICK_S = 0.2
MAX_RESTART_BACKOFF_S = 30.0
DRAIN_TIMEOUT_S = 30.0
RESTORED_STATES = {ProvisioningState.CREATING, ProvisioningState.UPDATING, ProvisioningState.SUCCEEDED}


class Runtime:
    """Plays the part of Azure ML's online-endpoint service on one machine."""

    def __init__(self, config: RuntimeConfig, user: ChildUser | None = None) -> None:
        self.config = config
        self.user = user
        config.data_dir.mkdir(parents=True, exist_ok=True)
        self.store = Store(config.data_dir / "state.sqlite")
        self.environments = EnvironmentCache(
            config.environments_dir, base_python=model_python(user, config.model_python), user=user
        )
        self.resources = ResourceController(f"deployflow-{config.router_port}", prefer=config.enforcement)
        self.endpoints: dict[str, EndpointRuntime] = {}
        self.jobs = JobService(config, self.store, self.environments, self.get_model, user)
        self._background: set[asyncio.Task[None]] = set()
        self._restarting: set[Replica] = set()
        self._probe_due: WeakKeyDictionary[Replica, float] = WeakKeyDictionary()
        self._generation = 0
        self._supervisor: asyncio.Task[None] | None = None

    # ---- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        """Restore every endpoint and re-provision the deployments that were serving; fail unfinished jobs."""
        self.jobs.restore()
        for name, document in self.store.endpoints().items():
            endpoint = EndpointRuntime(
                name, EndpointSpec(**document["spec"]), document["primary_key"], document["secondary_key"]
            )
            self.endpoints[name] = endpoint
        for endpoint_name, name, document in self.store.deployments():
            endpoint = self.endpoints.get(endpoint_name)
            if endpoint is None:
                continue
            deployment = self._new_deployment(endpoint_name, name, DeploymentSpec(**document["spec"]))
            deployment.state = ProvisioningState(document["state"])
            deployment.error = document.get("error")
            endpoint.deployments[name] = deployment
            if deployment.state in RESTORED_STATES:
                deployment.state = ProvisioningState.CREATING
                self._provision(deployment)
        for name, document in self.store.endpoints().items():
            self.endpoints[name].set_traffic(document["traffic"], document["mirror_traffic"])
        self._supervisor = asyncio.create_task(self._supervise())

    async def close(self) -> None:
        """Stop supervising and stop every replica; state stays on disk for the next start."""
        tasks = [t for t in [self._supervisor, *self._background] if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        replicas = [r for e in self.endpoints.values() for d in e.deployments.values() for r in d.replicas]
        await asyncio.gather(*(r.stop() for r in replicas), self.jobs.close())
        self.resources.close()
        self.store.close()

    def _spawn_background(self, coroutine) -> asyncio.Task[None]:
        task = asyncio.create_task(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    # ---- models ----------------------------------------------------------------------

    async def register_model(self, registration: ModelRegistration) -> Model:
        """Copy a checked package into the store as name:version; the same content twice is a no-op."""
        try:
            package = await asyncio.to_thread(ModelPackage.load, registration.path)
        except ModelPackageError as e:
            raise Invalid(str(e)) from e
        content_hash = await asyncio.to_thread(package.content_hash)
        existing = {m["version"]: m for m in self.store.models(registration.name)}
        if registration.version is None:
            same = [m for m in existing.values() if m["content_hash"] == content_hash]
            if same:  # registering the same package again returns the version it already has
                return Model(**same[-1])
        version = registration.version or str(1 + max((int(v) for v in existing if v.isdigit()), default=0))
        if version in existing:
            if existing[version]["content_hash"] == content_hash:
                return Model(**existing[version])
            raise Conflict(
                f"model {registration.name} version {version} is already registered with other content; "
                "register it under a new version"
            )
        target = self.config.data_dir / "models" / registration.name / version
        staging = target.with_name(f".{version}.partial")
        await asyncio.to_thread(_copy_package, package.path, staging, target, self.user)
        created = datetime.now(UTC).isoformat()
        self.store.add_model(registration.name, version, str(target), content_hash, created)
        return Model(name=registration.name, version=version, path=str(target), content_hash=content_hash,
                     created_at=created)  # fmt: skip

    def get_model(self, name: str, version: str) -> Model:
        for model in self.store.models(name):
            if model["version"] == version:
                return Model(**model)
        raise NotFound(f"model {name} has no version {version}; register it first")

    def list_models(self) -> list[Model]:
        return [Model(**m) for m in self.store.models()]

    # ---- endpoints -------------------------------------------------------------------

    def endpoint(self, name: str) -> EndpointRuntime:
        try:
            return self.endpoints[name]
        except KeyError:
            raise NotFound(f"no endpoint named {name}") from None

    def put_endpoint(self, name: str, spec: EndpointSpec) -> EndpointRuntime:
        """Create the endpoint, or update its description, tags and traffic; keys never change here.

        The change is checked whole, then stored, then applied: a refused change leaves the router and
        the database as they were, and an acknowledged one survives a crash.
        """
        stored_spec = spec.model_copy(update={"traffic": None, "mirror_traffic": None})
        endpoint = self.endpoints.get(name)
        if endpoint is None:
            endpoint = EndpointRuntime(name, spec, new_key(), new_key())
            plan = endpoint.plan_traffic(spec.traffic or {}, spec.mirror_traffic or {})
            self.store.put_endpoint(name, endpoint.document(plan=plan))
            endpoint.apply(plan)
            self.endpoints[name] = endpoint
        else:
            if spec.compute != endpoint.spec.compute and endpoint.deployments:
                raise Conflict(f"endpoint {name} has deployments; its compute cannot change")
            plan = endpoint.plan_traffic(spec.traffic, spec.mirror_traffic)
            self.store.put_endpoint(name, endpoint.document(spec=stored_spec, plan=plan))
            endpoint.apply(plan)
            endpoint.spec = stored_spec
        for deployment, share in endpoint.traffic.items():
            log.info("endpoint %s: %s now takes %s%% of traffic", name, deployment, share)
        return endpoint

    async def delete_endpoint(self, name: str) -> None:
        endpoint = self.endpoint(name)
        self.store.delete_endpoint(name)
        del self.endpoints[name]
        await asyncio.gather(*(self._retire(d) for d in endpoint.deployments.values()))

    def regenerate_key(self, name: str, key_type: str) -> EndpointRuntime:
        """Store the new key, then accept it: once acknowledged, the old key is gone for good."""
        endpoint = self.endpoint(name)
        keys = endpoint.regenerated_keys(key_type)
        self.store.put_endpoint(name, endpoint.document(keys=keys))
        endpoint.set_keys(*keys)
        return endpoint

    # ---- deployments -----------------------------------------------------------------

    def deployment(self, endpoint_name: str, name: str) -> DeploymentRuntime:
        endpoint = self.endpoint(endpoint_name)
        try:
            return endpoint.deployments[name]
        except KeyError:
            raise NotFound(f"endpoint {endpoint_name} has no deployment named {name}") from None

    def put_deployment(self, endpoint_name: str, name: str, spec: DeploymentSpec) -> DeploymentRuntime:
        """Create or update a deployment; provisioning goes on in the background (poll its state).

        An update starts the new replicas beside the old ones and swaps them in once ready,
        so a deployment that takes traffic keeps serving throughout.
        """
        endpoint = self.endpoint(endpoint_name)
        model_name, _, version = spec.model.partition(":")
        self.get_model(model_name, version)
        deployment = endpoint.deployments.get(name)
        if deployment is None:
            deployment = self._new_deployment(endpoint_name, name, spec)
            endpoint.deployments[name] = deployment
        else:
            if deployment.state is ProvisioningState.DELETING:
                raise Conflict(f"deployment {name} is being deleted")
            if deployment.provisioning is not None and not deployment.provisioning.done():
                raise Conflict(f"deployment {name} is still provisioning; wait for it to finish")
            deployment.spec = spec
            deployment.state = ProvisioningState.UPDATING
            deployment.error = None
        self._persist(deployment)
        self._provision(deployment)
        return deployment

    def _new_deployment(self, endpoint_name: str, name: str, spec: DeploymentSpec) -> DeploymentRuntime:
        return DeploymentRuntime(endpoint_name, name, spec, self.resources.enforcement.value)

    def _persist(self, deployment: DeploymentRuntime) -> None:
        if deployment.endpoint_name in self.endpoints:
            self.store.put_deployment(deployment.endpoint_name, deployment.name, deployment.document())

    async def delete_deployment(self, endpoint_name: str, name: str) -> None:
        endpoint = self.endpoint(endpoint_name)
        deployment = self.deployment(endpoint_name, name)
        if endpoint.traffic.get(name) or endpoint.mirror_traffic.get(name):
            raise Conflict(
                f"deployment {name} still takes traffic on endpoint {endpoint_name}; set its traffic to 0 first"
            )
        self.store.delete_deployment(endpoint_name, name)
        del endpoint.deployments[name]
        await self._retire(deployment)

    async def _retire(self, deployment: DeploymentRuntime) -> None:
        """Stop routing to a deployment, let its requests in flight finish, then stop its replicas."""
        deployment.state = ProvisioningState.DELETING
        if deployment.provisioning is not None:
            deployment.provisioning.cancel()
        await _drain(deployment.replicas)
        await asyncio.gather(*(r.stop() for r in deployment.replicas))

    def logs(self, endpoint_name: str, name: str, lines: int) -> str:
        deployment = self.deployment(endpoint_name, name)
        parts = []
        for replica in deployment.replicas:
            parts.append(f"==> instance {replica.replica_id} <==\n{tail(replica.log_path, lines)}")
        return "\n".join(parts)

    # ---- provisioning ----------------------------------------------------------------

    def _provision(self, deployment: DeploymentRuntime) -> None:
        deployment.provisioning = self._spawn_background(self._provision_now(deployment))

    async def _provision_now(self, deployment: DeploymentRuntime) -> None:
        spec = deployment.spec
        model_name, _, version = spec.model.partition(":")
        new: list[Replica] = []
        try:
            model = self.get_model(model_name, version)
            package = Path(model.path)
            requirements = ModelPackage(package).serving_requirements()
            python = await asyncio.to_thread(self.environments.ensure_requirements, requirements)
            self._generation += 1
            generation = self._generation
            new = [self._new_replica(deployment, package, python, i, generation) for i in range(spec.instance_count)]
            for replica in new:
                replica.spawn()
            await asyncio.gather(*(r.wait_ready(spec.readiness_timeout_s) for r in new))
        except (NotFound, EnvironmentBuildError, ReplicaStartError, OSError) as e:
            await asyncio.gather(*(r.stop() for r in new))
            deployment.state = ProvisioningState.FAILED
            deployment.error = str(e)
            log.error("deployment %s/%s failed: %s", deployment.endpoint_name, deployment.name, e)
            self._persist(deployment)
            return
        except asyncio.CancelledError:
            await asyncio.gather(*(r.stop() for r in new))
            raise
        old, deployment.replicas = deployment.replicas, new
        deployment.state = ProvisioningState.SUCCEEDED
        deployment.replica_ready.set()
        self._persist(deployment)
        log.info("deployment %s/%s ready with %d instance(s)", deployment.endpoint_name, deployment.name, len(new))
        await _drain(old)
        await asyncio.gather(*(r.stop() for r in old))

    def _new_replica(
        self, deployment: DeploymentRuntime, package: Path, python: Path, index: int, generation: int
    ) -> Replica:
        spec = deployment.spec
        cpu = spec.resources.cpu
        memory_mb = None if spec.resources.memory_gb is None else int(spec.resources.memory_gb * 1024)
        threads = str(max(1, math.floor(cpu))) if cpu else "1"
        replica_id = f"{deployment.endpoint_name}.{deployment.name}.{index}.g{generation}"
        environment = {
            "WORKER_COUNT": str(spec.worker_count),
            "SCORING_TIMEOUT_MS": str(spec.request_settings.request_timeout_ms),
            "OMP_NUM_THREADS": threads,
            "OPENBLAS_NUM_THREADS": threads,
            "MKL_NUM_THREADS": threads,
            **spec.environment_variables,
        }
        limits = ResourceLimits(cpu=cpu, memory_mb=memory_mb)
        return Replica(
            replica_id,
            python=python,
            package_dir=package,
            worker_count=spec.worker_count,
            environment=environment,
            placement_factory=lambda: self.resources.place(replica_id, limits),
            log_path=self.config.data_dir / "logs" / deployment.endpoint_name / deployment.name / f"{index}.log",
            user=self.user,
            socket_dir=self.config.data_dir / "sockets",
        )

    # ---- supervision -----------------------------------------------------------------

    async def _supervise(self) -> None:
        """Restart replicas that died, probe the live ones, keep their logs bounded."""
        loop = asyncio.get_running_loop()
        while True:
            now = loop.time()
            for endpoint in list(self.endpoints.values()):
                for deployment in list(endpoint.deployments.values()):
                    if deployment.state is ProvisioningState.DELETING:
                        continue
                    probe = deployment.spec.liveness_probe
                    for replica in deployment.replicas:
                        if replica in self._restarting or replica.state is ReplicaState.STOPPED:
                            continue
                        if replica.exited():
                            replica.mark_dead()
                            self._restart(deployment, replica)
                        elif now >= self._probe_due.get(replica, 0):
                            self._probe_due[replica] = now + probe.period_s
                            self._spawn_background(self._probe(deployment, replica))
                        replica.rotate_log(self.config.log_cap_bytes)
            await asyncio.sleep(SUPERVISE_TICK_S)

    async def _probe(self, deployment: DeploymentRuntime, replica: Replica) -> None:
        probe = deployment.spec.liveness_probe
        failures = 0
        while failures < probe.failure_threshold:
            if await http_status(replica.host, replica.port, "/", timeout=probe.timeout_s) == 200:
                if replica.state is ReplicaState.DEAD:
                    replica.state = ReplicaState.READY
                return
            if replica.exited() or replica.state is ReplicaState.STOPPED:
                return
            failures += 1
        log.warning("replica %s failed %d liveness probes; restarting it", replica.replica_id, failures)
        replica.mark_dead()
        self._restart(deployment, replica)

    def _restart(self, deployment: DeploymentRuntime, replica: Replica) -> None:
        self._restarting.add(replica)
        self._spawn_background(self._restart_now(deployment, replica))

    async def _restart_now(self, deployment: DeploymentRuntime, replica: Replica) -> None:
        try:
            while replica in deployment.replicas and deployment.state is not ProvisioningState.DELETING:
                log.warning("replica %s is down; restarting it (restart %d)", replica.replica_id, replica.restarts + 1)
                await asyncio.sleep(min(MAX_RESTART_BACKOFF_S, 0.5 * (2 ** min(replica.restarts, 6)) - 0.5))
                replica.restarts += 1
                await replica.stop(grace_s=0)
                replica.spawn()
                try:
                    await replica.wait_ready(deployment.spec.readiness_timeout_s)
                except ReplicaStartError as e:
                    log.error("%s", e)
                    continue
                deployment.replica_ready.set()
                return
        finally:
            self._restarting.discard(replica)


def _copy_package(source: Path, staging: Path, target: Path, user: ChildUser | None) -> None:
    """Copy into a staging folder and rename, so a failed copy never leaves a half-registered model.

    The copy is owner-only, or readable (not writable) by the child user's group when model code runs as one.
    """
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(source, staging, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    isolation.owner_only(staging)
    if user is not None:
        isolation.let_through(staging.parent, user)
        isolation.share(staging, user)
    staging.rename(target)


async def _drain(replicas: list[Replica], timeout_s: float = DRAIN_TIMEOUT_S) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while any(r.inflight for r in replicas) and loop.time() < deadline:
        await asyncio.sleep(0.05)
