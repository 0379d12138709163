"""Helpers for trigger tests: run a trigger to its first event, and see which clients it used."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from deployflow.triggers.polling import Reading


class RecordsClients:
    """Mixed in before a trigger class: keeps the client each poll used in ``opened``, so a test
    can check after the trigger ended that it was closed. ``client_in_use`` says which client."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.opened: list[Any] = []

    def client_in_use(self) -> Any:
        raise NotImplementedError(f"{type(self).__name__} must say which client it records")

    def poll(self) -> Reading:
        self.opened.append(self.client_in_use())
        return super().poll()  # type: ignore[misc]  # the trigger class mixed in after this one


async def first_event(trigger: Any) -> dict[str, Any]:
    """The payload of the trigger's first event; fails if it ends without one."""
    async for event in trigger.run():
        return event.payload
    raise AssertionError("the trigger ended without an event")


async def cancel_after_polls(trigger: RecordsClients, polls: int, *, timeout_s: float = 30) -> None:
    """Run the trigger until it has polled ``polls`` times without an event, then cancel it as the
    triggerer would; fails if it fires first, does not poll, or swallows the cancellation."""
    waiting = asyncio.create_task(first_event(trigger))
    deadline = time.monotonic() + timeout_s
    while len(trigger.opened) < polls:
        assert not waiting.done(), f"the trigger ended before its wait: {waiting.result()}"
        assert time.monotonic() < deadline, f"the trigger polled {len(trigger.opened)} time(s) in {timeout_s:g} s"
        await asyncio.sleep(0.02)
    waiting.cancel()
    try:
        await waiting
    except asyncio.CancelledError:
        return
    raise AssertionError("the trigger went on after it was cancelled")
