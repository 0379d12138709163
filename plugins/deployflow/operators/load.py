"""Operators for the load stages: a stress test against an SLO, and resource profiling."""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import cached_property, partial
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator, Context
from airflow.sdk.exceptions import AirflowException, AirflowFailException

from deployflow.defaults import PROFILING_DEFAULTS_FILE
from deployflow.loadtest import SLO, LoadResult, RequestSpec, Schedule, evaluate_slo, run_open_loop_refreshing
from deployflow.operators.base import MLPlatformOperator, is_refusal, rendered_json
from deployflow.packages import ModelPackage
from deployflow.platform.base import NOT_JUDGED, MLPlatform
from deployflow.platform.cleanup import remove_quietly
from deployflow.platform.contract import DEPLOYMENT_HEADER
from deployflow.platform.errors import PlatformError
from deployflow.platform.specs import ModelRef
from deployflow.reports import report_path, write_atomically, write_json
from deployflow.ui.links import ProfileChartLink, ProfileReportLink, StressReportLink

if TYPE_CHECKING:
    from deployflow.profiling.runner import ProfileSettings
    from deployflow.profiling.split import SplitLeader

DEFAULTS_FILE = PROFILING_DEFAULTS_FILE


def parse_slo(value: Any) -> SLO:
    data = rendered_json(value, {})
    try:
        return SLO(**data)
    except TypeError as e:
        raise AirflowFailException(f"SLO {data} has an unknown field: {e}") from e


