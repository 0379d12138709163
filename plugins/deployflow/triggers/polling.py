"""The one polling loop behind every deployflow trigger.

A trigger here says what one poll reads and what it means; the loop, the poll interval, the
wall-clock deadline, serialisation, running the synchronous poll off the event loop, the single
event and closing what the trigger opened are written once, below.
"""

from __future__ import annotations

import asyncio
import time
from abc import abstractmethod
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, ClassVar

from airflow.triggers.base import BaseTrigger, TriggerEvent

from deployflow.hooks.ml_platform import MLPlatformHook
from deployflow.platform.errors import PlatformError

SUCCESS = "success"
ERROR = "error"


@dataclass(frozen=True)
class Reading:
    """What one poll saw: ``status`` is None while the wait goes on, else the event's status.

    ``message`` is the event's message when the wait ends, the log line while it goes on (and,
    with "at its deadline" added, the error message when the deadline passes).
    """

    message: str
    status: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def waiting(cls, message: str, **details: Any) -> Reading:
        return cls(message, None, details)

    @classmethod
    def success(cls, message: str, **details: Any) -> Reading:
        return cls(message, SUCCESS, details)

    @classmethod
    def error(cls, message: str, **details: Any) -> Reading:
        return cls(message, ERROR, details)


class PollingTrigger(BaseTrigger):
    """Polls until ``poll()`` says the wait is over or ``deadline`` passes, then yields one event.

    Subclasses declare ``serialized_fields`` (every constructor argument, as attributes of the
    same name: ``serialize()`` returns them) and ``event_fields`` (attributes every event
    carries besides status and message), and implement ``poll()``. ``deadline`` is a wall-clock
    epoch second (None: no deadline), so a trigger restarted by another triggerer keeps the
    operator's deadline. ``close()`` runs however the wait ends: event, error or cancellation.
    """

    serialized_fields: ClassVar[tuple[str, ...]]
    event_fields: ClassVar[tuple[str, ...]] = ()
    #: errors ``poll()`` may raise that ``on_poll_error`` answers; any other ends the trigger
    poll_errors: ClassVar[tuple[type[Exception], ...]] = ()
    poll_interval: float
    deadline: float | None = None

    def serialize(self) -> tuple[str, dict[str, Any]]:
        kwargs = {name: getattr(self, name) for name in self.serialized_fields}
        return f"{type(self).__module__}.{type(self).__qualname__}", kwargs

    @abstractmethod
    def poll(self) -> Reading:
        """Look once (synchronous: it runs in a worker thread, off the triggerer's event loop)."""

    def on_poll_error(self, error: Exception) -> Reading | None:
        """A poll raised one of ``poll_errors``: end with this reading, or None to poll again."""
        return Reading.error(str(error))

    def close(self) -> None:
        """Release the clients the polls opened; the next poll, or ``on_kill``, opens new ones."""

    def stop_remote_work(self) -> None:
        """What stopping the waiting task does to the remote work (synchronous, in a thread); by
        default nothing. Only a user's action calls it, never a triggerer restart."""

    def event(self, reading: Reading) -> TriggerEvent:
        ids = {name: getattr(self, name) for name in self.event_fields}
        return TriggerEvent({"status": reading.status, "message": reading.message, **ids, **reading.details})

    async def run(self) -> AsyncIterator[TriggerEvent]:
        try:
            while True:
                reading = await self._poll_once()  # None: a poll error this trigger waits out
                if reading is not None and reading.status is not None:
                    yield self.event(reading)
                    return
                if self._past_deadline():
                    last = reading or Reading.waiting(f"{type(self).__name__} had no answer")
                    yield self.event(Reading.error(f"{last.message} at its deadline", **last.details))
                    return
                if reading is not None:
                    self.log.info("%s", reading.message)
                await asyncio.sleep(self._pause())
        finally:
            self.close()  # quick and synchronous, so it also runs while the task is being cancelled

    async def on_kill(self) -> None:
        try:
            await asyncio.to_thread(self.stop_remote_work)
        finally:
            self.close()

    async def _poll_once(self) -> Reading | None:
        try:
            return await asyncio.to_thread(self.poll)
        except self.poll_errors as e:
            return self.on_poll_error(e)

    def _past_deadline(self) -> bool:
        return self.deadline is not None and time.time() >= self.deadline

    def _pause(self) -> float:
        if self.deadline is None:
            return self.poll_interval
        return min(self.poll_interval, max(self.deadline - time.time(), 0.1))


class PlatformPollingTrigger(PollingTrigger):
    """A polling trigger on the ML platform behind ``ml_platform_conn_id``.

    A platform error ends the wait with an error event; the platform's HTTP clients are closed
    when the wait ends and after ``on_kill``.
    """

    poll_errors = (PlatformError,)
    ml_platform_conn_id: str

    @cached_property
    def hook(self) -> MLPlatformHook:
        return MLPlatformHook(ml_platform_conn_id=self.ml_platform_conn_id)

    def close(self) -> None:
        self.hook.close()
