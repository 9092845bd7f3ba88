"""The vision tower run in pieces, so a running answer takes its decode steps in between.

On one 1024x768 picture the tower runs about half a second on a CPU: in one piece that is one long
pause in every running answer. Every part of the tower works token by token except attention, so
it can be cut anywhere along the tokens:

- the patch embedding, the MLPs and the mergers are per token (per group of merged tokens);
- a block's attention is split into its q/k/v projection (per token, over every token first) and
  the attention of a range of queries against the keys of their own segment (a window of
  Qwen2.5-VL's window-attention blocks, the whole picture in its full-attention blocks and in every
  Qwen3-VL block), with the block's own attention function.

`PiecewiseEncoding.advance(tokens)` does the next piece of about `tokens` tokens' work and says
whether the encoding is complete; `result` then holds what `get_image_features` would return
(per-picture features, and Qwen3-VL's deepstack features). The modules of the installed model do
all the arithmetic; only the order of the work is ours. With flash attention (varlen kernels, the GPU)
or a tower of a shape not known here, the tower runs in one piece.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any

import torch

__all__ = ["Encoded", "PiecewiseEncoding", "piecewise_supported"]


@dataclass(frozen=True)
class Encoded:
    """Per picture: its features, and one tensor per deepstack layer (Qwen3-VL)."""

    embeds: tuple[torch.Tensor, ...]
    deepstack: tuple[tuple[torch.Tensor, ...], ...]  # [layer][picture]


def piecewise_supported(model: Any) -> bool:
    visual = getattr(getattr(model, "model", None), "visual", None)
    if visual is None or not hasattr(visual, "blocks"):
        return False
    implementation = getattr(visual.config, "_attn_implementation", None) or "eager"
    return implementation in ("sdpa", "eager") and _kind(visual) is not None


def _kind(visual: Any) -> str | None:
    if hasattr(visual, "fullatt_block_indexes") and hasattr(visual, "permute_input_for_window_attn"):
        return "windows"  # Qwen2.5-VL
    if hasattr(visual, "deepstack_visual_indexes") and hasattr(visual, "pos_embed"):
        return "deepstack"  # Qwen3-VL
    return None


class PiecewiseEncoding:
    def __init__(self, model: Any, pixel_values: torch.Tensor, grids: torch.Tensor) -> None:
        self._model = model
        self._tokens = 1
        self.result: Encoded | None = None
        self.pieces = 0
        if piecewise_supported(model):
            self._work: Generator[None, None, Encoded] = _pieces(self, model.model.visual, pixel_values, grids)
        else:
            self._work = _whole(model, pixel_values, grids)

    def advance(self, tokens: int) -> bool:
        """Do the next piece, about `tokens` tokens' work; True once the encoding is complete."""
        if self.result is not None:
            return True
        self._tokens = max(1, tokens)
        self.pieces += 1
        try:
            next(self._work)
        except StopIteration as done:
            self.result = done.value
            return True
        return False

    def run(self) -> Encoded:
        """Every remaining piece at once."""
        while not self.advance(1 << 30):
            pass
        assert self.result is not None
        return self.result


def _whole(model: Any, pixel_values: torch.Tensor, grids: torch.Tensor) -> Generator[None, None, Encoded]:
    encoded = model.model.get_image_features(pixel_values, grids, return_dict=True)
    deep = getattr(encoded, "deepstack_features", None) or []
    return Encoded(tuple(encoded.pooler_output), tuple(tuple(layer) for layer in deep))
    yield  # a generator that finishes at its first step


