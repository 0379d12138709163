"""Extra links on the stress test, profile and promote tasks: their reports, served by the plugin's app.

Airflow 3 computes a task's extra links when the task ends, on the worker, and keeps them in
XCom; a link is empty (so not shown) when the task returned no path for that report.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from airflow.sdk import BaseOperatorLink, conf
from airflow.sdk.execution_time.xcom import XCom

from deployflow.ui.routes import REPORT_KEYS, report_route

if TYPE_CHECKING:
    from airflow.sdk import BaseOperator
    from airflow.sdk.types import TaskInstanceKey


class ReportLink(BaseOperatorLink):
    """A link to one kind of report of the task instance, if its return value names that report's file."""

    kind: ClassVar[str]

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        returned: Any = XCom.get_value(ti_key=ti_key, key="return_value")
        if not isinstance(returned, dict) or not returned.get(REPORT_KEYS[self.kind]):
            return ""
        base = (conf.get("api", "base_url", fallback="") or "").rstrip("/")
        return base + report_route(ti_key.dag_id, ti_key.run_id, ti_key.task_id, self.kind)


class StressReportLink(ReportLink):
    name = "Stress test report"
    kind = "report"


class ProfileChartLink(ReportLink):
    name = "Profile chart"
    kind = "chart"


class ProfileReportLink(ReportLink):
    name = "Profile report (JSON)"
    kind = "report"


class RolloutTimelineLink(ReportLink):
    name = "Rollout timeline"
    kind = "timeline"


class RolloutRecordLink(ReportLink):
    name = "Rollout decision record (JSON)"
    kind = "record"


ALL_LINKS = (StressReportLink, ProfileChartLink, ProfileReportLink, RolloutTimelineLink, RolloutRecordLink)
