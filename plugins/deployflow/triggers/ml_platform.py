"""Triggers that wait on the ML platform in the triggerer, so no worker slot is held."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from deployflow.hooks.ml_platform import MLPlatformHook
from deployflow.platform.errors import PlatformError


class DeploymentStateTrigger(BaseTrigger):
    """Polls a deployment until it is Succeeded, Failed or Canceled, or the deadline passes.

    ``deadline`` is a wall-clock epoch second, so a trigger restarted by another triggerer
    keeps the operator's original deadline. Yields one event with ``status`` success or error.

    With ``delete_on_kill`` (the operator sets it when it created the deployment), a user who
    stops the deferred task (mark failed or success, clear) takes the half-created deployment
    with it, as the operator's own ``on_kill`` would. A triggerer that restarts or hands the
    trigger to another calls no ``on_kill`` and leaves it be.
    """

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

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "ml_platform_conn_id": self.ml_platform_conn_id,
                "endpoint_name": self.endpoint_name,
                "deployment_name": self.deployment_name,
                "deadline": self.deadline,
                "poll_interval": self.poll_interval,
                "delete_on_kill": self.delete_on_kill,
            },
        )

    def _event(self, status: str, message: str, **extra: Any) -> TriggerEvent:
        return TriggerEvent(
            {
                "status": status,
                "message": message,
                "endpoint_name": self.endpoint_name,
                "deployment_name": self.deployment_name,
                **extra,
            }
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        hook = MLPlatformHook(ml_platform_conn_id=self.ml_platform_conn_id)
        name = f"{self.endpoint_name}/{self.deployment_name}"
        try:
            while True:
                state = await asyncio.to_thread(
                    lambda: hook.platform.get_deployment(self.endpoint_name, self.deployment_name)
                )
                if state.done:
                    if state.failed:
                        message = f"deployment {name} is {state.provisioning_state}: {state.error or 'no reason given'}"
                        yield self._event("error", message, deployment=state.to_dict())
                    else:
                        yield self._event("success", f"deployment {name} is ready", deployment=state.to_dict())
                    return
                if time.time() >= self.deadline:
                    message = f"deployment {name} still {state.provisioning_state} at its deadline"
                    yield self._event("error", message, deployment=state.to_dict())
                    return
                self.log.info("deployment %s is %s", name, state.provisioning_state)
                await asyncio.sleep(min(self.poll_interval, max(self.deadline - time.time(), 0.1)))
        except PlatformError as e:
            yield self._event("error", str(e))

    async def on_kill(self) -> None:
        """The task was stopped while it waited here: remove the deployment if this task created it."""
        if not self.delete_on_kill:
            return
        hook = MLPlatformHook(ml_platform_conn_id=self.ml_platform_conn_id)
        name = f"{self.endpoint_name}/{self.deployment_name}"
        try:
            await asyncio.to_thread(lambda: hook.platform.delete_deployment(self.endpoint_name, self.deployment_name))
        except PlatformError as e:
            self.log.warning("the task was stopped, but its new deployment %s could not be deleted: %s", name, e)
            return
        self.log.info("the task was stopped while waiting: deleted its new deployment %s", name)
