"""One FIFO lane per conversation thread: a message waits for the one before it in the same thread.

Lanes of different threads run concurrently. Each lane has one drain task that runs its jobs one by
one, each in a task of its own, so a single job can be cancelled (/clear) while the lane goes on. A
job is cancelled the same way whether it waits or runs. Every task is tracked with its platform, and
`close` ends a platform's tasks after a grace period.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Coroutine
from typing import Any

__all__ = ["LaneKey", "Lanes", "Ticket"]

log = logging.getLogger(__name__)

LaneKey = tuple[str, str]  # (platform, thread key)
Work = Callable[[], Coroutine[Any, Any, None]]


class Ticket:
    """One job. `await ticket.wait()` returns once it has ended (done, failed or cancelled)."""

    def __init__(self, lanes: Lanes, key: LaneKey, work: Work, payload: Any) -> None:
        self.key = key
        self.payload = payload  # what the job is about (the inbox keeps its delivery here)
        self.cancelled = False
        self._lanes = lanes
        self._work = work
        self._task: asyncio.Task[None] | None = None
        self._ended = asyncio.Event()

    @property
    def ended(self) -> bool:
        return self._ended.is_set()

    @property
    def running(self) -> bool:
        return self._task is not None and not self.ended

    async def wait(self) -> None:
        await self._ended.wait()

    def cancel(self) -> None:
        """Stop the job: a waiting one never starts, a running one's task is cancelled."""
        if self.ended:
            return
        self.cancelled = True
        if self._task is not None:
            self._task.cancel()
        else:
            self._lanes.withdraw(self)

    def _start(self, name: str) -> asyncio.Task[None]:
        self._task = asyncio.create_task(self._work(), name=name)
        return self._task

    def _end(self) -> None:
        self._ended.set()


async def _idle() -> None:
    """The work of a ticket that was never started."""


class Lanes:
    def __init__(self) -> None:
        self._waiting: dict[LaneKey, deque[Ticket]] = {}
        self._running: dict[LaneKey, Ticket] = {}
        self._arrived: dict[LaneKey, asyncio.Event] = {}
        self._tasks: dict[asyncio.Task[None], str] = {}  # every task -> its platform

    def push(self, key: LaneKey, work: Work, payload: Any = None) -> Ticket:
        """Queue `work` behind whatever the thread already has; returns at once."""
        ticket = Ticket(self, key, work, payload)
        queue = self._waiting.get(key)
        if queue is None:
            queue = self._waiting[key] = deque()
            self._track(asyncio.create_task(self._drain(key, queue), name=f"lane-{key[0]}-{key[1]}"), key[0])
        queue.append(ticket)
        self._arrived.setdefault(key, asyncio.Event()).set()
        return ticket

    def spawn(self, key: LaneKey, work: Work, payload: Any = None) -> Ticket:
        """Run `work` now, beside the thread's lane (answers that need not wait, such as /status)."""
        ticket = Ticket(self, key, work, payload)
        task = ticket._start(f"now-{key[0]}-{key[1]}")
        task.add_done_callback(lambda done: self._finished(ticket, done))
        self._track(task, key[0])
        return ticket

    def done(self, key: LaneKey) -> Ticket:
        """A ticket for work there is nothing to do for (a message not for the bot)."""
        ticket = Ticket(self, key, _idle, None)
        ticket._end()
        return ticket

    def jobs(self, key: LaneKey) -> list[Ticket]:
        """The thread's running job (if any) and those waiting behind it, in order."""
        running = self._running.get(key)
        return ([running] if running is not None else []) + list(self._waiting.get(key, ()))

    def waiting(self, key: LaneKey) -> list[Ticket]:
        return list(self._waiting.get(key, ()))

    def withdraw(self, ticket: Ticket) -> None:
        """Take a waiting job out of its lane (cancelled, or merged into the job before it)."""
        queue = self._waiting.get(ticket.key)
        if queue is not None and ticket in queue:
            queue.remove(ticket)
        ticket._end()

    async def arrival(self, key: LaneKey, timeout: float) -> bool:
        """Whether another job joins the thread's lane within `timeout` seconds."""
        event = self._arrived.setdefault(key, asyncio.Event())
        event.clear()
        try:
            await asyncio.wait_for(event.wait(), timeout)
        except TimeoutError:
            return False
        return True

    def busy(self, platform: str | None = None) -> bool:
        return any(platform is None or p == platform for p in self._tasks.values())

    async def idle(self, platform: str | None = None) -> None:
        """Return once every task of `platform` (all, for None), and any they started, has ended."""
        while tasks := [t for t, p in self._tasks.items() if platform is None or p == platform]:
            await asyncio.wait(tasks)

    async def close(self, platform: str | None = None, grace_s: float = 0.0) -> None:
        """Let the platform's jobs finish for up to `grace_s` seconds, then cancel what is left."""
        tasks = [t for t, p in self._tasks.items() if platform is None or p == platform]
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=grace_s) if grace_s > 0 else (set(), set(tasks))
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    # --- internals ------------------------------------------------------------------------------

    def _track(self, task: asyncio.Task[None], platform: str) -> None:
        self._tasks[task] = platform
        task.add_done_callback(lambda done: self._tasks.pop(done, None))

    def _finished(self, ticket: Ticket, task: asyncio.Task[None]) -> None:
        ticket._end()
        if task.cancelled():
            ticket.cancelled = True
        elif (error := task.exception()) is not None:
            log.error("job in %s failed", ticket.key, exc_info=error)

    async def _drain(self, key: LaneKey, queue: deque[Ticket]) -> None:
        try:
            while queue:
                ticket = queue.popleft()
                task = ticket._start(f"job-{key[0]}-{key[1]}")
                self._running[key] = ticket
                try:
                    # wait() rather than await: the job's own failure or cancellation stays its own.
                    await asyncio.wait({task})
                except asyncio.CancelledError:  # the lane itself is being closed
                    task.cancel()
                    await asyncio.gather(task, return_exceptions=True)
                    raise
                finally:
                    del self._running[key]
                    self._finished(ticket, task)
        finally:
            del self._waiting[key]
            self._arrived.pop(key, None)
            for ticket in queue:  # closed with jobs still waiting: they end unstarted
                ticket.cancelled = True
                ticket._end()
