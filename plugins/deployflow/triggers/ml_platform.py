"""Triggers that wait on the ML platform in the triggerer, so no worker slot is held."""

from __future__ import annotations

from deployflow.platform.claims import holder
from deployflow.platform.errors import PlatformError
from deployflow.triggers.polling import PlatformPollingTrigger, Reading


class DeploymentStateTrigger(PlatformPollingTrigger):
    """Polls a deployment until it is Succeeded, Failed or Canceled, or the deadline passes.

    ``deadline`` is a wall-clock epoch second, so a trigger restarted by another triggerer
    keeps the operator's original deadline. Yields one event with ``status`` success or error.

    With ``delete_on_kill`` (the operator sets it when it created the deployment), a user who
    stops the deferred task (mark failed or success, clear) takes the half-created deployment
    with it, as the operator's own ``on_kill`` would. A triggerer that restarts or hands the
    trigger to another calls no ``on_kill`` and leaves it be.
    """

    serialized_fields = (
        "ml_platform_conn_id", "endpoint_name", "deployment_name", "deadline", "poll_interval", "delete_on_kill",
    )  # fmt: skip
    event_fields = ("endpoint_name", "deployment_name")

    def __init__(
        self,
        *,
        ml_platform_conn_id: str,
        endpoint_name: str,
        deployment_name: str,
        deadline: float,
        poll_interval: float = 5.0,
        delete_on_kill: bool = False,
    ) -> None:
        super().__init__()
        self.ml_platform_conn_id = ml_platform_conn_id
        self.endpoint_name = endpoint_name
        self.deployment_name = deployment_name
        self.deadline = deadline
        self.poll_interval = poll_interval
        self.delete_on_kill = delete_on_kill

    @property
    def _name(self) -> str:
        return f"{self.endpoint_name}/{self.deployment_name}"

    def poll(self) -> Reading:
        state = self.hook.platform.get_deployment(self.endpoint_name, self.deployment_name)
        if state.failed:
            message = f"deployment {self._name} is {state.provisioning_state}: {state.error or 'no reason given'}"
            return Reading.error(message, deployment=state.to_dict())
        if state.done:
            return Reading.success(f"deployment {self._name} is ready", deployment=state.to_dict())
        return Reading.waiting(f"deployment {self._name} still {state.provisioning_state}", deployment=state.to_dict())

    def stop_remote_work(self) -> None:
        """The task was stopped while it waited here: remove the deployment if this task created it."""
        if not self.delete_on_kill:
            return
        try:
            self.hook.platform.delete_deployment(self.endpoint_name, self.deployment_name)
        except PlatformError as e:
            self.log.warning("the task was stopped, but its new deployment %s could not be deleted: %s", self._name, e)
            return
        self.log.info("the task was stopped while waiting: deleted its new deployment %s", self._name)


class EndpointClaimTrigger(PlatformPollingTrigger):
    """Waits, in the triggerer, until the run ``held_by`` no longer holds the endpoint's claim.

    The deadline is a recheck, not a failure: when it passes the operator looks again (a
    holder that died without releasing is only recognised by asking Airflow, which the
    triggerer does not).
    """

    serialized_fields = ("ml_platform_conn_id", "endpoint_name", "held_by", "deadline", "poll_interval")
    event_fields = ("endpoint_name", "held_by")

    def __init__(
        self, *, ml_platform_conn_id: str, endpoint_name: str, held_by: str, deadline: float, poll_interval: float = 5.0
    ) -> None:
        super().__init__()
        self.ml_platform_conn_id = ml_platform_conn_id
        self.endpoint_name = endpoint_name
        self.held_by = held_by
        self.deadline = deadline
        self.poll_interval = poll_interval

    def poll(self) -> Reading:
        now = holder(self.hook.platform, self.endpoint_name)
        if now != self.held_by:
            return Reading.success(f"endpoint {self.endpoint_name} is no longer held by {self.held_by}")
        return Reading.waiting(f"endpoint {self.endpoint_name} is still held by {self.held_by}")
