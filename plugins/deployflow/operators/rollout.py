"""The controlled rollout: a new deployment behind the same endpoint, step by step, with gates.

The endpoint's URL and keys never change; only its ``traffic`` and ``mirror_traffic`` move.
The sequence itself is ``deployflow.rollout.release``; this operator reads its inputs, starts
it, turns its errors into task failures, defers the old deployment's delete and reports.
Every decision reads the endpoint's actual traffic, so a retried task resumes where the
endpoint really is.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

from airflow.providers.standard.triggers.temporal import TimeDeltaTrigger
from airflow.sdk import Context
from airflow.sdk.exceptions import AirflowException, AirflowFailException

from deployflow.operators.approval import duration_text
from deployflow.operators.base import MLPlatformOperator, rendered_json
from deployflow.operators.claim import run_label
from deployflow.packages import ModelPackage
from deployflow.platform.specs import DeploymentSpec, ModelRef, RequestSettings, Resources
from deployflow.reports import report_path, write_atomically, write_json
from deployflow.rollout import ApprovalStep, Finish, RolloutPlan, RolloutPlanError, RolloutStateError, load_plan
from deployflow.rollout.controller import RolloutState
from deployflow.rollout.ledger import Ledger, read_ledger, write_ledger
from deployflow.rollout.record import DecisionRecord, close_record
from deployflow.rollout.release import (
    AWAITING_APPROVAL,
    ROLLED_BACK,
    DeploymentNameError,
    Release,
    ReleaseError,
    ReleaseRefused,
    choose_deployment_name,
    open_endpoint,
)
from deployflow.rollout.runner import RolledBack, roll_back
from deployflow.rollout.steps import MirrorStep
from deployflow.rollout.timeline import render_timeline_html
from deployflow.ui.links import RolloutRecordLink, RolloutTimelineLink

__all__ = ["AWAITING_APPROVAL", "ROLLED_BACK", "RollBackRejectedRolloutOperator", "RolloutOperator"]

# A wait for the old deployment's delete shorter than this is slept in the task: deferring for a few
# seconds frees no slot worth having, and a trigger that fires before the executor has reported the
# deferring process's exit lets Airflow's scheduler fail the task ("state changed externally"; seen
# with a 1 s delay under load in the real-Airflow test).
DEFER_DELETE_AT_LEAST_S = 30.0


class RolloutOperator(MLPlatformOperator):
    """Promote a model to a live endpoint by a controlled rollout.

    Creates ``deployment_name`` with the given (profiled) resources and no traffic, smoke-tests
    it through the ``azureml-model-deployment`` header, then follows the plan (default:
    deployflow/include/rollout/default_plan.json; ``plan`` overrides any key): mirror and traffic steps,
    each judged by gates comparing the new deployment with the current one under probe load.
    A failed gate rolls back (all traffic to the current deployment, the new one deleted) and
    fails the task. At an approval step the task returns ``awaiting_approval`` so a
    human-in-the-loop task can ask; run the operator again with ``approval_task_id`` (and
    ``resume_task_id``, the task that began the rollout) to go on.
    On an endpoint with no deployment yet (a first release) the new one takes all traffic
    after its smoke test. Every traffic change is logged as one readable line. In a dry run the
    plan's steps are played with no scoring sent: each gate is "not judged" and taken as passed.
    """

    template_fields: Sequence[str] = (
        *MLPlatformOperator.template_fields,
        "endpoint_name",
        "deployment_name",
        "model",
        "package_path",
        "compute",
        "instance_resources",
        "instance_count",
        "worker_count",
        "profile",
        "plan",
        "approval",
        "approval_task_id",
        "resume_task_id",
        "probe_rate",
        "on_unfinished_rollout",
    )
    template_fields_renderers = {"instance_resources": "json", "plan": "json", "profile": "json"}
    ui_color = "#d6eaf8"
    operator_extra_links = (RolloutTimelineLink(), RolloutRecordLink())

    def __init__(
        self,
        *,
        endpoint_name: str,
        model: str,
        package_path: str,
        deployment_name: str | None = None,
        compute: str | None = None,
        instance_resources: dict[str, Any] | str | None = None,
        instance_count: int | str = 1,
        worker_count: int | str = 1,
        profile: dict[str, Any] | str | None = None,
        plan: dict[str, Any] | str | None = None,
        approval: bool | str = False,
        approval_task_id: str | None = None,
        resume_task_id: str | None = None,
        probe_rate: float | str = 50.0,
        deployment_timeout_s: float = 1800,
        on_unfinished_rollout: str = "rollback",
        report_dir: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.on_unfinished_rollout = on_unfinished_rollout
        self.report_dir = report_dir
        self.endpoint_name = endpoint_name
        self.deployment_name = deployment_name
        self.model = model
        self.package_path = package_path
        self.compute = compute
        self.instance_resources = instance_resources or {}
        self.instance_count = instance_count
        self.worker_count = worker_count
        self.profile = profile
        self.plan = plan
        self.approval = approval
        self.approval_task_id = approval_task_id
        self.resume_task_id = resume_task_id
        self.probe_rate = probe_rate
        self.deployment_timeout_s = deployment_timeout_s

    # ---- inputs ---------------------------------------------------------------------------

    def _plan(self, kubernetes_endpoint: bool) -> RolloutPlan:
        overrides = rendered_json(self.plan, {})
        try:
            plan = load_plan().override(overrides)
        except RolloutPlanError as e:
            raise AirflowFailException(str(e)) from e
        if str(self.approval).lower() not in ("true", "1", "yes"):
            plan = replace(plan, steps=tuple(s for s in plan.steps if not isinstance(s, ApprovalStep)))
        if kubernetes_endpoint and self.platform.kind == "azureml" and plan != plan.without_mirror():
            dropped = [step.to_text() for step in plan.steps if isinstance(step, MirrorStep)]
            self.log.warning(
                "endpoint %s is on Kubernetes, where Azure ML cannot mirror: plan steps %s dropped, so no shadow "
                "answers are compared before live traffic moves",
                self.endpoint_name,
                ", ".join(dropped),
            )
            plan = plan.without_mirror()
        return plan

    def _spec(self) -> DeploymentSpec:
        """The new deployment: sized by the profile's recommendation when given, else by the fields."""
        resources = rendered_json(self.instance_resources, {})
        instances, workers = int(self.instance_count), int(self.worker_count)
        profile = rendered_json(self.profile)
        if profile:
            resources = {
                "cpu": profile.get("recommendedCpu"),
                "memory_gb": profile.get("recommendedMemoryInGB"),
                "gpu": profile.get("recommendedGpu") or 0,
                "instance_type": profile.get("recommendedInstanceType"),
            }
            instances = int(profile.get("recommendedInstanceCount") or instances)
            workers = int(profile.get("recommendedWorkerCount") or workers)
        known = {"cpu", "memory_gb", "gpu", "instance_type"}
        return DeploymentSpec(
            endpoint=self.endpoint_name,
            name=self.deployment_name,
            model=ModelRef.parse(self.model),
            package_path=self.package_path,
            resources=Resources.from_dict({k: v for k, v in resources.items() if k in known}),
            instance_count=instances,
            worker_count=workers,
            request_settings=RequestSettings(max_concurrent_requests_per_instance=workers),
        )

    # ---- the rollout ----------------------------------------------------------------------

    def execute(self, context: Context) -> dict[str, Any]:
        platform, endpoint = self.platform, self.endpoint_name
        me = run_label(context)
        state_now = open_endpoint(platform, endpoint, self.compute, self.log)
        ledger = self._unfinished_rollout(me)
        if ledger is not None:
            state_now = platform.get_endpoint(endpoint)
        if not self.deployment_name and self.resume_task_id:  # going on with the rollout an earlier task began
            self.deployment_name = (context["ti"].xcom_pull(task_ids=self.resume_task_id) or {}).get("new")
        if not self.deployment_name and ledger is not None and ledger.run == me:
            self.deployment_name = ledger.new
        if not self.deployment_name:
            existing = {d.name for d in platform.list_deployments(endpoint)}
            try:
                self.deployment_name = choose_deployment_name(state_now.traffic, existing)
            except DeploymentNameError as e:
                raise AirflowFailException(str(e)) from e
            self.log.info("endpoint %s: the new deployment is %s", endpoint, self.deployment_name)
        package = ModelPackage.load(self.package_path)
        mine = ledger if ledger is not None and ledger.run == me else None
        release = Release(platform, state_now, self._spec(), package, self.log, self.deployment_timeout_s,
                          previous=mine.old if mine else None)  # fmt: skip
        record = DecisionRecord(endpoint, self.deployment_name, release.old, self.model)

        def keep_on_endpoint(state: RolloutState) -> None:
            write_ledger(platform, endpoint, Ledger(me, release.spec.name, release.old or "", self.model,
                                                    state.history))  # fmt: skip

        try:
            outcome = release.run(
                self._plan, approval=self._approval_answer(context), probe_rate=float(self.probe_rate),
                record=record, history=mine.decisions if mine else (), on_decision=keep_on_endpoint,
            )  # fmt: skip
        except ReleaseRefused as e:
            raise AirflowFailException(str(e)) from e
        except ReleaseError as e:
            raise AirflowException(str(e)) from e
        except RolloutStateError as e:
            raise AirflowFailException(f"rollout stopped, endpoint left as it is: {e}") from e
        except RolledBack as e:
            write_ledger(platform, endpoint, None)
            paths = self._write_record(context, record)
            context["ti"].xcom_push(key="rollout", value={**release.report(ROLLED_BACK, e.state), **paths})
            # Not retried: a retry would roll the same model out again into the same gate.
            raise AirflowFailException(f"{e} (decision record {paths['decision_record']})") from e
        report = {**outcome.report, **self._write_record(context, record)}
        if report["status"] == AWAITING_APPROVAL:
            report["approval_markdown"] = approval_markdown(report, state_now=platform.get_endpoint(endpoint))
        if outcome.finish is None:
            if report["status"] != AWAITING_APPROVAL:
                write_ledger(platform, endpoint, None)  # a first release: nothing to resume
            return report
        return self._finish(context, outcome.finish, report)

    def _unfinished_rollout(self, me: str) -> Ledger | None:
        """The rollout the endpoint says is under way. This run's own is resumed; another run's
        (that run no longer runs: the claim made sure) is rolled back, or resumed when it was
        rolling out this same model and ``on_unfinished_rollout`` says so."""
        ledger = read_ledger(self.platform, self.endpoint_name)
        if ledger is None or ledger.run == me:
            if ledger is not None:
                self.log.info("resuming this run's rollout of %s over %s (%d verdict(s) so far), as the endpoint "
                              "records it", ledger.new, ledger.old, len(ledger.decisions))  # fmt: skip
            return ledger
        left = f"run {ledger.run} left endpoint {self.endpoint_name} mid-rollout ({ledger.new} over {ledger.old})"
        if self.on_unfinished_rollout == "resume":
            if ledger.model != self.model:
                raise AirflowFailException(
                    f"{left} of model {ledger.model}, not this run's {self.model}: it cannot be resumed here; "
                    "run again with on_unfinished_rollout=rollback"
                )
            self.log.warning("%s of this same model: resuming it as this run's", left)
            return Ledger(me, ledger.new, ledger.old, ledger.model, ledger.decisions)
        self.log.warning("%s: rolling it back to %s before this run's rollout", left, ledger.old)
        roll_back(self.platform, self.endpoint_name, ledger.new, ledger.old, self.log)
        write_ledger(self.platform, self.endpoint_name, None)
        return None

    def _write_record(self, context: Context, record: DecisionRecord) -> dict[str, str]:
        """The decision record beside the other reports; its path for XCom and the summary."""
        path = report_path(self.report_dir, context["dag"].dag_id, context["dag_run"].run_id, self.task_id,
                           suffix=".json")  # fmt: skip
        document = record.to_dict()
        write_json(path, document)
        timeline = write_atomically(path.with_suffix(".html"), render_timeline_html(document))
        self.log.info("decision record %s, timeline %s", path, timeline)
        return {"decision_record": str(path), "timeline_path": str(timeline)}

    def _finish(self, context: Context, action: Finish, summary: dict[str, Any]) -> dict[str, Any]:
        context["ti"].xcom_push(key="rollout", value=summary)
        if action.delete_old_after_s > 0 and self.platform.dry_run:
            self.platform.assume(f"endpoint {self.endpoint_name}: {action.old} deleted at once; a real run waits "
                                 f"{action.delete_old_after_s:g} s")  # fmt: skip
        elif action.delete_old_after_s > 0:
            self.log.info(
                "endpoint %s: deployment %s will be deleted in %g s",
                self.endpoint_name,
                action.old,
                action.delete_old_after_s,
            )
            if action.delete_old_after_s < DEFER_DELETE_AT_LEAST_S:
                time.sleep(action.delete_old_after_s)
            else:
                self.defer(
                    trigger=TimeDeltaTrigger(timedelta(seconds=action.delete_old_after_s), end_from_trigger=False),
                    method_name="delete_old",
                )
        return self.delete_old(context)

    def delete_old(self, context: Context, event: Any = None) -> dict[str, Any]:
        """After the delay: remove the deployment the rollout replaced, if it still has no traffic."""
        summary = context["ti"].xcom_pull(task_ids=self.task_id, key="rollout")
        endpoint, old = self.endpoint_name, summary["old"]
        if self.platform.get_endpoint(endpoint).traffic.get(old):
            self.log.warning("endpoint %s: %s takes traffic again; not deleting it", endpoint, old)
            return summary
        if self.platform.delete_deployment(endpoint, old):
            self.log.info("endpoint %s: deleted the previous deployment %s", endpoint, old)
        write_ledger(self.platform, endpoint, None)  # the rollout is over: nothing left to resume
        return summary

    def _approval_answer(self, context: Context) -> bool | None:
        """The human-in-the-loop task's answer: True (Approve), False (anything else), None (not asked)."""
        if not self.approval_task_id:
            return None
        answer = context["ti"].xcom_pull(task_ids=self.approval_task_id)
        if not answer:
            return None
        chosen = answer.get("chosen_options") or []
        return chosen == ["Approve"]


