"""Failed sign-ins per client address: a few are free, then the address waits, longer each time.

`allowed` wrong tokens within `window_s` lock the address out for `window_s`; each further lockout
doubles (up to `max_lock_s`) until the address has been quiet for `max_lock_s` or signs in. A
correct token entered while locked is refused too, so guessing gains nothing from the lockout's end
coming early. Memory is bounded: the least recently seen addresses are forgotten beyond `max_addresses`.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["LoginThrottle"]


@dataclass
class _Address:
    failures: list[float] = field(default_factory=list)
    locked_until: float = 0.0
    lockouts: int = 0
    seen: float = 0.0


class LoginThrottle:
    def __init__(
        self,
        *,
        allowed: int = 5,
        window_s: float = 60.0,
        max_lock_s: float = 3600.0,
        max_addresses: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.allowed = allowed
        self.window_s = window_s
        self.max_lock_s = max_lock_s
        self._max_addresses = max_addresses
        self._clock = clock
        self._addresses: OrderedDict[str, _Address] = OrderedDict()

    def _entry(self, address: str, now: float) -> _Address | None:
        entry = self._addresses.get(address)
        if entry is not None and now - entry.seen > self.max_lock_s and now >= entry.locked_until:
            del self._addresses[address]  # quiet long enough: a fresh start
            return None
        return entry

    def retry_after(self, address: str) -> int | None:
        """Whole seconds this address must wait before its next try, or None when it may try now."""
        now = self._clock()
        entry = self._entry(address, now)
        if entry is None or now >= entry.locked_until:
            return None
        return max(1, math.ceil(entry.locked_until - now))

    def failed(self, address: str) -> None:
        now = self._clock()
        entry = self._entry(address, now) or _Address()
        entry.seen = now
        entry.failures = [t for t in entry.failures if now - t < self.window_s] + [now]
        if len(entry.failures) >= self.allowed:
            entry.lockouts += 1
            entry.locked_until = now + min(self.max_lock_s, self.window_s * 2 ** (entry.lockouts - 1))
            entry.failures = []
        self._addresses[address] = entry
        self._addresses.move_to_end(address)
        while len(self._addresses) > self._max_addresses:
            self._addresses.popitem(last=False)

    def succeeded(self, address: str) -> None:
        self._addresses.pop(address, None)
