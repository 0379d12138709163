"""A profile whose load steps are split over workers: plan the parts, run them together, keep the leader's report.

    plan = PlanProfileSplitOperator(task_id="profile_plan", settings=...)
    parts = ProfileLoadOperator.partial(task_id="profile_load", ...).expand(part=plan.output)
    ProfileResultOperator(task_id="profile", parts=parts.output)

The search is adaptive, so its steps cannot be mapped upfront: every part runs for the whole profile
(`deployflow.profiling.split`). Part 0 leads, as ProfileOperator does alone; for a step above
``max_rate_per_worker`` the parts meet through XCom: the leader pushes ``step-<n>`` (no key in it), each
needed follower pushes its shard's result under ``result-<n>``, and the leader pushes ``done`` however it
ends. One part (the default, up to 20,000 requests/s) is today's profile, with no coordination at all.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.sdk import BaseOperator, Context
from airflow.sdk.exceptions import AirflowFailException

from deployflow.loadtest.split import DEFAULT_MAX_RATE_PER_WORKER, DEFAULT_START_LEAD_S
from deployflow.operators.base import rendered_json
from deployflow.operators.load import ProfileOperator
from deployflow.operators.stress_split import number_field
from deployflow.packages import ModelPackage
from deployflow.profiling.split import ProfilePart, SplitLeader, SplitProfileError, follow, plan_profile
from deployflow.ui.links import ProfileChartLink, ProfileReportLink

# A task that ended (or waits for a retry): it will not post again in this try.
FINISHED_STATES = frozenset(
    {"success", "failed", "skipped", "upstream_failed", "removed", "up_for_retry", "up_for_reschedule"}
)


class XComBoard:
    """The parts of one profile meet in XCom: each pushes under its own keys and pulls any part's.

    A running task's pushes are stored at once by the API server, and a pull reads what is stored, so
    two running mapped tasks of one task see each other's keys (checked on Airflow 3.3's Task SDK).
    """

    def __init__(self, ti: Any, task_id: str) -> None:
        self.ti = ti
        self.task_id = task_id

    def post(self, key: str, value: dict[str, Any]) -> None:
        self.ti.xcom_push(key=key, value=value)

    def read(self, part: int, key: str) -> dict[str, Any] | None:
        return self.ti.xcom_pull(task_ids=self.task_id, map_indexes=part, key=key)

    def leader_running(self) -> bool:
        states = self.ti.get_task_states(
            dag_id=self.ti.dag_id, map_index=0, task_ids=[self.task_id], run_ids=[self.ti.run_id]
        )
        state = states.get(self.ti.run_id, {}).get(f"{self.task_id}_0")
        return state not in FINISHED_STATES


class PlanProfileSplitOperator(BaseOperator):
    """How many parts the profile runs as: its ``max_rate`` over the settings' ``max_rate_per_worker``.

    Returns one dict per part (index, parts, ready_timeout_s) to expand ``ProfileLoadOperator`` over.
    The followers must be running within ``ready_timeout_s`` of the leader's start (or of their own).
    """

    template_fields: Sequence[str] = ("settings", "ready_timeout_s")
    template_fields_renderers = {"settings": "json"}
    ui_color = "#e6dcf5"

    def __init__(
        self, *, settings: dict[str, Any] | str | None = None, ready_timeout_s: float | str | None = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.settings = settings
        self.ready_timeout_s = ready_timeout_s

    def execute(self, context: Context) -> list[dict[str, Any]]:
        from deployflow.profiling.runner import ProfileSettings

        settings = rendered_json(self.settings, {}) or {}
        max_rate = number_field(settings.get("max_rate"), ProfileSettings.max_rate, "profile max_rate")
        per_worker = number_field(
            settings.get("max_rate_per_worker"), DEFAULT_MAX_RATE_PER_WORKER, "profile max_rate_per_worker"
        )
        timeout = number_field(self.ready_timeout_s, DEFAULT_START_LEAD_S, "ready_timeout_s")
        try:
            parts = plan_profile(max_rate, per_worker, ready_timeout_s=timeout)
        except ValueError as e:
            raise AirflowFailException(f"profile load split: {e}") from e
        self.log.info(
            "profile up to %g requests/s in %d part(s) of at most %g requests/s", max_rate, len(parts), per_worker
        )
        return [part.to_dict() for part in parts]


class ProfileLoadOperator(ProfileOperator):
    """One part of a profile: part 0 profiles (as ``ProfileOperator``), the others send shares of its steps.

    With one part this is exactly ``ProfileOperator``. A follower returns what it served; it fetches the
    endpoint's key itself, so none goes through XCom.
    """

    template_fields: Sequence[str] = (*ProfileOperator.template_fields, "part")
    template_fields_renderers = {**ProfileOperator.template_fields_renderers, "part": "json"}
    operator_extra_links = ()  # the reports are linked from the `profile` task, which returns the leader's

    def __init__(self, *, part: dict[str, Any] | str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.part = part

    def execute(self, context: Context) -> dict[str, Any]:
        try:
            part = ProfilePart.from_dict(rendered_json(self.part, {}))
        except ValueError as e:
            raise AirflowFailException(f"profile load part: {e}") from e
        if part.parts == 1:
            return self.run_profile(context)
        board = XComBoard(context["ti"], self.task_id)
        settings = self.profile_settings()
        if not part.leads:
            return self._follow(board, part, settings)
        try:
            leader = SplitLeader(board, part, settings.max_rate_per_worker, step_lead_s=settings.step_start_lead_s)
        except ValueError as e:
            raise AirflowFailException(f"profile load split: {e}") from e
        self.log.info("profile part 0 of %d leads: steps above %g requests/s are split", part.parts,
                      settings.max_rate_per_worker)  # fmt: skip
        try:
            return self.run_profile(context, split=leader)
        except SplitProfileError as e:  # the parts did not run together: a retry alone would not
            raise AirflowFailException(f"profile on {self.endpoint_name}: {e}") from e
        finally:
            leader.finish()

    def _follow(self, board: XComBoard, part: ProfilePart, settings: Any) -> dict[str, Any]:
        from deployflow.profiling.runner import candidate_request

        body = ModelPackage.load(self.package_path).sample_request_body()
        scoring_uri = self.platform.get_endpoint(self.endpoint_name).scoring_uri

        def request_for(deployment: str) -> Any:  # asked before each step: a key fetched by this part, now
            return candidate_request(self.platform, self.endpoint_name, deployment, body, settings, scoring_uri)[0]

        self.log.info("profile part %d of %d follows part 0's steps", part.index, part.parts)
        try:
            followed = follow(board, part, request_for)
        except SplitProfileError as e:
            raise AirflowFailException(f"profile on {self.endpoint_name}: {e}") from e
        self.log.info("profile part %d sent its share of steps %s; left: %s", part.index, followed.served,
                      followed.reason)  # fmt: skip
        return followed.to_dict()


class ProfileResultOperator(BaseOperator):
    """The profile's answer, whatever the number of parts: the leader's recommendation and report paths."""

    template_fields: Sequence[str] = ("parts",)
    ui_color = "#e6dcf5"
    operator_extra_links = (ProfileChartLink(), ProfileReportLink())

    def __init__(self, *, parts: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.parts = parts

    def execute(self, context: Context) -> dict[str, Any]:
        leaders = [p for p in list(self.parts or []) if isinstance(p, dict) and not p.get("follower")]
        if len(leaders) != 1:
            raise AirflowFailException(
                f"a profile has one leading part; its parts returned {len(leaders)} reports: "
                "clear the whole profile_load task, not one of its parts"
            )
        (report,) = leaders
        self.log.info("profile: %s (report %s)", report.get("recommendedConfig"), report.get("report_path"))
        return report
