"""Stop strings on a stream of text: the answer ends before the first stop string, which is never sent.

Text arrives in pieces (one token's worth at a time), and a stop string can span pieces, so the end
of the text that could be the start of a stop string is held back until the next piece settles it.
What is held back is at most the longest stop string less one character.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

__all__ = ["StopText"]


class StopText:
    """Passes text to `emit` up to (not including) the first of `stops`; then `found` is True and
    nothing more is sent. `watching` False (vLLM's `min_tokens` not reached) lets text through unchecked."""

    def __init__(self, stops: Sequence[str], emit: Callable[[str], object]) -> None:
        self._stops = tuple(s for s in stops if s)
        self._emit = emit
        self._held = ""
        self._longest = max((len(s) for s in self._stops), default=0)
        self.found = False
        self.watching = True

    def feed(self, text: str) -> None:
        if self.found or not text:
            return
        if not self._stops:
            self._emit(text)
            return
        held = self._held + text
        if self.watching:
            cuts = [at for at in (held.find(stop) for stop in self._stops) if at >= 0]
            if cuts:
                self.found = True
                self._held = ""
                if min(cuts):
                    self._emit(held[: min(cuts)])
                return
        keep = self._open_end(held)
        self._held = held[len(held) - keep :] if keep else ""
        if len(held) > keep:
            self._emit(held[: len(held) - keep])

    def flush(self) -> None:
        """The answer ended without a stop string: send what was held back."""
        if not self.found and self._held:
            held, self._held = self._held, ""
            self._emit(held)

    def _open_end(self, text: str) -> int:
        """The length of the longest end of `text` that a stop string starts with."""
        for size in range(min(len(text), self._longest - 1), 0, -1):
            tail = text[-size:]
            if any(stop.startswith(tail) for stop in self._stops):
                return size
        return 0