class StressTestOperator(MLPlatformOperator):
    """Drive open-loop load at the endpoint (or one deployment) and judge it against an SLO.

    ``rate`` requests/s for ``duration_s``, or a ``ramp`` ({start, end, duration_s, steps});
    latency counts from each request's intended send time. The full result goes to a JSON
    file whose path, with a summary, is returned through XCom. A breached SLO fails the task
    unless ``fail_on_breach`` is False.
    """

    template_fields: Sequence[str] = (
        *MLPlatformOperator.template_fields,
        "endpoint_name",
        "deployment_name",
        "package_path",
        "rate",
        "duration_s",
        "ramp",
        "slo",
        "report_dir",
    )
    template_fields_renderers = {"slo": "json", "ramp": "json"}
    ui_color = "#fde2e2"
    operator_extra_links = (StressReportLink(),)

    def __init__(
        self,
        *,
        endpoint_name: str,
        package_path: str,
        deployment_name: str | None = None,
        rate: float | str | None = 50,
        duration_s: float | str = 30,
        ramp: dict[str, Any] | None = None,
        slo: dict[str, Any] | None = None,
        workers: int = 1,
        fail_on_breach: bool = True,
        report_dir: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.endpoint_name = endpoint_name
        self.deployment_name = deployment_name
        self.package_path = package_path
        self.rate = rate
        self.duration_s = duration_s
        self.ramp = ramp
        self.slo = slo or {"latency_ms": 100, "percentile": 99, "max_error_percent": 1.0}
        self.workers = workers
        self.fail_on_breach = fail_on_breach
        self.report_dir = report_dir

    def execute(self, context: Context) -> dict[str, Any]:
        slo, schedule = parse_slo(self.slo), stress_schedule(self.rate, self.duration_s, self.ramp)
        target = stress_target(self.endpoint_name, self.deployment_name)
        self.log.info("stress test of %s: %s, SLO p%g <= %g ms", target, schedule, slo.percentile, slo.latency_ms)
        if self.platform.dry_run:
            line = stress_not_sent(self.platform, self.endpoint_name, self.deployment_name, self.package_path,
                                   what=f"stress load ({schedule_text(schedule)})")  # fmt: skip
            self.log.warning("%s", line)
            return stress_not_judged(target, "no load was sent")

        def request() -> tuple[RequestSpec, float | None]:
            # asked again before each slice of a load that outlasts the key (an aml_token expires)
            return stress_request(self.platform, self.endpoint_name, self.deployment_name, self.package_path)

        result = run_open_loop_refreshing(request, schedule, workers=self.workers)
        return judge_stress(
            self, context, result, slo, target, fail_on_breach=self.fail_on_breach, report_dir=self.report_dir
        )


def stress_not_sent(
    platform: MLPlatform, endpoint_name: str, deployment_name: str | None, package_path: str, what: str
) -> str:
    """A dry run's stress load: the sample request it would repeat is recorded, not sent, and the SLO
    verdict is put down as assumed; the line saying so."""
    body = ModelPackage.load(package_path).sample_request_body()
    line = platform.scoring_not_sent(endpoint_name, [body], deployment=deployment_name, what=what)
    target = stress_target(endpoint_name, deployment_name)
    platform.assume(f"stress test of {target}: {NOT_JUDGED}; {what} not sent, the SLO taken as met")
    return line


def schedule_text(schedule: Schedule) -> str:
    """A schedule in a line: "50 requests/s for 20 s", its steps joined by "then"."""
    return ", then ".join(f"{step.rate:g} requests/s for {step.duration_s:g} s" for step in schedule.steps)


def stress_not_judged(target: str, why: str) -> dict[str, Any]:
    """The stress summary of a dry run: no numbers, no verdict, and why."""
    return {
        "target": target,
        "passed": None,
        "verdict": NOT_JUDGED,
        "reasons": [f"{NOT_JUDGED}: {why}"],
        "requested_rate": None,
        "achieved_rate": None,
        "success_rate": None,
        "p50_ms": None,
        "p95_ms": None,
        "p99_ms": None,
        "report_path": None,
    }


def stress_schedule(rate: Any, duration_s: Any, ramp: Any) -> Schedule:
    """The arrival schedule: a ``ramp`` ({start, end, duration_s, steps}), else ``rate`` for ``duration_s``."""
    if ramp:
        ramp = rendered_json(ramp, {})
        return Schedule.ramp(
            float(ramp["start"]), float(ramp["end"]), float(ramp["duration_s"]), int(ramp.get("steps", 10))
        )
    return Schedule.constant(float(rate), float(duration_s))


def stress_target(endpoint_name: str, deployment_name: str | None) -> str:
    return f"{endpoint_name}/{deployment_name}" if deployment_name else endpoint_name


def stress_request(
    platform: MLPlatform, endpoint_name: str, deployment_name: str | None, package_path: str
) -> tuple[RequestSpec, float | None]:
    """The package's sample request to the endpoint's scoring URI, with its key (and deployment header),
    and until when (epoch seconds) that key may be used: None for a key that does not expire."""
    body = ModelPackage.load(package_path).sample_request_body()
    endpoint = platform.get_endpoint(endpoint_name)
    auth, until = platform.scoring_headers_until(endpoint_name)
    headers = {**auth, "Content-Type": "application/json"}
    if deployment_name:
        headers[DEPLOYMENT_HEADER] = deployment_name
    return RequestSpec(endpoint.scoring_uri, body=body, headers=headers), until


def judge_stress(
    operator: BaseOperator,
    context: Context,
    result: LoadResult,
    slo: SLO,
    target: str,
    *,
    fail_on_breach: bool,
    report_dir: str | None,
    extra: dict[str, Any] | None = None,
    notes: Sequence[str] = (),
) -> dict[str, Any]:
    """Judge a stress result against the SLO, write its report, log it; the summary for XCom.

    ``extra`` goes into the report beside the result (a split load's parts), ``notes`` into the log
    with the result's own. A breach fails the task when ``fail_on_breach``.
    """
    verdict = evaluate_slo(slo, result)
    latency = result.latency.percentiles()
    summary = {
        "target": target,
        "passed": verdict.passed,
        "reasons": list(verdict.reasons),
        "requested_rate": round(result.requested_rate, 1),
        "achieved_rate": round(result.achieved_rate, 1),
        "success_rate": round(result.success_rate, 5),
        "p50_ms": latency.p50,
        "p95_ms": latency.p95,
        "p99_ms": latency.p99,
    }
    run = context["dag_run"].run_id
    path = report_path(report_dir, context["dag"].dag_id, run, operator.task_id, suffix=".json")
    write_json(path, {"summary": summary, "slo": verdict.to_dict(), "result": result.to_dict(), **(extra or {})})
    summary["report_path"] = str(path)
    operator.log.info(
        "stress test of %s %s: %.1f of %.1f requests/s, p99 %.1f ms, success %.3f%% (report %s)",
        target,
        "PASSED" if verdict.passed else "FAILED",
        result.achieved_rate,
        result.requested_rate,
        latency.p99 or 0.0,
        100 * result.success_rate,
        path,
    )
    for note in [*result.notes(), *notes]:
        operator.log.warning("%s", note)
    if not verdict.passed and fail_on_breach:
        raise AirflowException(f"stress test of {target} breached its SLO: " + "; ".join(verdict.reasons))
    return summary


class ProfileOperator(MLPlatformOperator):
    """Find the cheapest resource configuration that serves ``target_rate`` within the SLO.

    Each candidate is deployed to the test endpoint, searched for its highest sustainable
    rate, and deleted again (also when the task fails or is killed). Writes the JSON report
    (the fields of Azure ML v1 ``Model.profile`` plus cost) and an HTML chart; returns the
    recommendation and both paths.
    """

    template_fields: Sequence[str] = (
        *MLPlatformOperator.template_fields,
        "endpoint_name",
        "model",
        "package_path",
        "candidates",
        "slo",
        "target_rate",
        "headroom",
        "prices",
        "settings",
        "report_dir",
    )
    template_fields_renderers = {"candidates": "json", "slo": "json", "prices": "json", "settings": "json"}
    ui_color = "#e6dcf5"
    operator_extra_links = (ProfileChartLink(), ProfileReportLink())

    def __init__(
        self,
        *,
        endpoint_name: str,
        model: str,
        package_path: str,
        candidates: list[dict[str, Any]] | str | None = None,
        slo: dict[str, Any] | str | None = None,
        target_rate: float | str | None = None,
        headroom: float | str | None = None,
        prices: dict[str, Any] | str | None = None,
        settings: dict[str, Any] | str | None = None,
        report_dir: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.endpoint_name = endpoint_name
        self.model = model
        self.package_path = package_path
        self.candidates = candidates
        self.slo = slo
        self.target_rate = target_rate
        self.headroom = headroom
        self.prices = prices
        self.settings = settings or {}
        self.report_dir = report_dir
        self._created: list[str] = []

    @cached_property
    def defaults(self) -> dict[str, Any]:
        return json.loads(DEFAULTS_FILE.read_text())

    def _value(self, name: str) -> Any:
        """The rendered field, or the default profiling settings' value when it was left empty."""
        value = getattr(self, name)
        if name in ("candidates", "slo", "prices"):
            value = rendered_json(value)
        return self.defaults[name] if value in (None, "") else value

    def profile_settings(self) -> ProfileSettings:
        """The rendered search settings, over ProfileSettings' defaults."""
        from deployflow.profiling.runner import ProfileSettings

        try:
            return ProfileSettings(**rendered_json(self.settings, {}))
        except TypeError as e:
            raise AirflowFailException(f"profile settings: {e}") from e

    def execute(self, context: Context) -> dict[str, Any]:
        return self.run_profile(context)

    def run_profile(self, context: Context, split: SplitLeader | None = None) -> dict[str, Any]:
        """The whole profile, its steps above max_rate_per_worker split over the parts when `split` leads."""
        from deployflow.profiling import Candidate, PriceTable, render_html
        from deployflow.profiling.runner import run_profile

        settings = self.profile_settings()
        try:
            candidates = [Candidate.from_dict(c) for c in self._value("candidates")]
            prices = PriceTable.from_dict(self._value("prices"))
            slo, target, headroom = (
                parse_slo(self._value("slo")),
                float(self._value("target_rate")),
                float(self._value("headroom")),
            )
        except (ValueError, TypeError) as e:
            raise AirflowFailException(f"profile inputs: {e}") from e
        body = ModelPackage.load(self.package_path).sample_request_body()
        try:
            run = run_profile(
                self.platform,
                endpoint=self.endpoint_name,
                model=ModelRef.parse(self.model),
                package_path=self.package_path,
                request_body=body,
                candidates=candidates,
                slo=slo,
                target_rate=target,
                prices=prices,
                headroom=headroom,
                settings=settings,
                on_created=self._created.append,
                split=split,
            )
        except PlatformError as e:
            error = AirflowFailException if is_refusal(e) else AirflowException  # a refused candidate stays refused
            raise error(f"profile on {self.endpoint_name} failed: {e}") from e
        base = report_path(
            self.report_dir, context["dag"].dag_id, context["dag_run"].run_id, self.task_id, suffix=".json"
        )
        write_json(base, run.report)
        chart = write_atomically(base.with_suffix(".html"), render_html(run.report))
        chosen = run.report["recommendation"]
        self.log.info("profile report %s, chart %s; %s", base, chart, run.report["reason"])
        if chosen is None:  # measured with care already: a retry repeats minutes of load for the same answer
            raise AirflowFailException(
                f"no candidate met the SLO: {run.report['reason']} (report {base}); "
                "add larger candidates, loosen the SLO or lower target_rate"
            )
        return {**chosen, "report_path": str(base), "chart_path": str(chart), "loadSteps": run.report["loadSteps"],
                "wallTimeSeconds": run.report["wallTimeSeconds"]}  # fmt: skip

    def on_kill(self) -> None:
        """A killed profile deletes the deployments it created."""
        for name in self._created:
            remove = partial(self.platform.delete_deployment, self.endpoint_name, name)
            remove_quietly(remove, f"delete profiling deployment {self.endpoint_name}/{name}", self.log)
