"""Per-session KV caches kept between turns, within a byte budget.

Each active session keeps the KV cache of its last sequence (prompt plus answer) together with the
token ids it covers and the pictures inside it. A follow-up takes the entry out (the running request
owns it while it decodes), prefills only what follows the longest common prefix, and puts the grown
entry back when it ends. Entries leave on LRU eviction, after `idle_s` without use, and on
`release` (/clear, session expiry); a release during a request also stops that request from putting
its cache back. Running requests' caches are not counted: the budget is for idle sessions.
Sessions are keyed by (tenant, session id): one tenant's session of a given name is not another's.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

__all__ = ["KVEntry", "KVStore", "KVStoreStats", "SessionKey", "cache_nbytes"]

SessionKey = tuple[str, str]  # (tenant, session id): `GenerationRequest.session_key`


def cache_nbytes(cache: Any) -> int:
    """Bytes held by a transformers Cache's key and value tensors."""
    total = 0
    for layer in getattr(cache, "layers", ()):
        for name in ("keys", "values"):
            tensor = getattr(layer, name, None)
            if isinstance(tensor, torch.Tensor):
                total += tensor.numel() * tensor.element_size()
    return total


@dataclass
class KVEntry:
    """A session's cached sequence: `cache` covers exactly `ids`; `images` are its pictures as
    (ImageKey, first token, token count, grid) spans."""

    ids: list[int]
    cache: Any  # transformers DynamicCache, batch 1, no padding
    images: tuple[tuple[Any, int, int, tuple[int, int, int]], ...] = ()
    nbytes: int = 0
    epoch: int = 0
    last_used: float = field(default_factory=time.monotonic)


@dataclass(frozen=True)
class KVStoreStats:
    entries: int
    bytes: int
    budget: int
    evictions: int
    expirations: int
    releases: int
    rejected: int  # entries larger than the whole budget, never stored


_EPOCHS_KEPT = 10_000


class KVStore:
    def __init__(
        self, budget_bytes: int, idle_s: float | None = 1800.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._budget = max(0, budget_bytes)
        self._idle_s = idle_s
        self._clock = clock
        self._entries: OrderedDict[SessionKey, KVEntry] = OrderedDict()  # least recently used first
        # Released sessions, newest last: bounded, since a release only matters to a request still running.
        self._epochs: OrderedDict[SessionKey, int] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self._evictions = self._expirations = self._releases = self._rejected = 0

    @property
    def enabled(self) -> bool:
        return self._budget > 0

    def epoch(self, session: SessionKey) -> int:
        """Changes whenever the session is released; a put with an older epoch is dropped."""
        with self._lock:
            return self._epochs.get(session, 0)

    def take(self, session: SessionKey) -> KVEntry | None:
        """Remove and return the session's entry (the caller owns it until it puts it back)."""
        with self._lock:
            self._expire_locked()
            entry = self._entries.pop(session, None)
            if entry is not None:
                self._bytes -= entry.nbytes
            return entry

    def grids(self, session: SessionKey) -> dict[Any, tuple[int, int, int]]:
        """The pictures in the session's entry (ImageKey -> grid), without taking it."""
        with self._lock:
            entry = self._entries.get(session)
            return {} if entry is None else {key: grid for key, _, _, grid in entry.images}

    def put(self, session: SessionKey, entry: KVEntry) -> bool:
        """Store `entry` as the session's latest; evicts least recently used entries to fit."""
        entry.nbytes = cache_nbytes(entry.cache)
        entry.last_used = self._clock()
        with self._lock:
            if entry.epoch != self._epochs.get(session, 0):
                return False  # released while the request ran
            old = self._entries.pop(session, None)
            if old is not None:
                self._bytes -= old.nbytes
            if entry.nbytes > self._budget:
                self._rejected += 1
                return False
            self._expire_locked()
            while self._entries and self._bytes + entry.nbytes > self._budget:
                _, victim = self._entries.popitem(last=False)
                self._bytes -= victim.nbytes
                self._evictions += 1
            self._entries[session] = entry
            self._bytes += entry.nbytes
            return True

    def release(self, session: SessionKey) -> bool:
        """Forget the session's entry and invalidate any entry a running request would put back."""
        with self._lock:
            self._epochs[session] = self._epochs.pop(session, 0) + 1
            while len(self._epochs) > _EPOCHS_KEPT:
                self._epochs.popitem(last=False)
            entry = self._entries.pop(session, None)
            if entry is None:
                return False
            self._bytes -= entry.nbytes
            self._releases += 1
            return True

    def expire(self) -> int:
        with self._lock:
            return self._expire_locked()

    def _expire_locked(self) -> int:
        if self._idle_s is None:
            return 0
        limit = self._clock() - self._idle_s
        stale = [sid for sid, entry in self._entries.items() if entry.last_used < limit]
        for sid in stale:
            self._bytes -= self._entries.pop(sid).nbytes
        self._expirations += len(stale)
        return len(stale)

    def stats(self) -> KVStoreStats:
        with self._lock:
            return KVStoreStats(
                entries=len(self._entries),
                bytes=self._bytes,
                budget=self._budget,
                evictions=self._evictions,
                expirations=self._expirations,
                releases=self._releases,
                rejected=self._rejected,
            )

    def sessions(self) -> list[SessionKey]:
        with self._lock:
            return list(self._entries)
