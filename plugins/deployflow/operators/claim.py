"""Claim an endpoint for one run, and release it: runs for one endpoint wait their turn.

The DAG has no ``max_active_runs=1``: runs for different endpoints go side by side. A run for
an endpoint another run holds *waits* — deferred, in the triggerer, holding no worker slot —
and goes on when the claim is released (see :mod:`deployflow.platform.claims`). A claim left
by a run that is no longer running (killed, marked failed) is taken over, with a warning that
names it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from airflow.sdk import Context

from deployflow.operators.base import MLPlatformOperator
from deployflow.platform.claims import claim, release
from deployflow.rollout.ledger import read_ledger, write_ledger
from deployflow.rollout.runner import roll_back
from deployflow.triggers.ml_platform import EndpointClaimTrigger

ACTIVE_RUN_STATES = {"queued", "running"}


def run_label(context: Context) -> str:
    """``dag_id/run_id``: what the claim tag holds, and how Airflow finds the run again."""
    return f"{context['dag'].dag_id}/{context['run_id']}"


class ClaimEndpointOperator(MLPlatformOperator):
    """Hold ``endpoint_name`` for this run, waiting (deferred) while another running run holds it."""

    template_fields: Sequence[str] = (*MLPlatformOperator.template_fields, "endpoint_name", "compute")
    ui_color = "#f3ecd9"

    def __init__(
        self,
        *,
        endpoint_name: str,
        compute: str | None = None,
        poll_interval: float = 5.0,
        recheck_after_s: float = 120.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.endpoint_name = endpoint_name
        self.compute = compute
        self.poll_interval = poll_interval
        self.recheck_after_s = recheck_after_s

    def execute(self, context: Context) -> dict[str, str]:
        me = run_label(context)
        held_by = claim(self.platform, self.endpoint_name, me, compute=self.compute or None)
        if held_by is not None and not self._is_running(context, held_by):
            self.log.warning(
                "endpoint %s is held by run %s, which is no longer running: taking the claim over",
                self.endpoint_name,
                held_by,
            )
            held_by = claim(self.platform, self.endpoint_name, me, compute=self.compute or None, force=True)
        if held_by is None:
            self.log.info("endpoint %s is held by this run (%s) until release_endpoint", self.endpoint_name, me)
            return {"endpoint": self.endpoint_name, "claimed_by": me}
        self.log.info("endpoint %s is held by run %s: waiting, deferred (no slot held)", self.endpoint_name, held_by)
        self.defer(
            trigger=EndpointClaimTrigger(
                ml_platform_conn_id=self.ml_platform_conn_id,
                endpoint_name=self.endpoint_name,
                held_by=held_by,
                deadline=time.time() + self.recheck_after_s,
                poll_interval=self.poll_interval,
            ),
            method_name="execute_complete",
            timeout=timedelta(days=1),
        )

    def execute_complete(self, context: Context, event: dict[str, Any]) -> dict[str, str]:
        """The holder released the claim, or it is time to look again: try once more."""
        return self.execute(context)

    @staticmethod
    def _is_running(context: Context, label: str) -> bool:
        dag_id, _, run_id = label.partition("/")
        try:
            state = context["ti"].get_dagrun_state(dag_id, run_id)
        except Exception:  # noqa: BLE001 - a run Airflow cannot find (deleted) holds nothing
            return False
        # a DagRunState, a (str, Enum): str() of it is "DagRunState.RUNNING", its value compares equal
        return state in ACTIVE_RUN_STATES


class ReleaseEndpointOperator(MLPlatformOperator):
    """Give up this run's claim on ``endpoint_name`` (a teardown: it runs whatever happened before).

    A rollout this run began and did not finish — the approval was never given, timed out, or
    its task failed or was killed — is rolled back first: the endpoint is left as it was before
    the run, the old deployment at 100 % and the new one removed.
    """

    template_fields: Sequence[str] = (*MLPlatformOperator.template_fields, "endpoint_name")
    ui_color = "#f3ecd9"

    def __init__(self, *, endpoint_name: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.endpoint_name = endpoint_name

    def execute(self, context: Context) -> str:
        me = run_label(context)
        ledger = read_ledger(self.platform, self.endpoint_name)
        if ledger is not None and ledger.run == me:
            self.log.warning(
                "endpoint %s: this run's rollout of %s did not finish; rolling back to %s",
                self.endpoint_name,
                ledger.new,
                ledger.old,
            )
            roll_back(self.platform, self.endpoint_name, ledger.new, ledger.old, self.log)
            write_ledger(self.platform, self.endpoint_name, None)
        done = release(self.platform, self.endpoint_name, me)
        self.log.info("%s", done)
        return done
