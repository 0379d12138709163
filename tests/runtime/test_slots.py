"""The runtime's batch worker slots: first come, first served, returned on every exit."""

from __future__ import annotations

import asyncio

import pytest

from deployflow.runtime.jobs.slots import SlotPool


async def holder(pool: SlotPool, wanted: int, order: list[str], name: str, release: asyncio.Event) -> int:
    async with pool.acquire(wanted) as granted:
        order.append(name)
        await release.wait()
        return granted


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def test_a_big_job_at_the_head_is_not_overtaken_by_small_ones() -> None:
    async def scenario() -> list[str]:
        pool, order = SlotPool(2), []
        releases = {name: asyncio.Event() for name in "abc"}
        a = asyncio.create_task(holder(pool, 1, order, "a", releases["a"]))
        await settle()
        b = asyncio.create_task(holder(pool, 2, order, "b", releases["b"]))  # waits: only 1 slot free
        await settle()
        c = asyncio.create_task(holder(pool, 1, order, "c", releases["c"]))  # 1 is free, but b is first in line
        await settle()
        assert order == ["a"] and pool.free == 1
        releases["a"].set()
        await settle()
        assert order == ["a", "b"] and pool.free == 0
        releases["b"].set()
        await settle()
        releases["c"].set()
        await asyncio.gather(a, b, c)
        assert pool.free == 2
        return order

    assert asyncio.run(scenario()) == ["a", "b", "c"]


def test_a_job_asking_for_more_than_there_is_gets_everything() -> None:
    async def scenario() -> int:
        pool, release = SlotPool(2), asyncio.Event()
        release.set()
        return await holder(pool, 8, [], "big", release)

    assert asyncio.run(scenario()) == 2


def test_a_canceled_waiter_leaves_the_line_and_the_next_one_gets_its_turn() -> None:
    async def scenario() -> list[str]:
        pool, order = SlotPool(1), []
        releases = {name: asyncio.Event() for name in "abc"}
        a = asyncio.create_task(holder(pool, 1, order, "a", releases["a"]))
        await settle()
        b = asyncio.create_task(holder(pool, 1, order, "b", releases["b"]))
        c = asyncio.create_task(holder(pool, 1, order, "c", releases["c"]))
        await settle()
        b.cancel()
        await asyncio.gather(b, return_exceptions=True)
        releases["a"].set()
        releases["c"].set()
        await asyncio.gather(a, c)
        assert pool.free == 1
        return order

    assert asyncio.run(scenario()) == ["a", "c"]


def test_slots_come_back_when_the_holder_fails() -> None:
    async def scenario() -> int:
        pool = SlotPool(2)
        with pytest.raises(RuntimeError):
            async with pool.acquire(2):
                raise RuntimeError("the job failed")
        return pool.free

    assert asyncio.run(scenario()) == 2


def test_a_pool_needs_a_slot() -> None:
    with pytest.raises(ValueError, match="at least 1 batch worker slot"):
        SlotPool(0)
