"""Drive a rollout plan against a platform: the loop between the pure controller and the endpoint.

Reads the endpoint's traffic before every decision, acts, measures gate windows — on the
traffic users send when there is enough of it (live metrics), on the probe's otherwise —
compares shadow answers at mirror steps, bakes after 100 %, rolls back on a failed gate, and
writes every change and window into the decision record. No Airflow: the operator and the
benchmark both use it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from deployflow.platform.base import NOT_JUDGED, MLPlatform
from deployflow.platform.cleanup import remove_quietly
from deployflow.platform.errors import PlatformError
from deployflow.rollout.actions import Action, AskApproval, Finish, Observe, RollBack, SetTraffic
from deployflow.rollout.controller import RolloutState, next_action
from deployflow.rollout.gates import (
    GateResult,
    GateSpec,
    Verdict,
    WindowStats,
    agreement_check,
    early_failure,
    evaluate_gate,
)
from deployflow.rollout.live import LiveMetrics, LiveMetricsError
from deployflow.rollout.probe import SLICE_S, Probe
from deployflow.rollout.record import DecisionRecord
from deployflow.rollout.shadow import MAX_DISAGREEMENTS_KEPT, Agreement, compare_deployments
from deployflow.rollout.steps import MirrorStep

log = logging.getLogger(__name__)
ActionHook = Callable[[Action, float], None]


class RolledBack(Exception):
    """A gate failed or a person said no: traffic is back on the old deployment, the new one is gone."""

    def __init__(self, message: str, state: RolloutState) -> None:
        super().__init__(message)
        self.state = state


@dataclass
class RolloutProgress:
    """Where the drive stopped: at Finish (``finish`` set) or at an approval nobody has answered yet."""

    state: RolloutState
    finish: Finish | None = None
    question: str | None = None
    #: the approval step's own timeout, when the plan gave one (``approve timeout 3600s``)
    approval_timeout_s: float | None = None
    traffic_changes: list[str] = field(default_factory=list)

    def decisions(self) -> list[dict[str, Any]]:
        return [d.to_dict() for d in self.state.history]


def roll_back(platform: MLPlatform, endpoint: str, new: str, old: str, logger: Any = log) -> None:
    """All traffic to ``old``, no mirror, and the new deployment removed.

    The traffic must move (an error there propagates); the delete is best effort, so a delete that
    fails leaves a warning saying what to remove by hand instead of hiding that the rollout failed.
    """
    logger.info("endpoint %s: traffic {%s: 100}, mirror {} (rolling back from %s)", endpoint, old, new)
    platform.set_traffic(endpoint, traffic={old: 100}, mirror_traffic={})
    what = f"delete deployment {endpoint}/{new}"
    if remove_quietly(lambda: platform.delete_deployment(endpoint, new), what, logger):
        logger.info("endpoint %s: deleted deployment %s", endpoint, new)


@dataclass
class Gauges:
    """What a gate window is measured with: the probe always; live metrics and shadow requests when given."""

    probe: Probe
    live: LiveMetrics | None = None
    shadow_requests: list[bytes] = field(default_factory=list)


@dataclass(frozen=True)
class Measured:
    """One window's verdict and the numbers behind it, for the state and the decision record."""

    result: GateResult
    source: str
    source_note: str
    new: WindowStats | None
    old: WindowStats | None
    agreement: Agreement | None = None


