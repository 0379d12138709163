"""A release gate: a human approves or rejects in Airflow, and the release runs only when approved."""

from __future__ import annotations

from datetime import timedelta

from airflow.providers.standard.operators.hitl import ApprovalOperator
from airflow.sdk import dag, task


@dag(schedule=None, tags=["real-airflow-test"])
def approval():
    gate = ApprovalOperator(
        task_id="gate",
        subject="Release {{ dag_run.conf['model'] }}?",
        body="Shadow traffic looked fine for {{ dag_run.conf['model'] }}.",
        defaults="Reject",
        response_timeout=timedelta(minutes=10),
    )

    @task
    def release() -> str:
        return "released"

    gate >> release()


approval()
