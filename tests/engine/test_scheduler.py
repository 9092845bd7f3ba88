"""The fair queue: round-robin order, positions, capacity, removal."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from engine.scheduler import FairQueue, QueueFull


@dataclass(frozen=True)
class Item:
    request_id: str
    session_key: str


def test_round_robin_positions_and_take_order() -> None:
    queue: FairQueue[Item] = FairQueue(capacity=10)
    for i in range(3):
        queue.put(Item(f"a{i}", "alice"))
    queue.put(Item("b0", "bob"))
    queue.put(Item("c0", "carol"))
    assert [e.request_id for e in queue.waiting_entries()] == ["a0", "b0", "c0", "a1", "a2"]
    assert queue.position("a1") == 4
    taken = [queue.take(1)[0].request_id for _ in range(5)]
    assert taken == ["a0", "b0", "c0", "a1", "a2"]
    assert queue.position("a2") == 0 and queue.running == 5


def test_capacity_counts_running_and_removal_frees_it() -> None:
    queue: FairQueue[Item] = FairQueue(capacity=2)
    queue.put(Item("x", "s"))
    queue.put(Item("y", "s"))
    with pytest.raises(QueueFull):
        queue.put(Item("z", "t"))
    queue.take(1)
    assert queue.remove("x") is not None  # a running request's place is released at once
    queue.put(Item("z", "t"))
    assert queue.remove("y") is not None and queue.position("y") is None
    assert len(queue) == 1