def drive_rollout(
    platform: MLPlatform,
    *,
    endpoint: str,
    new: str,
    old: str,
    state: RolloutState,
    probe: Probe | Gauges,
    approval: bool | None = None,
    logger: Any = log,
    on_action: ActionHook | None = None,
    record: DecisionRecord | None = None,
    on_decision: Callable[[RolloutState], None] | None = None,
) -> RolloutProgress:
    """Run the plan from wherever the endpoint stands; raise RolledBack after a rollback.

    ``on_decision`` sees the state after every recorded verdict (the operator keeps it on the
    platform, so a new try can resume).
    """
    gauges = probe if isinstance(probe, Gauges) else Gauges(probe)
    record = record or DecisionRecord(endpoint, new, old, "")
    record.plan = state.plan.to_dict()
    progress = RolloutProgress(state)
    last_index = len(state.plan.steps) - 1
    while True:
        observed = platform.get_endpoint(endpoint)
        action = next_action(progress.state, observed.traffic, observed.mirror_traffic, new, old, endpoint=endpoint)
        if isinstance(action, Finish) and progress.state.plan.bake_s > 0 and not _baked(progress.state, last_index):
            action = Observe(
                progress.state.plan.bake_s,
                last_index,
                f"endpoint {endpoint}: {new} holds all traffic; baking for {progress.state.plan.bake_s:g} s "
                f"on users' traffic while {old} still exists",
            )
        logger.info("%s", action.line)
        if on_action:
            on_action(action, time.monotonic())
        if isinstance(action, SetTraffic):
            platform.set_traffic(endpoint, traffic=action.traffic, mirror_traffic=action.mirror)
            progress.traffic_changes.append(action.line)
            record.event("traffic", action.line, traffic=action.traffic, mirror=action.mirror)
        elif isinstance(action, Observe):
            step = progress.state.plan.steps[action.step_index]
            bake = action.step_index == last_index
            started = record.elapsed()
            if platform.dry_run:
                measured = not_judged_window(platform, gauges, action, step, endpoint, new, old, bake=bake)
            else:
                measured = measure_window(
                    platform, gauges, progress.state.plan, action.window_s, endpoint, new, old,
                    shadow=isinstance(step, MirrorStep), logger=logger,
                )  # fmt: skip
            progress.state = progress.state.record_gate(action.step_index, measured.result)
            record.window(
                step_index=action.step_index, step=step.to_text(), t_start_s=started, traffic=observed.traffic,
                mirror=observed.mirror_traffic, source=measured.source, source_note=measured.source_note,
                new=measured.new, old=measured.old, gates=progress.state.plan.gates, result=measured.result,
                agreement=measured.agreement.to_dict() if measured.agreement else None, bake=bake,
            )  # fmt: skip
            logger.info(
                "%s of step %d (%s): %s; %s",
                "bake" if bake else "gate",
                action.step_index + 1,
                measured.source,
                measured.result.verdict.value,
                "; ".join(measured.result.reasons),
            )
            if on_decision:
                on_decision(progress.state)
        elif isinstance(action, AskApproval):
            if approval is None and platform.dry_run:  # nothing real to approve: a person is not kept waiting
                line = f"approval at step {action.step_index + 1} of {endpoint}: {NOT_JUDGED}, taken as approved"
                platform.assume(f"{line}; a real run asks: {action.question}")
                progress.state = progress.state.record_approval(action.step_index, True, NOT_JUDGED)
                record.event("approval", line)
                logger.warning("%s (a real run waits for a person here)", line)
                if on_decision:
                    on_decision(progress.state)
                continue
            if approval is None:
                progress.question, progress.approval_timeout_s = action.question, action.timeout_s
                record.event("approval", f"asked: {action.question}")
                return progress
            progress.state = progress.state.record_approval(action.step_index, approval)
            record.event("approval", f"answered: {'approved' if approval else 'rejected'}")
            approval = None  # one answer covers one approval step
            if on_decision:
                on_decision(progress.state)
        elif isinstance(action, RollBack):
            roll_back(platform, endpoint, new, old, logger)
            record.event("rollback", action.line, traffic=action.traffic, mirror={})
            record.end("rolled_back")
            raise RolledBack(
                f"rollout of {new} on {endpoint} rolled back: " + "; ".join(action.reasons), progress.state
            )
        elif isinstance(action, Finish):
            record.event("finish", action.line, traffic={new: 100}, mirror={})
            record.end("completed")
            progress.finish = action
            return progress


