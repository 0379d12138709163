"""One release of a model onto a live endpoint: the whole rollout sequence, without Airflow.

New deployment at no traffic → smoke test through the deployment header → warm-up → all
traffic at once (a first release) or the plan's steps, driven by ``runner.drive_rollout``.
It stops where only a person or a clock can go on (an approval; the old deployment's delayed
delete) and says so in its outcome; the operator defers, resumes and reports.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from deployflow.checks import Check, Severity
from deployflow.packages import ModelPackage
from deployflow.platform.base import NOT_JUDGED, MLPlatform
from deployflow.platform.cleanup import remove_quietly
from deployflow.platform.contract import SUCCEEDED
from deployflow.platform.errors import PlatformError, PlatformNotFoundError
from deployflow.platform.specs import DeploymentSpec, EndpointSpec, EndpointState
from deployflow.rollout.actions import Finish
from deployflow.rollout.controller import Decision, RolloutState
from deployflow.rollout.live import LiveMetrics
from deployflow.rollout.plan import RolloutPlan
from deployflow.rollout.probe import Probe
from deployflow.rollout.record import DecisionRecord
from deployflow.rollout.runner import Gauges, drive_rollout
from deployflow.rollout.shadow import load_requests
from deployflow.smoke import smoke_test_deployment

log = logging.getLogger(__name__)

AWAITING_APPROVAL = "awaiting_approval"
COMPLETED = "completed"
FIRST_RELEASE = "first_release"
ROLLED_BACK = "rolled_back"
WARM_UP_REQUESTS_PER_WORKER = 5
DEPLOYMENT_COLOURS = ("blue", "green")
#: The plan for this endpoint; told whether the endpoint is on Kubernetes (where Azure ML cannot mirror).
PlanFor = Callable[[bool], RolloutPlan]


class ReleaseError(Exception):
    """The new deployment is not fit for traffic: not created, failed to provision, or failed its smoke test.

    Nothing took traffic; a retry may succeed.
    """


class ReleaseRefused(ReleaseError):
    """The new deployment answered wrongly: a retry would deploy the same model to the same verdict."""


class DeploymentNameError(Exception):
    """No deployment name is free for the new model; a retry cannot change that."""


def choose_deployment_name(traffic: dict[str, int], existing: set[str]) -> str:
    """Blue/green: a colour that takes no traffic now, preferring one not deployed at all."""
    free = [c for c in DEPLOYMENT_COLOURS if not traffic.get(c)]
    if not free:
        raise DeploymentNameError(
            f"both {DEPLOYMENT_COLOURS} take traffic and no rollout left its record on the endpoint, so which "
            f"one is new is unknown: give one all traffic (`deployflow traffic ENDPOINT blue=100`), or name the "
            "new deployment explicitly"
        )
    return next((c for c in free if c not in existing), free[0])


def current_deployment(traffic: dict[str, int], new: str) -> str | None:
    """The deployment serving the endpoint now: the one, other than ``new``, with the largest share."""
    others = {name: share for name, share in traffic.items() if name != new and share > 0}
    return max(others, key=lambda name: others[name]) if others else None


def open_endpoint(platform: MLPlatform, name: str, compute: str | None, logger: Any = log) -> EndpointState:
    """The endpoint as it is now; created (with no deployment) when this is its first release."""
    try:
        return platform.get_endpoint(name)
    except PlatformNotFoundError:
        logger.info("endpoint %s does not exist: creating it (first release)", name)
        return platform.create_or_update_endpoint(EndpointSpec(name=name, compute=compute or None))


@dataclass(frozen=True)
class ReleaseOutcome:
    """Where the release stopped: ``report`` for XCom; ``finish`` set when the old deployment is to be deleted."""

    report: dict[str, Any]
    finish: Finish | None = None


@dataclass
class Release:
    """Promote ``spec`` (its name already chosen) onto the endpoint found in ``endpoint``."""

    platform: MLPlatform
    endpoint: EndpointState
    spec: DeploymentSpec
    package: ModelPackage
    logger: Any = log
    deployment_timeout_s: float = 1800
    #: the deployment that held all traffic before, when a resumed rollout knows it from the endpoint's ledger
    previous: str | None = None

    @property
    def old(self) -> str | None:
        """The deployment the release replaces: the ledger's, else the one the endpoint's traffic favours now."""
        return self.previous or current_deployment(self.endpoint.traffic, self.spec.name)

    def report(self, status: str, state: RolloutState | None = None, **more: Any) -> dict[str, Any]:
        """What the release did, for XCom and the run's summary."""
        return {
            "endpoint_name": self.spec.endpoint,
            "scoring_uri": self.endpoint.scoring_uri,
            "new": self.spec.name,
            "old": self.old,
            "model": str(self.spec.model),
            "status": status,
            **more,
            "decisions": [d.to_dict() for d in state.history] if state else [],
        }

    def run(
        self,
        plan_for: PlanFor,
        *,
        approval: bool | None = None,
        probe_rate: float = 50.0,
        record: DecisionRecord | None = None,
        history: tuple[Decision, ...] = (),
        on_decision: Callable[[RolloutState], None] | None = None,
    ) -> ReleaseOutcome:
        """The whole sequence, from wherever the endpoint stands.

        ``history`` holds verdicts an earlier try already gave (read back from the endpoint);
        ``on_decision`` sees the state before traffic first moves and after every verdict.
        Raises ReleaseError before any traffic moved, ``runner.RolledBack`` after a rollback, and
        ``RolloutStateError`` when the endpoint's traffic is not one the rollout made.
        """
        record = record or DecisionRecord(self.spec.endpoint, self.spec.name, self.old, str(self.spec.model))
        self.ensure_deployment()
        self.smoke_test()
        self.warm_up()
        endpoint, new = self.spec.endpoint, self.spec.name
        if self.old is None:
            line = f"endpoint {endpoint}: traffic {{{new}: 100}} (first release: nothing to compare with)"
            self.logger.info("%s", line)
            self.platform.set_traffic(endpoint, traffic={new: 100}, mirror_traffic={})
            record.event("traffic", line, traffic={new: 100}, mirror={})
            record.end(FIRST_RELEASE)
            return ReleaseOutcome(self.report(FIRST_RELEASE))
        plan = plan_for(bool(self.endpoint.compute))
        probe = Probe(self.platform, endpoint, self.package.sample_request_body(), rate=probe_rate)
        gauges = Gauges(probe, live=self._live_metrics(), shadow_requests=self._shadow_requests(plan))
        state = RolloutState(plan, history)
        if on_decision:
            on_decision(state)
        progress = drive_rollout(
            self.platform,
            endpoint=endpoint,
            new=new,
            old=self.old,
            state=state,
            probe=gauges,
            approval=approval,
            logger=self.logger,
            record=record,
            on_decision=on_decision,
        )
        if progress.finish is None:
            return ReleaseOutcome(self.report(AWAITING_APPROVAL, progress.state, question=progress.question,
                                              approval_timeout_s=progress.approval_timeout_s))  # fmt: skip
        return ReleaseOutcome(self.report(COMPLETED, progress.state), finish=progress.finish)

    def _live_metrics(self) -> LiveMetrics | None:
        try:
            return self.platform.live_metrics()
        except Exception as e:  # noqa: BLE001 - no live metrics is a reason to use the probe, not to fail
            self.logger.warning("no live metrics for endpoint %s (%s): gates judge the probe", self.spec.endpoint, e)
            return None

    def _shadow_requests(self, plan: RolloutPlan) -> list[bytes]:
        """What a mirror step's shadow comparison sends both deployments: the samples, and the plan's file."""
        requests = [sample.body for sample in self.package.samples()]
        if plan.shadow_requests:
            try:
                requests += load_requests(plan.shadow_requests)
            except (OSError, ValueError) as e:
                raise ReleaseRefused(f"rollout plan shadow_requests: {e}") from e
        return requests

    def ensure_deployment(self) -> None:
        """The new deployment, serving the model, at no traffic: kept if it already is, else created."""
        platform, spec = self.platform, self.spec
        try:
            existing = platform.get_deployment(spec.endpoint, spec.name)
        except PlatformNotFoundError:
            existing = None
        if existing is not None and existing.provisioning_state == SUCCEEDED and existing.model == str(spec.model):
            self.logger.info("deployment %s/%s already serves %s", spec.endpoint, spec.name, spec.model)
            return
        self.logger.info(
            "creating deployment %s/%s: model %s, %d instance(s) of %s, no traffic",
            spec.endpoint,
            spec.name,
            spec.model,
            spec.instance_count,
            spec.resources.describe(),
        )
        try:
            platform.begin_create_or_update_deployment(spec)
            state = platform.wait_for_deployment(spec.endpoint, spec.name, timeout_s=self.deployment_timeout_s)
        except (ValueError, PlatformError) as e:
            raise ReleaseError(f"deployment {spec.endpoint}/{spec.name} could not be created: {e}") from e
        if state.failed:
            self._remove_new_deployment()
            raise ReleaseError(f"deployment {spec.endpoint}/{spec.name} failed to provision: {state.error}")

    def smoke_test(self) -> None:
        """Every sample, pinned to the new deployment by the header, must get its expected answer.

        Only the answers are judged here (the malformed-request check ran at the test endpoint).
        """
        endpoint, new = self.spec.endpoint, self.spec.name
        if self.platform.dry_run:
            bodies = [sample.body for sample in self.package.samples()]
            self.logger.warning("%s", self.platform.scoring_not_sent(
                endpoint, bodies, deployment=new, what="smoke test through the deployment header"))  # fmt: skip
            self.platform.assume(f"smoke test of {endpoint}/{new} before traffic: {NOT_JUDGED}, taken as passed")
            return
        rel_tol, abs_tol = self.package.tolerance()
        report = smoke_test_deployment(
            self.platform, endpoint, new, self.package.samples(), rel_tol=rel_tol, abs_tol=abs_tol,
            severities={Check.MALFORMED_REQUEST_4XX: Severity.OFF, Check.SCHEMA_EXAMPLES: Severity.OFF},
        )  # fmt: skip
        if report.failures:
            self._remove_new_deployment()
            error = ReleaseError if report.retry_may_help else ReleaseRefused
            raise error(
                f"deployment {new} failed its smoke test and was removed before taking traffic: "
                + "; ".join(report.lines(report.failures)[:10])
            )
        self.logger.info("smoke test of %s/%s through the deployment header passed", endpoint, new)

    def warm_up(self) -> int:
        """A few pinned requests per worker before the first window, so cold starts are not judged."""
        count = WARM_UP_REQUESTS_PER_WORKER * self.spec.instance_count * self.spec.worker_count
        request, endpoint, new = self.package.sample_request(), self.spec.endpoint, self.spec.name
        if self.platform.dry_run:
            body, what = self.package.sample_request_body(), f"warm-up ({count} requests)"
            self.logger.warning("%s", self.platform.scoring_not_sent(endpoint, [body], deployment=new, what=what))
            return 0
        answered = sum(self.platform.invoke(endpoint, request, deployment=new).ok for _ in range(count))
        self.logger.info("warmed up %s with %d requests (%d answered 2xx)", new, count, answered)
        return answered

    def _remove_new_deployment(self) -> None:
        endpoint, new = self.spec.endpoint, self.spec.name
        remove_quietly(lambda: self.platform.delete_deployment(endpoint, new), f"delete deployment {endpoint}/{new}",
                       self.logger)  # fmt: skip
