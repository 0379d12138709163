"""The person's say in a rollout: Airflow's own ``ApprovalOperator``, with a deadline each run sets.

A timeout is a rejection. The operator gives Airflow the default ``Reject``: when nobody answers
by the deadline, Airflow itself records that default as the answer (the scheduler's sweep of
tasks awaiting input, or the HITL trigger before Airflow 3.3), the downstream
``continue_promotion`` is skipped as for any Reject, and ``rollback_if_rejected`` puts the
endpoint back as it was before the run. The subject and body tell the person the deadline and
what happens at it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from airflow.providers.standard.operators.hitl import ApprovalOperator
from airflow.sdk import Context
from airflow.sdk.bases.xcom import BaseXCom
from airflow.sdk.exceptions import AirflowFailException
from airflow.sdk.timezone import utcnow

#: how long a person has to answer when the run does not say (the DAG's approval_timeout_minutes)
DEFAULT_TIMEOUT_MINUTES = 24 * 60
XCOM_RETURN_KEY = BaseXCom.XCOM_RETURN_KEY


def approval_timeout(minutes: Any, step_timeout_s: Any = None) -> timedelta:
    """How long the person has: the plan step's own ``approve timeout Ns`` when it has one, else ``minutes``."""
    if step_timeout_s is not None:
        return timedelta(seconds=float(step_timeout_s))  # the plan parser checked it: a number > 0
    try:
        value = float(minutes)
    except (TypeError, ValueError):
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise AirflowFailException(
            f"approval_timeout_minutes must be a number of minutes above 0 (1440 is a day, 0.5 is 30 s), "
            f"got {minutes!r}"
        )
    return timedelta(minutes=value)


def duration_text(timeout: timedelta) -> str:
    """A timeout as a person reads it: '24 h', '1 h 30 min', '15 s'."""
    seconds = round(timeout.total_seconds())
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    parts = [f"{hours} h" if hours else "", f"{minutes} min" if minutes else "", f"{seconds} s" if seconds else ""]
    return " ".join(p for p in parts if p) or "0 s"


def deadline_text(deadline: datetime) -> str:
    return f"{deadline:%Y-%m-%d %H:%M:%S} UTC"


class RolloutApprovalOperator(ApprovalOperator):
    """Ask a person to Approve or Reject a paused rollout, with a deadline after which it is rejected.

    ``timeout_minutes`` is templated (a DAG Param); the paused rollout's own step timeout, read
    from ``rollout_task_id``'s XCom (``approval_timeout_s``), wins when the plan gave one. The
    answer pushed to XCom is ApprovalOperator's, plus ``timed_out`` (True when Airflow took the
    default because nobody answered) and ``timeout_s``.
    """

    template_fields: Sequence[str] = (*ApprovalOperator.template_fields, "timeout_minutes")

    def __init__(
        self,
        *,
        timeout_minutes: float | str = DEFAULT_TIMEOUT_MINUTES,
        rollout_task_id: str | None = None,
        **kwargs: Any,
    ) -> None:
        for fixed in ("defaults", "response_timeout"):
            if fixed in kwargs:
                raise ValueError(f"{fixed} is set by RolloutApprovalOperator (Reject, after timeout_minutes)")
        super().__init__(defaults=self.REJECT, **kwargs)
        self.timeout_minutes = timeout_minutes
        self.rollout_task_id = rollout_task_id

    def _timeout(self, context: Context) -> timedelta:
        paused = context["ti"].xcom_pull(task_ids=self.rollout_task_id) if self.rollout_task_id else None
        return approval_timeout(self.timeout_minutes, (paused or {}).get("approval_timeout_s"))

    def execute(self, context: Context) -> Any:
        self.response_timeout = self._timeout(context)
        deadline = utcnow() + self.response_timeout
        within = duration_text(self.response_timeout)
        self.subject = f"{self.subject} (no answer by {deadline_text(deadline)}: rejected)"
        self.body = (
            f"{self.body or ''}\n\n**Answer within {within}, by {deadline_text(deadline)}.** With no answer by "
            "then the rollout is **rejected** and rolled back, as if Reject had been chosen."
        )
        self.log.info("asking for approval; no answer within %s (by %s) rejects", within, deadline_text(deadline))
        return super().execute(context)

    def execute_complete(self, context: Context, event: dict[str, Any]) -> Any:
        if "error" in event:  # no answer and no default: not this operator's case, but Airflow's error stands
            return super().execute_complete(context=context, event=event)
        timeout, responded_at = self._timeout(context), event.get("responded_at")
        answer = {
            "chosen_options": list(event.get("chosen_options") or []),
            "params_input": event.get("params_input") or {},
            "responded_at": responded_at.isoformat() if isinstance(responded_at, datetime) else responded_at,
            "responded_by_user": event.get("responded_by_user"),
            "timed_out": bool(event.get("timedout")),
            "timeout_s": timeout.total_seconds(),
        }
        if answer["timed_out"]:
            self.log.warning("nobody answered within %s: Airflow took the default Reject", duration_text(timeout))
        # On Reject, ApprovalOperator skips continue_promotion by raising (Airflow 3's SkipMixin), so a
        # returned value would never reach XCom, and rollback_if_rejected could not read the answer.
        context["ti"].xcom_push(key=XCOM_RETURN_KEY, value=answer)
        super().execute_complete(context=context, event=event)
        return answer