def _baked(state: RolloutState, last_index: int) -> bool:
    done = (Verdict.PASS.value, Verdict.NOT_JUDGED.value)
    return any(d.step_index == last_index and d.outcome in done for d in state.history)


def not_judged_window(
    platform: MLPlatform, gauges: Gauges, action: Observe, step: Any, endpoint: str, new: str, old: str, *, bake: bool
) -> Measured:
    """A dry run's window: the probe's (and a mirror step's shadow) requests are recorded, not sent, no
    clock is waited for, and the gate is "not judged"; the rollout goes on as if it had passed."""
    window = f"{'the bake' if bake else f'step {action.step_index + 1} ({step.to_text()})'}, {action.window_s:g} s"
    body = [gauges.probe.body]
    for deployment in (new, old):
        platform.scoring_not_sent(endpoint, body, deployment=deployment, what=f"probe load at "
                                  f"{gauges.probe.rate:g} requests/s for the window of {window}")  # fmt: skip
    if isinstance(step, MirrorStep) and gauges.shadow_requests:
        for deployment in (new, old):
            platform.scoring_not_sent(endpoint, gauges.shadow_requests, deployment=deployment,
                                      what=f"shadow comparison of {window}")  # fmt: skip
    why = f"{NOT_JUDGED}: no probe traffic sent and no metrics read in the window of {window}"
    platform.assume(f"endpoint {endpoint}: the gate of {window} is {NOT_JUDGED}, taken as passed")
    return Measured(GateResult(Verdict.NOT_JUDGED, (why,)), "dry run", "nothing measured", None, None)


def measure_window(
    platform: MLPlatform,
    gauges: Gauges,
    plan: Any,
    window_s: float,
    endpoint: str,
    new: str,
    old: str,
    *,
    shadow: bool = False,
    logger: Any = log,
) -> Measured:
    """Measure one window as the plan's ``gate_source`` says, end it early once failure is certain,
    and judge it; at a mirror step, compare shadow answers too."""
    gates: GateSpec = plan.gates
    mode = plan.gate_source
    live, mark, live_note = gauges.live, None, ""
    if mode != "probe" and live is None:
        live_note = "no live metrics for this endpoint"
    elif mode != "probe":
        try:
            mark = live.mark(endpoint)
        except LiveMetricsError as e:
            live_note = str(e)
    started = time.monotonic()
    certain: list[tuple[str, GateResult]] = []

    def live_so_far() -> dict[str, WindowStats]:
        if mark is None:
            return {}
        try:
            return live.since(mark, endpoint)
        except LiveMetricsError as e:
            logger.warning("%s", e)
            return {}

    def cut_short(probe_so_far: WindowStats | None) -> bool:
        elapsed = max(time.monotonic() - started, 1e-3)
        seen = live_so_far().get(new)
        for source, stats in (("live", seen), ("probe", probe_so_far if mode != "live" else None)):
            if stats is None or not stats.requests:
                continue
            expected = round(stats.requests * window_s / elapsed)
            failure = early_failure(gates, stats, expected_requests=expected)
            if failure is not None:
                certain.append((source, failure))
                logger.info("window cut short: %s traffic to %s has failed for certain", source, new)
                return True
        return False

    probe_new: WindowStats | None = None
    probe_old: WindowStats | None = None
    if mode == "live":
        _wait(window_s, lambda: cut_short(None))
    else:
        probe_new, probe_old = gauges.probe.measure(window_s, new, old, cut_short=cut_short)
    agreement = None
    if shadow:
        agreement = _shadow_agreement(platform, gauges, gates, mark, endpoint, new, old, logger)
    seen = live_so_far()
    live_new, live_old = seen.get(new), seen.get(old)
    live_count = live_new.requests if live_new else 0
    if certain:
        source, result = certain[0]
        stats = (live_new, live_old) if source == "live" else (probe_new, probe_old)
        return _with_agreement(Measured(result, source, "ended early", *stats), gates, agreement, new, old)
    if mode == "live" or (mode == "auto" and live_count >= gates.min_requests):
        live_new = live_new or WindowStats(0, deployment=new)
        note = f"{live_count} users' requests to {new} in the window" + (f"; {live_note}" if live_note else "")
        baseline = live_old
        if (baseline is None or baseline.requests < gates.min_requests) and probe_old is not None:
            baseline = probe_old  # e.g. the bake: the old deployment has no users' traffic left to compare with
            note += f"; {old} compared by the probe's requests"
        measured = Measured(evaluate_gate(gates, live_new, baseline), "live", note, live_new, baseline)
    elif mode == "both":
        live_new = live_new or WindowStats(0, deployment=new)
        judged = [evaluate_gate(gates, live_new, live_old), evaluate_gate(gates, probe_new, probe_old)]
        measured = Measured(_worst(judged), "live+probe", live_note or "both judged", live_new, live_old)
    else:
        why = live_note or f"only {live_count} users' requests to {new}, fewer than min_requests={gates.min_requests}"
        note = why if mode == "auto" else "the plan asks for the probe"
        measured = Measured(evaluate_gate(gates, probe_new, probe_old), "probe", note, probe_new, probe_old)
    return _with_agreement(measured, gates, agreement, new, old)


