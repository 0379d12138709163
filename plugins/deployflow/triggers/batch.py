"""The trigger that waits for a batch-scoring job in the triggerer, so no worker slot is held."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from deployflow.hooks.ml_platform import MLPlatformHook
from deployflow.platform.errors import PlatformError


class BatchJobStateTrigger(BaseTrigger):
    """Polls a batch job until it is Completed, Failed or Canceled, or the deadline passes.

    ``deadline`` is a wall-clock epoch second, so a trigger restarted by another triggerer keeps
    the operator's deadline. Yields one event: ``status`` success or error, ``job_id``, and the
    job's last known state under ``job`` (absent when the platform could not be read).

    A user who stops the deferred task (mark failed or success, clear) cancels the job: the
    triggerer calls ``on_kill`` then, and only then; a triggerer that restarts or hands the
    trigger to another leaves the job running.
    """

    def __init__(self, *, ml_platform_conn_id: str, job_id: str, deadline: float, poll_interval: float = 10.0) -> None:
        super().__init__()
        self.ml_platform_conn_id = ml_platform_conn_id
        self.job_id = job_id
        self.deadline = deadline
        self.poll_interval = poll_interval

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "ml_platform_conn_id": self.ml_platform_conn_id,
                "job_id": self.job_id,
                "deadline": self.deadline,
                "poll_interval": self.poll_interval,
            },
        )

    def _event(self, status: str, message: str, **extra: Any) -> TriggerEvent:
        return TriggerEvent({"status": status, "message": message, "job_id": self.job_id, **extra})

    async def run(self) -> AsyncIterator[TriggerEvent]:
        hook = MLPlatformHook(ml_platform_conn_id=self.ml_platform_conn_id)
        try:
            while True:
                state = await asyncio.to_thread(lambda: hook.platform.get_batch_job(self.job_id))
                if state.succeeded:
                    yield self._event("success", f"batch job {self.job_id} completed", job=state.to_dict())
                    return
                if state.done:
                    message = f"batch job {self.job_id} is {state.status}: {state.error or 'no reason given'}"
                    yield self._event("error", message, job=state.to_dict())
                    return
                if time.time() >= self.deadline:
                    message = f"batch job {self.job_id} still {state.status} at its deadline"
                    yield self._event("error", message, job=state.to_dict())
                    return
                self.log.info("batch job %s is %s", self.job_id, state.status)
                await asyncio.sleep(min(self.poll_interval, max(self.deadline - time.time(), 0.1)))
        except PlatformError as e:
            yield self._event("error", str(e))

    async def on_kill(self) -> None:
        """The task was stopped while it waited here: cancel its job, as the operator's ``on_kill`` would."""
        hook = MLPlatformHook(ml_platform_conn_id=self.ml_platform_conn_id)
        try:
            state = await asyncio.to_thread(lambda: hook.platform.cancel_batch_job(self.job_id))
        except PlatformError as e:
            self.log.warning("the task was stopped, but batch job %s could not be canceled: %s", self.job_id, e)
            return
        self.log.info("the task was stopped while waiting: batch job %s is %s", self.job_id, state.status)