class RollBackRejectedRolloutOperator(MLPlatformOperator):
    """Roll back a rollout a person rejected, or nobody approved in time: all traffic to the old
    deployment, the new one removed.

    Reads the rollout's summary (``rollout_task_id``) and the answer (``approval_task_id``); does
    nothing when no one was asked or the answer was Approve. Returns the rollout's report with
    ``status`` ``rolled_back`` and the ``reason`` (who rejected it, or that the approval timed
    out), and ends the rollout's decision record with the answer and the rollback.
    """

    template_fields: Sequence[str] = (*MLPlatformOperator.template_fields, "rollout_task_id", "approval_task_id")

    def __init__(self, *, rollout_task_id: str, approval_task_id: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.rollout_task_id = rollout_task_id
        self.approval_task_id = approval_task_id

    def execute(self, context: Context) -> dict[str, Any]:
        answer = context["ti"].xcom_pull(task_ids=self.approval_task_id)
        summary = context["ti"].xcom_pull(task_ids=self.rollout_task_id) or {}
        if not answer or summary.get("status") != AWAITING_APPROVAL:
            self.log.info("no approval was asked for; nothing to roll back")
            return {"status": "not_asked"}
        if (answer.get("chosen_options") or []) == ["Approve"]:
            self.log.info("the rollout was approved; nothing to roll back")
            return {"status": "approved"}
        endpoint, new, old = summary["endpoint_name"], summary["new"], summary["old"]
        reason = rejection_reason(answer)
        self.log.warning("endpoint %s: rollout of %s %s; rolling back to %s", endpoint, new, reason, old)
        roll_back(self.platform, endpoint, new, old, self.log)
        write_ledger(self.platform, endpoint, None)
        if summary.get("decision_record"):
            answered_at = answer.get("responded_at")
            self._close_record(summary, reason, answered_at if isinstance(answered_at, str) else None)
        kept = {k: v for k, v in summary.items() if k not in ("approval_markdown", "question", "approval_timeout_s")}
        asked = {k: answer.get(k) for k in ("chosen_options", "responded_by_user", "timed_out")}
        return {**kept, "status": ROLLED_BACK, "reason": f"{reason}; rolled back to {old}, {new} removed",
                "approval": asked}  # fmt: skip

    def _close_record(self, summary: dict[str, Any], reason: str, answered_at: str | None) -> None:
        path = Path(summary["decision_record"])
        document = json.loads(path.read_text())
        endpoint, new, old = summary["endpoint_name"], summary["new"], summary["old"]
        line = f"endpoint {endpoint}: traffic {{{old}: 100}}, mirror {{}} (rolling back, {new} removed: {reason})"
        close_record(document, [("approval", f"answered: rejected ({reason})", None, answered_at),
                                ("rollback", line, {old: 100}, None)], ROLLED_BACK)  # fmt: skip
        document["reason"] = reason
        write_json(path, document)
        write_atomically(path.with_suffix(".html"), render_timeline_html(document))


def rejection_reason(answer: dict[str, Any]) -> str:
    """Why a rollout was not approved, in the words of the record and the log."""
    if answer.get("timed_out"):
        within = f" within {duration_text(timedelta(seconds=answer['timeout_s']))}" if answer.get("timeout_s") else ""
        return f"timed out: nobody answered the approval{within}, so it was rejected by default"
    who = (answer.get("responded_by_user") or {}).get("name")
    return f"rejected by {who}" if who else "rejected"


def approval_markdown(report: dict[str, Any], *, state_now: Any) -> str:
    """What the person deciding reads: what is being promoted, the verdicts so far, the traffic now."""
    traffic = ", ".join(f"{name} {share} %" for name, share in state_now.traffic.items()) or "none"
    mirror = ", ".join(f"{name} {share} %" for name, share in state_now.mirror_traffic.items())
    lines = [
        f"**Model {report['model']}** is rolling out on endpoint **{report['endpoint_name']}** as deployment "
        f"`{report['new']}`, replacing `{report['old']}`.",
        "",
        f"Traffic now: {traffic}" + (f"; mirrored: {mirror}" if mirror else "") + ".",
        "",
        "| step | verdict | why |",
        "|---|---|---|",
    ]
    for decision in report.get("decisions", []):
        why = "; ".join(decision.get("reasons", [])).replace("|", "/") or "—"
        lines.append(f"| {decision['step_index'] + 1} | {decision['outcome']} | {why} |")
    if not report.get("decisions"):
        lines.append("| — | no gate yet | — |")
    lines += ["", f"{report.get('question') or 'Continue the rollout?'}", "",
              "**Approve** goes on with the plan; **Reject** rolls back: all traffic to "
              f"`{report['old']}`, `{report['new']}` removed.",
              f"Decision record: `{report.get('decision_record', '—')}`"]  # fmt: skip
    return "\n".join(lines)
