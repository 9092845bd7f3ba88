"""The vision encoder's output per picture, cached by content hash and resize budget.

When a session's KV cache cannot serve a picture (another session sends the same photo, the entry
was evicted, /undo changed the history before it), its features come from here instead of running
the vision tower again. Qwen3-VL also needs the deepstack features of the picture, kept alongside.
The grid (t, h, w) of every picture seen is remembered separately (a few bytes each), so a cached
picture is not even decoded again to count its tokens.

Entries are per tenant (the key includes it): a tenant cannot learn from a fast answer that another
one sent the same picture.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

import torch

__all__ = ["FeatureCache", "FeatureCacheStats", "ImageFeatures", "ImageKey"]

_GRID_MEMO = 4096


@dataclass(frozen=True)
class ImageKey:
    """A picture as the model sees it: its bytes (hash) and the budget it was resized to, per tenant."""

    sha256: str
    factor: int
    min_pixels: int
    max_pixels: int
    jpeg_draft: bool = True  # a drafted decode gives slightly different pixels
    tenant: str = ""
    part: str = ""  # "" for a picture; a video's sampling and which of its frame pairs (`engine.video_prompt`)


@dataclass(frozen=True)
class ImageFeatures:
    grid: tuple[int, int, int]
    embeds: torch.Tensor  # (visual tokens, hidden)
    deepstack: tuple[torch.Tensor, ...] = ()  # Qwen3-VL: one (visual tokens, hidden) per deepstack layer

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (self.embeds, *self.deepstack))

    def part(self, start: int, end: int) -> ImageFeatures:
        """The features of visual tokens [start, end): what a prompt chunk ending inside the picture is fed."""
        if start == 0 and end == self.embeds.shape[0]:
            return self
        return ImageFeatures(self.grid, self.embeds[start:end], tuple(layer[start:end] for layer in self.deepstack))


@dataclass(frozen=True)
class FeatureCacheStats:
    entries: int
    bytes: int
    budget: int
    hits: int
    misses: int
    evictions: int


class FeatureCache:
    def __init__(self, budget_bytes: int) -> None:
        self._budget = max(0, budget_bytes)
        self._entries: OrderedDict[ImageKey, ImageFeatures] = OrderedDict()
        self._grids: OrderedDict[ImageKey, tuple[int, int, int]] = OrderedDict()
        self._bytes = 0
        self._hits = self._misses = self._evictions = 0
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self._budget > 0

    def get(self, key: ImageKey) -> ImageFeatures | None:
        with self._lock:
            found = self._entries.get(key)
            if found is None:
                self._misses += 1
                return None
            self._entries.move_to_end(key)
            self._hits += 1
            return found

    def put(self, key: ImageKey, features: ImageFeatures) -> bool:
        self.remember_grid(key, features.grid)
        size = features.nbytes
        with self._lock:
            if size > self._budget or key in self._entries:
                return False
            while self._entries and self._bytes + size > self._budget:
                _, victim = self._entries.popitem(last=False)
                self._bytes -= victim.nbytes
                self._evictions += 1
            self._entries[key] = features
            self._bytes += size
            return True

    def grid(self, key: ImageKey) -> tuple[int, int, int] | None:
        if not self.enabled:
            return None
        with self._lock:
            grid = self._grids.get(key)
            if grid is not None:
                self._grids.move_to_end(key)
            return grid

    def remember_grid(self, key: ImageKey, grid: tuple[int, int, int]) -> None:
        if not self.enabled:
            return
        with self._lock:
            self._grids[key] = grid
            self._grids.move_to_end(key)
            while len(self._grids) > _GRID_MEMO:
                self._grids.popitem(last=False)

    def stats(self) -> FeatureCacheStats:
        with self._lock:
            return FeatureCacheStats(
                len(self._entries), self._bytes, self._budget, self._hits, self._misses, self._evictions
            )
