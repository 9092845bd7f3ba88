"""A bounded request queue that is fair across sessions (round-robin between sessions).

One session's ten pictures never starve another session: the worker takes the oldest request of
each session in turn. Capacity counts waiting and running requests; a cancelled request frees its
place at once, even while the model finishes its current step. A session is any hashable key: the
engines use `GenerationRequest.session_key`, so two tenants' sessions of the same name are two.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from engine.interface import GenerationRequest, Queued

__all__ = ["FairQueue", "QueueFull", "QueuedJob", "publish_positions"]


class _Entry(Protocol):
    @property
    def request_id(self) -> str: ...

    @property
    def session_key(self) -> Hashable: ...


E = TypeVar("E", bound=_Entry)


class QueueFull(Exception):
    pass


@dataclass(eq=False)
class QueuedJob:
    """A request in an engine's queue, with the stream its caller reads (both engines build on it)."""

    request: GenerationRequest
    out: asyncio.Queue[Any] = field(default_factory=asyncio.Queue)
    submitted_at: float = field(default_factory=time.monotonic)
    started_at: float | None = None
    last_position: int | None = None
    finished: bool = False

    @property
    def request_id(self) -> str:
        return self.request.request_id

    @property
    def session_key(self) -> tuple[str, str]:
        return self.request.session_key


def publish_positions(queue: FairQueue[Any]) -> None:
    """Tell every waiting request its new place, once per change."""
    for position, job in enumerate(queue.waiting_entries(), start=1):
        if job.last_position != position:
            job.last_position = position
            job.out.put_nowait(Queued(position))


class FairQueue(Generic[E]):
    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._waiting: OrderedDict[Hashable, deque[E]] = OrderedDict()  # session -> its requests, ring order
        self._running: dict[str, E] = {}
        self._wakeup = asyncio.Event()
        self._listeners: list[Callable[[], None]] = []

    # --- sizes --------------------------------------------------------------------------------

    @property
    def waiting(self) -> int:
        return sum(len(q) for q in self._waiting.values())

    @property
    def running(self) -> int:
        return len(self._running)

    def __len__(self) -> int:
        return self.waiting + self.running

    # --- producer side ------------------------------------------------------------------------

    def put(self, entry: E) -> None:
        if len(self) >= self._capacity:
            raise QueueFull
        self._waiting.setdefault(entry.session_key, deque()).append(entry)
        self._wakeup.set()

    def remove(self, request_id: str) -> E | None:
        """Drop a waiting request or release a running one's place; returns it if found."""
        if request_id in self._running:
            entry = self._running.pop(request_id)
            self._changed()
            return entry
        for session, queue in self._waiting.items():
            for entry in queue:
                if entry.request_id == request_id:
                    queue.remove(entry)
                    if not queue:
                        del self._waiting[session]
                    self._changed()
                    return entry
        return None

    def position(self, request_id: str) -> int | None:
        """0 while running, 1-based place in the round-robin order while waiting, else None."""
        if request_id in self._running:
            return 0
        for index, entry in enumerate(self._order()):
            if entry.request_id == request_id:
                return index + 1
        return None

    def waiting_entries(self) -> list[E]:
        return self._order()

    def _order(self) -> list[E]:
        """The order in which waiting requests will start: one per session per round."""
        queues = [list(q) for q in self._waiting.values()]
        order: list[E] = []
        depth = 0
        while any(depth < len(q) for q in queues):
            order.extend(q[depth] for q in queues if depth < len(q))
            depth += 1
        return order

    # --- consumer side ------------------------------------------------------------------------

    def take(self, limit: int = 1, accept: Callable[[E], bool] | None = None) -> list[E]:
        """Start up to `limit` requests, one per session per round, in ring order."""
        taken: list[E] = []
        while len(taken) < limit and self._waiting:
            progressed = False
            for session in list(self._waiting):
                if len(taken) >= limit:
                    break
                queue = self._waiting[session]
                if accept is not None and not accept(queue[0]):
                    continue
                entry = queue.popleft()
                # Move the session to the back of the ring: the next round serves the others first.
                del self._waiting[session]
                if queue:
                    self._waiting[session] = queue
                self._running[entry.request_id] = entry
                taken.append(entry)
                progressed = True
            if not progressed:
                break
        if taken:
            self._changed()
        return taken

    def is_running_session(self, session: Hashable) -> bool:
        return any(entry.session_key == session for entry in self._running.values())

    def finish(self, request_id: str) -> None:
        if self._running.pop(request_id, None) is not None:
            self._changed()

    async def wait_for_work(self, ready: Callable[[E], bool] | None = None) -> None:
        """Until some session's next request waits (and is `ready`, when given; call `wake` when one becomes so)."""
        while not any(ready is None or ready(queue[0]) for queue in self._waiting.values()):
            self._wakeup.clear()
            await self._wakeup.wait()

    def wake(self) -> None:
        self._wakeup.set()

    def on_change(self, listener: Callable[[], None]) -> None:
        self._listeners.append(listener)

    def _changed(self) -> None:
        for listener in self._listeners:
            listener()
