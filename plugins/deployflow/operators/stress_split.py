"""A stress test split over workers: plan the parts, run each as a mapped task, judge the merged load.

    plan = PlanLoadSplitOperator(task_id="stress_plan", rate=..., duration_s=..., max_rate_per_worker=...)
    parts = StressTestPartOperator.partial(task_id="stress_load", ...).expand(part=plan.output)
    StressTestVerdictOperator(task_id="stress_test", parts=parts.output, slo=...)

Under the CeleryExecutor each mapped part can run on another worker (another machine); they all start
at the wall-clock moment the plan fixed, and the verdict merges their histograms exactly. Each part
fetches the endpoint's key itself: no key goes through XCom.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.sdk import BaseOperator, Context
from airflow.sdk.exceptions import AirflowFailException

from deployflow.loadtest.split import (
    DEFAULT_MAX_RATE_PER_WORKER,
    DEFAULT_START_LEAD_S,
    LATE_START_TOLERANCE_MS,
    LoadPart,
    merge_parts,
    plan_parts,
    run_part,
)
from deployflow.operators.base import MLPlatformOperator, rendered_json
from deployflow.operators.load import (
    judge_stress,
    parse_slo,
    schedule_text,
    stress_not_judged,
    stress_not_sent,
    stress_request,
    stress_schedule,
    stress_target,
)
from deployflow.platform.base import NOT_JUDGED
from deployflow.ui.links import StressReportLink

_SCHEDULE_FIELDS = ("rate", "duration_s", "ramp")
#: a part's key saying its load was recorded, not sent (a dry run)
NOT_SENT = "not_sent"


def number_field(value: Any, default: float, what: str) -> float:
    """A rendered numeric field, or `default` when it was left empty; anything else fails saying so."""
    if value is None or value == "":
        return default
    try:
        return float(value)
    except (TypeError, ValueError) as e:
        raise AirflowFailException(f"{what} must be a number, got {value!r}") from e


class PlanLoadSplitOperator(BaseOperator):
    """Cut a load into parts of at most ``max_rate_per_worker`` requests/s that start together.

    Returns one dict per part (index, parts, start_at, planned_at), to be expanded over; the start is
    ``start_lead_s`` from now, time enough for every part to be picked up by a worker.
    """

    template_fields: Sequence[str] = (*_SCHEDULE_FIELDS, "max_rate_per_worker", "start_lead_s")
    template_fields_renderers = {"ramp": "json"}
    ui_color = "#fde2e2"

    def __init__(
        self,
        *,
        rate: float | str | None = 50,
        duration_s: float | str = 30,
        ramp: dict[str, Any] | str | None = None,
        max_rate_per_worker: float | str | None = None,
        start_lead_s: float | str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.rate = rate
        self.duration_s = duration_s
        self.ramp = ramp
        self.max_rate_per_worker = max_rate_per_worker
        self.start_lead_s = start_lead_s

    def execute(self, context: Context) -> list[dict[str, Any]]:
        max_rate = number_field(self.max_rate_per_worker, DEFAULT_MAX_RATE_PER_WORKER, "max_rate_per_worker")
        lead = number_field(self.start_lead_s, DEFAULT_START_LEAD_S, "start_lead_s")
        try:
            schedule = stress_schedule(self.rate, self.duration_s, self.ramp)
            parts = plan_parts(schedule, max_rate, lead_s=lead)
        except (ValueError, KeyError) as e:
            raise AirflowFailException(f"stress load split: {e}") from e
        self.log.info(
            "%s split into %d part(s) of at most %g requests/s, starting %g s from now",
            schedule,
            len(parts),
            max_rate,
            lead,
        )
        return [part.to_dict() for part in parts]


class StressTestPartOperator(MLPlatformOperator):
    """Drive one part of a split stress test: its shard of the schedule, from the shared start.

    Returns the part's result with its encoded histograms (a few kB), for the verdict to merge.
    """

    template_fields: Sequence[str] = (
        *MLPlatformOperator.template_fields,
        "endpoint_name",
        "deployment_name",
        "package_path",
        *_SCHEDULE_FIELDS,
        "part",
    )
    template_fields_renderers = {"ramp": "json", "part": "json"}
    ui_color = "#fde2e2"

    def __init__(
        self,
        *,
        endpoint_name: str,
        package_path: str,
        part: dict[str, Any] | str,
        deployment_name: str | None = None,
        rate: float | str | None = 50,
        duration_s: float | str = 30,
        ramp: dict[str, Any] | str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.endpoint_name = endpoint_name
        self.deployment_name = deployment_name
        self.package_path = package_path
        self.part = part
        self.rate = rate
        self.duration_s = duration_s
        self.ramp = ramp

    def execute(self, context: Context) -> dict[str, Any]:
        try:
            part = LoadPart.from_dict(rendered_json(self.part, {}))
        except ValueError as e:
            raise AirflowFailException(f"stress load part: {e}") from e
        schedule = stress_schedule(self.rate, self.duration_s, self.ramp)
        if self.platform.dry_run:
            what = f"stress load part {part.index + 1} of {part.parts} (its share of {schedule_text(schedule)})"
            line = stress_not_sent(self.platform, self.endpoint_name, self.deployment_name, self.package_path, what)
            self.log.warning("%s", line)
            return {"index": part.index, "parts": part.parts, NOT_SENT: line}
        # One part's share of the load, sent with one key: a part longer than an aml_token lives is not sliced.
        request, _until = stress_request(self.platform, self.endpoint_name, self.deployment_name, self.package_path)
        self.log.info(
            "stress load part %d of %d on %s: every %d-th send of %s",
            part.index,
            part.parts,
            stress_target(self.endpoint_name, self.deployment_name),
            part.parts,
            schedule,
        )
        outcome = run_part(request, schedule, part)
        result = outcome.result
        self.log.info(
            "part %d: %d of %d sends answered with 2xx, %.1f requests/s, started %.1f ms after the shared start",
            part.index,
            result.ok,
            result.scheduled,
            result.achieved_rate,
            outcome.start_late_ms,
        )
        return outcome.to_dict()


class StressTestVerdictOperator(BaseOperator):
    """Merge a split stress test's parts exactly and judge the whole load against the SLO.

    Same summary and report as ``StressTestOperator``; the report adds each part's start, host and
    rate, and names late starters (beyond ``start_tolerance_ms``), clocks behind the planner's and
    clocks ahead of this task's (a part that says it ended after this task began merging).
    """

    template_fields: Sequence[str] = ("parts", "endpoint_name", "deployment_name", "slo", "report_dir")
    template_fields_renderers = {"slo": "json"}
    ui_color = "#fde2e2"
    operator_extra_links = (StressReportLink(),)

    def __init__(
        self,
        *,
        parts: Any,
        endpoint_name: str,
        deployment_name: str | None = None,
        slo: dict[str, Any] | str | None = None,
        fail_on_breach: bool = True,
        start_tolerance_ms: float = LATE_START_TOLERANCE_MS,
        report_dir: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.parts = parts
        self.endpoint_name = endpoint_name
        self.deployment_name = deployment_name
        self.slo = slo or {"latency_ms": 100, "percentile": 99, "max_error_percent": 1.0}
        self.fail_on_breach = fail_on_breach
        self.start_tolerance_ms = start_tolerance_ms
        self.report_dir = report_dir

    def execute(self, context: Context) -> dict[str, Any]:
        slo = parse_slo(self.slo)
        parts = list(self.parts or [])
        target = stress_target(self.endpoint_name, self.deployment_name)
        if any(NOT_SENT in part for part in parts):  # a dry run: no part sent its load
            self.log.warning("stress test of %s: %s (%d part(s), no load sent)", target, NOT_JUDGED, len(parts))
            return {**stress_not_judged(target, f"{len(parts)} load part(s), none sent"), "parts": parts,
                    "late_parts": []}  # fmt: skip
        try:
            outcome = merge_parts(parts, tolerance_ms=self.start_tolerance_ms)
        except ValueError as e:
            raise AirflowFailException(f"stress load parts cannot be merged: {e}") from e
        split = outcome.to_dict()
        summary = judge_stress(
            self,
            context,
            outcome.result,
            slo,
            target,
            fail_on_breach=self.fail_on_breach,
            report_dir=self.report_dir,
            extra={"split": split},
            notes=split["notes"],
        )
        return {**summary, "parts": split["parts"], "late_parts": split["late_parts"]}
