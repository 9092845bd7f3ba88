"""One prompt chunk read layer by layer, so running answers take their decode steps in between.

A forward's cost on a CPU has a large fixed part (every weight is read once), so cutting a
newcomer's prompt into chunks of a few tokens to keep running answers smooth multiplies its cost.
Cutting the forward of one reasonable chunk into its decoder layers does not: the same work, the
same weights read once, in pieces of about a decode step each. Between the pieces the chunk's hidden
state waits here; the prompt's own (batch-1) cache is filled layer by layer and nothing else reads
it meanwhile.

`PiecewiseChunk.advance(layers)` runs the next `layers` decoder layers (the first call also
embeds the chunk and places its pictures' features; the last also takes the next-token logits).
What it computes is what the model's forward computes, with the installed model's own modules: the
embedding, the pictures' features scattered over their tokens (and Qwen3-VL's deepstack features
added after the first layers), the causal mask, the rotary embedding, each decoder layer, the norm
and the head. A text model with sliding-window layers runs the chunk as one forward.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Any

import torch

from engine.features import ImageFeatures

__all__ = ["PiecewiseChunk"]


class PiecewiseChunk:
    def __init__(
        self,
        model: Any,
        ids: torch.Tensor,
        positions: torch.Tensor,
        cache: Any,
        pieces: list[tuple[bool, ImageFeatures]],
        encoder_outputs: Callable[[list[tuple[bool, ImageFeatures]]], Any],
    ) -> None:
        """`ids` (1, n) and `positions` (3, 1, n) on the model's device; `cache` is filled in place."""
        self.logits: torch.Tensor | None = None
        self.cache = cache
        self._layers = 1
        text = model.model.language_model
        if getattr(text, "has_sliding_layers", False):
            self._work = _whole(model, ids, positions, cache, encoder_outputs(pieces))
        else:
            self._work = _layers(self, model, text, ids, positions, cache, pieces)

    @property
    def done(self) -> bool:
        return self.logits is not None

    def advance(self, layers: int) -> bool:
        """Run about `layers` more decoder layers; True once the chunk is read (`logits` set)."""
        if self.logits is not None:
            return True
        self._layers = max(1, layers)
        try:
            next(self._work)
        except StopIteration as finished:
            self.logits = finished.value
            return True
        return False


def _whole(model: Any, ids: torch.Tensor, positions: torch.Tensor, cache: Any, encoder_outputs: Any) -> Generator[None, None, torch.Tensor]:
    out = model(input_ids=ids, position_ids=positions, cache=cache, use_cache=True, logits_to_keep=1,
                mm_encoder_outputs=encoder_outputs)
    return out.logits[:, -1, :]
    yield  # a generator that finishes at its first step


def _layers(
    owner: PiecewiseChunk,
    model: Any,
    text: Any,
    ids: torch.Tensor,
    positions: torch.Tensor,
    cache: Any,
    pieces: list[tuple[bool, ImageFeatures]],
) -> Generator[None, None, torch.Tensor]:
    from transformers.masking_utils import create_causal_mask

    hidden = text.embed_tokens(ids)
    visual = ids == model.config.image_token_id
    deepstack: list[torch.Tensor] = []
    features = [feature for is_video, feature in pieces if not is_video]  # pictures only (the loop keeps videos out)
    if features:
        embeds = torch.cat([piece.embeds for piece in features]).to(hidden.device, hidden.dtype)
        hidden = hidden.masked_scatter(visual.unsqueeze(-1).expand_as(hidden), embeds)
        layers_deep = len(features[0].deepstack)
        deepstack = [torch.cat([piece.deepstack[j] for piece in features]) for j in range(layers_deep)]
    mask = create_causal_mask(
        config=text.config, inputs_embeds=hidden, attention_mask=None, cache=cache, position_ids=None
    )
    rotary = text.rotary_emb(hidden, positions)
    budget = owner._layers
    for index, layer in enumerate(text.layers):
        hidden = layer(hidden, attention_mask=mask, position_embeddings=rotary, position_ids=None, cache=cache,
                       use_cache=True)
        if index < len(deepstack):
            hidden = text._deepstack_process(hidden, visual, deepstack[index])
        budget -= 1
        if budget <= 0 and index + 1 < len(text.layers):
            yield
            budget = owner._layers
    hidden = text.norm(hidden[:, -1:, :])
    return model.lm_head(hidden)[:, -1, :]
