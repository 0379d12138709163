"""The trigger that waits for a batch-scoring job in the triggerer, so no worker slot is held."""

from __future__ import annotations

from deployflow.platform.errors import PlatformError
from deployflow.triggers.polling import PlatformPollingTrigger, Reading


class BatchJobStateTrigger(PlatformPollingTrigger):
    """Polls a batch job until it is Completed, Failed or Canceled, or the deadline passes.

    ``deadline`` is a wall-clock epoch second, so a trigger restarted by another triggerer keeps
    the operator's deadline. Yields one event: ``status`` success or error, ``job_id``, and the
    job's last known state under ``job`` (absent when the platform could not be read).

    A user who stops the deferred task (mark failed or success, clear) cancels the job: the
    triggerer calls ``on_kill`` then, and only then; a triggerer that restarts or hands the
    trigger to another leaves the job running.
    """

    serialized_fields = ("ml_platform_conn_id", "job_id", "deadline", "poll_interval")
    event_fields = ("job_id",)

    def __init__(self, *, ml_platform_conn_id: str, job_id: str, deadline: float, poll_interval: float = 10.0) -> None:
        super().__init__()
        self.ml_platform_conn_id = ml_platform_conn_id
        self.job_id = job_id
        self.deadline = deadline
        self.poll_interval = poll_interval

    def poll(self) -> Reading:
        state = self.hook.platform.get_batch_job(self.job_id)
        if state.succeeded:
            return Reading.success(f"batch job {self.job_id} completed", job=state.to_dict())
        if state.done:
            message = f"batch job {self.job_id} is {state.status}: {state.error or 'no reason given'}"
            return Reading.error(message, job=state.to_dict())
        return Reading.waiting(f"batch job {self.job_id} still {state.status}", job=state.to_dict())

    def stop_remote_work(self) -> None:
        """The task was stopped while it waited here: cancel its job, as the operator's ``on_kill`` would."""
        try:
            state = self.hook.platform.cancel_batch_job(self.job_id)
        except PlatformError as e:
            self.log.warning("the task was stopped, but batch job %s could not be canceled: %s", self.job_id, e)
            return
        self.log.info("the task was stopped while waiting: batch job %s is %s", self.job_id, state.status)
