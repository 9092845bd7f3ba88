"""The lanes: first in, first out within a thread, threads side by side, cancelling waiting and running jobs."""

from __future__ import annotations

import asyncio

from bot.lanes import Lanes


async def test_jobs_of_one_thread_run_in_order_one_at_a_time() -> None:
    lanes = Lanes()
    log: list[str] = []

    def job(name: str, pause: float):
        async def work() -> None:
            log.append(f"start {name}")
            await asyncio.sleep(pause)
            log.append(f"end {name}")

        return work

    tickets = [lanes.push(("p", "t"), job(name, pause)) for name, pause in (("a", 0.05), ("b", 0.0), ("c", 0.01))]
    for ticket in tickets:
        await ticket.wait()
    assert log == ["start a", "end a", "start b", "end b", "start c", "end c"]
    await lanes.idle()
    assert not lanes.busy()


async def test_threads_run_side_by_side() -> None:
    lanes = Lanes()
    second_started = asyncio.Event()

    async def first() -> None:
        await asyncio.wait_for(second_started.wait(), 5)  # only possible if the other thread runs meanwhile

    async def second() -> None:
        second_started.set()

    a = lanes.push(("p", "thread-1"), first)
    b = lanes.push(("p", "thread-2"), second)
    await asyncio.wait_for(asyncio.gather(a.wait(), b.wait()), 5)
    assert not a.cancelled and not b.cancelled


async def test_cancel_stops_a_running_job_and_a_waiting_one_never_starts() -> None:
    lanes = Lanes()
    started: list[str] = []
    cancelled: list[str] = []

    def job(name: str):
        async def work() -> None:
            started.append(name)
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                cancelled.append(name)
                raise

        return work

    async def last() -> None:
        started.append("last")

    running = lanes.push(("p", "t"), job("running"))
    waiting = lanes.push(("p", "t"), job("waiting"))
    after = lanes.push(("p", "t"), last)
    while not running.running:
        await asyncio.sleep(0.001)
    for ticket in lanes.jobs(("p", "t"))[:2]:
        ticket.cancel()
    await asyncio.wait_for(after.wait(), 5)
    assert started == ["running", "last"] and cancelled == ["running"]
    assert running.cancelled and waiting.cancelled and waiting.ended and not after.cancelled


async def test_a_failing_job_does_not_stop_its_lane() -> None:
    lanes = Lanes()
    done: list[str] = []

    async def boom() -> None:
        raise RuntimeError("bug")

    async def next_one() -> None:
        done.append("next")

    lanes.push(("p", "t"), boom)
    await lanes.push(("p", "t"), next_one).wait()
    assert done == ["next"]


async def test_close_waits_for_the_grace_then_cancels_a_platforms_jobs() -> None:
    lanes = Lanes()
    quick_done = asyncio.Event()

    async def quick() -> None:
        await asyncio.sleep(0.01)
        quick_done.set()

    async def endless() -> None:
        await asyncio.sleep(60)

    async def other_platform() -> None:
        await asyncio.sleep(0.2)

    lanes.push(("telegram", "a"), quick)
    stuck = lanes.push(("telegram", "b"), endless)
    behind = lanes.push(("telegram", "b"), quick)
    spared = lanes.push(("slack", "c"), other_platform)
    await lanes.close("telegram", grace_s=0.1)
    assert quick_done.is_set() and stuck.ended and stuck.cancelled and behind.ended and behind.cancelled
    assert not lanes.busy("telegram") and lanes.busy("slack")
    await spared.wait()
    assert not spared.cancelled


async def test_arrival_tells_whether_the_lane_grew() -> None:
    lanes = Lanes()
    seen: list[bool] = []

    async def watcher() -> None:
        seen.append(await lanes.arrival(("p", "t"), 1.0))
        seen.append(await lanes.arrival(("p", "t"), 0.05))

    async def nothing() -> None:
        pass

    ticket = lanes.push(("p", "t"), watcher)
    await asyncio.sleep(0.01)
    lanes.push(("p", "t"), nothing)
    await ticket.wait()
    assert seen == [True, False]
