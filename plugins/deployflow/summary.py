"""The real-time run in a few lines: what a person wants to read at the end of the DAG."""

from __future__ import annotations

import logging
from typing import Any

from deployflow.hooks.ml_platform import DEFAULT_CONN_ID
from deployflow.rollout.release import ROLLED_BACK

log = logging.getLogger(__name__)


def keys_command(endpoint: str | None, conn_id: str) -> str | None:
    """The one command that shows the endpoint's keys (the summary itself never holds them)."""
    if not endpoint:
        return None
    return f"deployflow keys {endpoint}" + ("" if conn_id == DEFAULT_CONN_ID else f" --conn-id {conn_id}")


def realtime_summary(ti: Any, *, conn_id: str = DEFAULT_CONN_ID) -> dict[str, Any]:
    """Collect the stages' XCom results (references and figures, no secrets) and log them."""
    rolled_back = ti.xcom_pull(task_ids="rollback_if_rejected") or {}
    if rolled_back.get("status") != ROLLED_BACK:  # rejected, or timed out at the approval: its report, with why
        rolled_back = {}
    rollout = rolled_back or ti.xcom_pull(task_ids="continue_promotion") or ti.xcom_pull(task_ids="promote") or {}
    profile = ti.xcom_pull(task_ids="profile") or {}
    stress = ti.xcom_pull(task_ids="stress_test") or {}
    validation = ti.xcom_pull(task_ids="validate") or {}
    smoke = ti.xcom_pull(task_ids="smoke_test") or {}
    summary = {
        "endpoint": rollout.get("endpoint_name"),
        "scoring_uri": rollout.get("scoring_uri"),
        "keys": keys_command(rollout.get("endpoint_name"), conn_id),
        "warnings": [*validation.get("warnings", []), *smoke.get("warnings", [])],
        "model": rollout.get("model"),
        "deployment": rollout.get("new"),
        "replaced": rollout.get("old"),
        "rollout": rollout.get("status"),
        "rollout_reason": rollout.get("reason"),
        "rollout_decisions": [f"step {d['step_index'] + 1}: {d['outcome']}" for d in rollout.get("decisions", [])],
        "decision_record": rollout.get("decision_record"),
        "rollout_timeline": rollout.get("timeline_path"),
        "chosen_config": profile.get("recommendedConfig"),
        "cpu": profile.get("recommendedCpu"),
        "memory_gb": profile.get("recommendedMemoryInGB"),
        "instances": profile.get("recommendedInstanceCount"),
        "cost_per_hour": profile.get("costPerHour"),
        "profile_report": profile.get("report_path"),
        "profile_chart": profile.get("chart_path"),
        "stress_test": {k: stress.get(k) for k in ("passed", "achieved_rate", "p99_ms", "report_path")},
    }
    for key, value in summary.items():
        log.info("%-18s %s", key, value)
    return summary
