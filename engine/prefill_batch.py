"""Reading several prompts' chunks in ONE forward (`engine.batch` decides which, and when).

Each prompt being read has its own batch-1 cache of its own length (a session's cached prefix, or
the chunks read so far) and a chunk of its own length. One forward takes them all, laid out per row
as

    [left padding][the row's cache][the row's chunk][right padding]

so no row has padding between its cache and its chunk: a 2-D attention mask marks both paddings,
every real token sees exactly its own earlier tokens, and no query row is fully masked. The rows'
M-RoPE positions are those of their own prompts; picture features are fed row by row in order (the
model scatters them over the image tokens in that order, and pads are never image tokens). The
first-token scores come from each row's last real token (`logits_to_keep` per row). Afterwards
each row's cache is cut back out without its padding, so the rows go on as if read alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from transformers import DynamicCache

from engine.features import ImageFeatures
from engine.loader import LoadedModel

__all__ = ["ChunkInput", "forward_together"]


@dataclass(frozen=True)
class ChunkInput:
    """One row: its cache (batch 1, `cached` tokens), the chunk's ids and positions, its pictures' slices."""

    cache: Any
    cached: int
    ids: list[int]
    positions: torch.Tensor  # (3, len(ids))
    pieces: list[tuple[bool, ImageFeatures]]  # (a video's?, the slice)


def forward_together(
    loaded: LoadedModel, rows: list[ChunkInput], pad_id: int, encoder_outputs: Any
) -> tuple[list[DynamicCache], torch.Tensor]:
    """One forward over every row's chunk: each row's new cache (batch 1, no padding) and its
    next-token logits, (rows, vocab). `encoder_outputs` turns the pieces (all rows', in order)
    into the model's `mm_encoder_outputs`."""
    device = loaded.device
    past = max(row.cached for row in rows)
    width = max(len(row.ids) for row in rows)
    count = len(rows)
    ids = torch.full((count, width), pad_id, dtype=torch.long)
    positions = torch.zeros(3, count, width, dtype=torch.long)
    mask = torch.zeros(count, past + width, dtype=torch.long)
    for i, row in enumerate(rows):
        n = len(row.ids)
        ids[i, :n] = torch.tensor(row.ids)
        positions[:, i, :n] = row.positions
        # Right padding continues the row's positions (its queries are never read).
        positions[:, i, n:] = row.positions[:, -1:] + torch.arange(1, width - n + 1)
        mask[i, past - row.cached : past + n] = 1
    cache = _padded_cache(loaded, rows, past)
    out = loaded.model(
        input_ids=ids.to(device),
        attention_mask=mask.to(device),
        position_ids=positions.to(device),
        cache=cache,
        use_cache=True,
        logits_to_keep=torch.tensor([[len(row.ids) - 1] for row in rows], device=device),
        mm_encoder_outputs=encoder_outputs([piece for row in rows for piece in row.pieces]),
    )
    logits = out.logits[:, -1, :]
    caches = []
    for i, row in enumerate(rows):
        keep = (slice(i, i + 1), slice(None), slice(past - row.cached, past + len(row.ids)))
        caches.append(
            DynamicCache(
                ddp_cache_data=[(layer.keys[keep].clone(), layer.values[keep].clone()) for layer in out.cache.layers]
            )
        )
    return caches, logits


def _padded_cache(loaded: LoadedModel, rows: list[ChunkInput], past: int) -> DynamicCache:
    """The rows' caches left-padded to `past` tokens and stacked; an empty cache when none holds anything."""
    if past == 0:
        return DynamicCache(config=loaded.model.config)
    known = next(row.cache for row in rows if row.cached > 0)
    pairs = []
    for index, layer in enumerate(known.layers):
        heads, dim = layer.keys.shape[1], layer.keys.shape[3]
        keys, values = [], []
        for row in rows:
            pad = past - row.cached
            if row.cached == 0:
                blank = layer.keys.new_zeros(1, heads, past, dim)
                keys.append(blank)
                values.append(blank)
                continue
            mine = row.cache.layers[index]
            keys.append(_pad_left(mine.keys, pad))
            values.append(_pad_left(mine.values, pad))
        pairs.append((torch.cat(keys), torch.cat(values)))
    return DynamicCache(ddp_cache_data=pairs)


def _pad_left(tensor: torch.Tensor, count: int) -> torch.Tensor:
    if count <= 0:
        return tensor
    return torch.cat([tensor.new_zeros(tensor.shape[0], tensor.shape[1], count, tensor.shape[3]), tensor], dim=2)
