"""The runtime's batch capacity: a fixed number of worker slots, handed to jobs first come, first served.

Azure ML queues a job until its compute cluster has the nodes it asks for; the local runtime
queues a job until it has the worker slots it asks for, so two jobs dropped at once do not
share the machine's cores and both crawl. A job that asks for more slots than the runtime has
gets all of them. Waiters are served in order: a big job at the head is not overtaken by small
ones behind it, so none waits for ever.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator


class SlotPool:
    """``capacity`` worker slots; ``acquire(n)`` waits, in arrival order, until ``min(n, capacity)`` are free."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"the runtime needs at least 1 batch worker slot, got {capacity}")
        self.capacity = capacity
        self.free = capacity
        self._waiters: deque[tuple[int, asyncio.Future[None]]] = deque()

    def granted(self, wanted: int) -> int:
        """How many slots a job asking for ``wanted`` gets once its turn comes."""
        return max(1, min(wanted, self.capacity))

    def available_now(self, wanted: int) -> bool:
        return not self._waiters and self.free >= self.granted(wanted)

    @contextlib.asynccontextmanager
    async def acquire(self, wanted: int) -> AsyncIterator[int]:
        """Hold the slots for the ``async with`` body (they are returned on any exit, cancel included)."""
        count = self.granted(wanted)
        if not self.available_now(wanted):
            turn = asyncio.get_running_loop().create_future()
            entry = (count, turn)
            self._waiters.append(entry)
            try:
                await turn
            except BaseException:
                if entry in self._waiters:
                    self._waiters.remove(entry)
                elif turn.done() and not turn.cancelled():
                    self.free += count  # granted just as it was canceled: give the slots back
                self._wake()
                raise
        else:
            self.free -= count
        try:
            yield count
        finally:
            self.free += count
            self._wake()

    def _wake(self) -> None:
        """Hand slots to the waiters at the head of the line while they fit."""
        while self._waiters and self._waiters[0][0] <= self.free:
            count, turn = self._waiters.popleft()
            if turn.done():
                continue
            self.free -= count
            turn.set_result(None)