def _shadow_agreement(
    platform: MLPlatform, gauges: Gauges, gates: GateSpec, mark: Any, endpoint: str, new: str, old: str, logger: Any
) -> Agreement | None:
    """The router's comparison of users' mirrored requests when the live metrics have one; else the
    recorded requests sent to both deployments by the probe."""
    if mark is not None and gauges.live is not None:
        try:
            counted = gauges.live.agreement_since(mark, endpoint, new)
        except LiveMetricsError as e:
            logger.warning("%s", e)
            counted = None
        if counted and counted[0]:
            compared, agreed = counted
            kept = _window_disagreements(platform, endpoint, new, compared - agreed, logger)
            return Agreement(compared, agreed, kept, source="users' mirrored requests")
    if not gauges.shadow_requests:
        return None
    return compare_deployments(
        platform, endpoint, new, old, gauges.shadow_requests,
        rel_tol=gates.agreement_rel_tol, abs_tol=gates.agreement_abs_tol,
    )  # fmt: skip


def _window_disagreements(
    platform: MLPlatform, endpoint: str, new: str, disagreed: int, logger: Any
) -> list[dict[str, Any]]:
    """The window's own disagreements, as far as the router kept them: its last ``disagreed`` entries
    (it keeps the latest few, oldest first), so the record shows what differed, not only how often."""
    if disagreed <= 0:
        return []
    try:
        kept = platform.shadow_disagreements(endpoint, new)
    except PlatformError as e:
        logger.warning("%s", e)
        return []
    return kept[-min(disagreed, MAX_DISAGREEMENTS_KEPT) :]


def _with_agreement(measured: Measured, gates: GateSpec, agreement: Agreement | None, new: str, old: str) -> Measured:
    if agreement is None:
        return measured
    check = agreement_check(gates, agreement.compared, agreement.agreed, new, old)
    result = _worst([measured.result, check]) if check else measured.result
    return Measured(result, measured.source, measured.source_note, measured.new, measured.old, agreement)


def _worst(results: list[GateResult]) -> GateResult:
    for verdict in (Verdict.FAIL, Verdict.INCONCLUSIVE):
        lines = tuple(line for r in results if r.verdict is verdict for line in r.reasons)
        if lines:
            return GateResult(verdict, lines)
    return GateResult(Verdict.PASS, tuple(line for r in results for line in r.reasons))


def _wait(window_s: float, cut_short: Callable[[], bool]) -> None:
    """Wait out a window in slices, asking after each whether it may end early."""
    deadline = time.monotonic() + window_s
    while (left := deadline - time.monotonic()) > 0:
        time.sleep(min(SLICE_S, left))
        if cut_short():
            return
