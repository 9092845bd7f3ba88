"""The vision tower run in pieces gives the features of one call (both architectures)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from engine.decode import ImageBudget
from engine.loader import load_model
from engine.pictures import DEFAULT_LIMITS
from engine.prompt import prepare_picture
from engine.vision_pieces import PiecewiseEncoding, piecewise_supported
from tests.engine.support import noisy_picture

BUDGET = ImageBudget(4 * 28 * 28, 256 * 28 * 28, True)


@pytest.mark.parametrize("tokens", [1, 7, 64, 1 << 20])
def test_features_in_pieces_equal_one_call(tiny_model_dir: Path, tokens: int) -> None:
    loaded = load_model(tiny_model_dir, device_setting="cpu")
    pictures = [noisy_picture((300, 200), seed=71), noisy_picture((90, 250), seed=72)]
    prepared = [prepare_picture(loaded, picture, BUDGET, DEFAULT_LIMITS) for picture in pictures]
    pixels = torch.cat([p for p, _ in prepared])
    grids = torch.tensor([g for _, g in prepared])
    assert piecewise_supported(loaded.model)
    with torch.inference_mode():
        whole = loaded.model.model.get_image_features(pixels, grids, return_dict=True)
        encoding = PiecewiseEncoding(loaded.model, pixels, grids)
        while not encoding.advance(tokens):
            pass
    result = encoding.result
    assert result is not None
    if tokens < 64:
        assert encoding.pieces > 20  # really in pieces
    for mine, theirs in zip(result.embeds, whole.pooler_output, strict=True):
        assert mine.shape == theirs.shape
        assert torch.allclose(mine, theirs, atol=1e-5), float((mine - theirs).abs().max())
    deep = getattr(whole, "deepstack_features", None) or []
    assert len(result.deepstack) == len(deep)
    for mine_layer, their_layer in zip(result.deepstack, deep, strict=True):
        for mine, theirs in zip(mine_layer, their_layer, strict=True):
            assert torch.allclose(mine, theirs, atol=1e-5), float((mine - theirs).abs().max())
