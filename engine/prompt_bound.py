"""An upper bound on a prompt's tokens without the model's tokenizer, for remote engines.

Qwen2, Qwen2.5 and Qwen3 (VL included) use a byte-level BPE with an NFC normalizer and no byte
fallback: without any merge every byte of the normalized UTF-8 text is one token, and each merge
only joins two tokens into one. So the UTF-8 bytes of the NFC-normalized text of a Qwen chat
rendering are never fewer than its tokens, in any script (a Chinese character is 3 bytes and at
least 1 token; NFC, which lengthens a few characters such as U+FB2C, is applied before counting).
The template's special tokens are counted as their bytes (10 or more) while the model reads each
as one token; that slack covers template variations (a Qwen3 `<think>` line) and normalization
across their edges. A picture counts as the most any picture can cost under the pixel budget, on
either architecture. Torch-free: a bot talking to a model server never imports torch.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence

from engine.interface import PromptTurn

__all__ = ["picture_token_bound", "prompt_token_bound"]

_GENERATION_PROMPT = "<|im_start|>assistant\n"
_PICTURE = "<|vision_start|><|image_pad|><|vision_end|>"


def picture_token_bound(max_pixels: int) -> int:
    """The most visual tokens one picture costs under `max_pixels`: 28 px per token side (Qwen2.5-VL)
    is the smaller factor, so the bound holds for Qwen3-VL's 32 px too."""
    return max(1, max_pixels // (28 * 28))


def prompt_token_bound(turns: Sequence[PromptTurn], tokens_per_picture: int, tokens_per_video: int = 0) -> int:
    """At least as many tokens as a Qwen tokenizer and chat template make of `turns` (see the module doc).

    A video counts as `tokens_per_video`: its visual tokens and its frames' framing, as the caller
    sends it (a server that samples a `video_url` itself may spend more: see `engine.remote_video`)."""
    total = len(_GENERATION_PROMPT)
    for turn in turns:
        framing = f"<|im_start|>{turn.role}\n" + _PICTURE * (len(turn.images) + len(turn.videos)) + "<|im_end|>\n"
        text = unicodedata.normalize("NFC", turn.text).encode("utf-8")
        total += len(framing.encode()) + len(text) + tokens_per_picture * len(turn.images)
        total += tokens_per_video * len(turn.videos)
    return total