def _ranges(owner: PiecewiseEncoding, total: int, unit: int = 1, weight: float = 1.0) -> Generator[tuple[int, int], None, None]:
    """[start, end) ranges covering `total` rows, each about the owner's current budget (a multiple of
    `unit`). The budget counts rows of a q/k/v projection; a row costing `weight` times that counts so."""
    start = 0
    while start < total:
        size = max(unit, int(owner._tokens / weight) // unit * unit)
        end = min(total, start + size)
        yield start, end
        start = end


def _pieces(
    owner: PiecewiseEncoding, visual: Any, pixel_values: torch.Tensor, grids: torch.Tensor
) -> Generator[None, None, Encoded]:
    from transformers.vision_utils import get_vision_attention_seqlens, get_vision_position_ids

    kind = _kind(visual)
    pixel_values = pixel_values.type(visual.dtype)
    merge = visual.spatial_merge_size
    unit = merge * merge
    position_ids = get_vision_position_ids(grids, merge, kwargs={})
    cu_seqlens, _ = get_vision_attention_seqlens(grids, visual.config, kwargs={})
    total = pixel_values.shape[0]

    qkv_cost = _params(visual.blocks[0].attn.qkv)  # the unit of the budget: one row through a q/k/v projection
    hidden = None
    for start, end in _ranges(owner, total, unit, _params(visual.patch_embed) / qkv_cost):
        part = visual.patch_embed(pixel_values[start:end])
        if hidden is None:
            hidden = part.new_empty(total, part.shape[1])
        hidden[start:end] = part
        yield
    assert hidden is not None

    if kind == "windows":
        from transformers.vision_utils import get_vision_window_index

        window_index, cu_windows = get_vision_window_index(
            grids, spatial_merge_size=merge, window_size=visual.window_size, patch_size=visual.patch_size, kwargs={}
        )
        hidden = visual.permute_input_for_window_attn(hidden, window_index, seq_len=total)
        cos, sin = visual.rotary_pos_emb(hidden, position_ids)
        cos = visual.permute_input_for_window_attn(cos, window_index, seq_len=total)
        sin = visual.permute_input_for_window_attn(sin, window_index, seq_len=total)
        full = set(visual.fullatt_block_indexes)
        segments = [_bounds(cu_seqlens if i in full else cu_windows) for i in range(len(visual.blocks))]
    else:
        from transformers.vision_utils import get_vision_interpolation_indices_and_weights

        indices, weights = get_vision_interpolation_indices_and_weights(
            grids,
            num_grid_per_side=visual.num_grid_per_side,
            mode=visual.interpolation_mode,
            align_corners=visual.interpolation_align_corners,
            spatial_merge_size=merge,
            kwargs={},
        )
        hidden = hidden + (visual.pos_embed(indices) * weights[:, :, None]).sum(1).to(hidden.dtype)
        cos, sin = visual.rotary_pos_emb(hidden, position_ids)
        segments = [_bounds(cu_seqlens)] * len(visual.blocks)
        yield

    deepstack: list[torch.Tensor] = []
    for index, block in enumerate(visual.blocks):
        hidden = yield from _block(owner, block, hidden, cos, sin, segments[index])
        if kind == "deepstack" and index in visual.deepstack_visual_indexes:
            merger = visual.deepstack_merger_list[visual.deepstack_visual_indexes.index(index)]
            deepstack.append((yield from _merge(owner, merger, hidden, unit, _params(merger) / unit / qkv_cost)))

    merged = yield from _merge(owner, visual.merger, hidden, unit, _params(visual.merger) / unit / qkv_cost)
    if kind == "windows":
        merged = merged[torch.argsort(window_index), :]
    sizes = (grids.prod(-1) // unit).tolist()
    return Encoded(tuple(torch.split(merged, sizes)), tuple(tuple(torch.split(d, sizes)) for d in deepstack))


def _bounds(cu: torch.Tensor) -> list[int]:
    """Segment boundaries, without empty segments."""
    out: list[int] = []
    for value in cu.tolist():
        if not out or value != out[-1]:
            out.append(int(value))
    return out


def _block(
    owner: PiecewiseEncoding, block: Any, hidden: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, bounds: list[int]
) -> Generator[None, None, torch.Tensor]:
    """One vision block in pieces: q/k/v for every token, then attention + MLP for ranges of queries."""
    attn = block.attn
    rotate = _rotary_function(attn)
    total = hidden.shape[0]
    heads = attn.num_heads
    width = hidden.shape[1]
    qkv_cost = _params(attn.qkv)
    longest = max(high - low for low, high in itertools.pairwise(bounds))
    # A query row: its share of attention (scores and mix over its segment), the projection and the MLP.
    weight = (2 * longest * width + _params(attn.proj) + _params(block.mlp)) / qkv_cost
    q = k = v = None
    for start, end in _ranges(owner, total):
        qkv = attn.qkv(block.norm1(hidden[start:end])).reshape(end - start, 3, heads, -1).permute(1, 0, 2, 3).unbind(0)
        q_part, k_part = rotate(qkv[0], qkv[1], cos[start:end], sin[start:end])
        if q is None or k is None or v is None:
            q = q_part.new_empty(1, heads, total, q_part.shape[-1])
            k, v = torch.empty_like(q), torch.empty_like(q)
        q[0, :, start:end] = q_part.transpose(0, 1)
        k[0, :, start:end] = k_part.transpose(0, 1)
        v[0, :, start:end] = qkv[2].transpose(0, 1)
        yield
    assert q is not None and k is not None and v is not None
    attention = _attention_function(attn)
    out = torch.empty_like(hidden)
    for start, end in _ranges(owner, total, 1, weight):
        parts = []
        segment = max(0, bisect.bisect_right(bounds, start) - 1)
        while segment + 1 < len(bounds) and bounds[segment] < end:
            low, high = bounds[segment], bounds[segment + 1]
            first, last = max(start, low), min(end, high)
            if first < last:
                parts.append(
                    attention(
                        attn, q[:, :, first:last], k[:, :, low:high], v[:, :, low:high],
                        attention_mask=None, scaling=attn.scaling, dropout=0.0, is_causal=False,
                    )[0]
                )
            segment += 1
        mixed = torch.cat(parts, dim=1).reshape(end - start, -1)
        rows = hidden[start:end] + attn.proj(mixed)
        out[start:end] = rows + block.mlp(block.norm2(rows))
        yield
    return out


def _merge(
    owner: PiecewiseEncoding, merger: Any, hidden: torch.Tensor, unit: int, weight: float
) -> Generator[None, None, torch.Tensor]:
    """A patch merger (groups of `unit` tokens into one) in pieces."""
    parts = []
    for start, end in _ranges(owner, hidden.shape[0], unit, weight):
        parts.append(merger(hidden[start:end]))
        yield
    return torch.cat(parts)


def _params(module: Any) -> int:
    """Weights of a module: what one row through it costs, for linear layers."""
    return max(1, sum(p.numel() for p in module.parameters()))


def _rotary_function(attn: Any) -> Any:
    import sys

    return sys.modules[type(attn).__module__].apply_rotary_pos_emb_vision


def _attention_function(attn: Any) -> Any:
    import sys

    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    module = sys.modules[type(attn).__module__]
    return ALL_ATTENTION_FUNCTIONS.get_interface(attn.config._attn_implementation, module.eager_attention_forward)
