"""Writing small random-weight Qwen2.5-VL / Qwen3-VL checkpoints of the real architectures.

They carry a real processor (a byte-level BPE tokenizer trained here with the Qwen special tokens,
the Qwen image and video processors and a chat template), so the engine loads them with exactly the
code that loads real weights. Their answers are random. `size="bench"` gives a ~65 M parameter
model for benchmarks, big enough for compute to dominate on a CPU.

Random weights would pick byte tokens that are not UTF-8 on their own, so a correct streaming
detokenizer held the text back to the end (no time to first token) and the demo showed U+FFFD. The
`lm_head` rows of every token that is not printable ASCII are therefore zero: their logit is 0,
below the best of a few hundred random printable logits, so greedy answers are printable words.
The bench size also zeroes the end-of-turn token: its answers always run to the length asked, so a
benchmark does the same work on any server, whether or not it honours `ignore_eos`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (
    AutoModelForImageTextToText,
    Qwen2_5_VLConfig,
    Qwen2_5_VLProcessor,
    Qwen2Tokenizer,
    Qwen2VLImageProcessor,
    Qwen3VLConfig,
    Qwen3VLProcessor,
)
from transformers.configuration_utils import PretrainedConfig
from transformers.models.qwen2_vl.video_processing_qwen2_vl import Qwen2VLVideoProcessor
from transformers.models.qwen3_vl.video_processing_qwen3_vl import Qwen3VLVideoProcessor
from transformers.processing_utils import ProcessorMixin
from transformers.utils import logging as hf_logging

# Weight-loading progress bars are noise in an operator's log.
hf_logging.disable_progress_bar()

__all__ = ["Arch", "Size", "write_tiny_checkpoint"]

Arch = Literal["qwen2_5_vl", "qwen3_vl"]
Size = Literal["tiny", "bench"]

SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
]

# The structure of Qwen's own template: system turn first, videos and pictures before text in a user turn.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif content['type'] == 'text' %}{{ content['text'] }}{% endif %}"
    "{% endfor %}<|im_end|>\n{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

_CORPUS = [
    "What does this error mean? The dialog says the disk is full and the update failed.",
    "Read the text in this picture and keep the line breaks.",
    "Turn the table in this screenshot into Markdown with a header row.",
    "The serial number is printed on the label at the bottom left of the device.",
    "Describe this picture: a chart with two lines, revenue and costs, from January to June.",
    "Write the HTML and CSS for this mock-up: a header, a sidebar and a form with two fields.",
    "Where is the power button? It is on the right side, next to the status light.",
    "The invoice total is 1,234.56 EUR, due on 2026-12-01, for order 42.",
    '{"bbox_2d": [10, 20, 110, 220], "label": "serial number"}',
    "Yes. No. Picture 1 and Picture 2 differ in the colour of the button.",
]


def _tokenizer(vocab_size: int) -> Qwen2Tokenizer:
    bpe = Tokenizer(models.BPE(unk_token=None))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(_CORPUS * 4, trainer=trainer)
    tokenizer = Qwen2Tokenizer(
        tokenizer_object=bpe,
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token=None,  # type: ignore[arg-type]  # a byte-level BPE has no unknown token
        extra_special_tokens={
            "image_token": "<|image_pad|>",
            "video_token": "<|video_pad|>",
            "vision_bos_token": "<|vision_start|>",
            "vision_eos_token": "<|vision_end|>",
        },
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def _dims(size: Size) -> dict[str, int]:
    if size == "bench":
        # 64 M parameters (Qwen2.5-VL; 66 M Qwen3-VL), about 60 M in the text decoder; head_dim 64 and grouped-query
        # attention (5 query heads per KV head; the 7B has 7) as in the real models.
        return {"hidden": 640, "layers": 12, "heads": 10, "kv_heads": 2, "ffn": 2048, "v_hidden": 256, "v_depth": 4, "v_heads": 4, "vocab": 2000}
    return {"hidden": 64, "layers": 2, "heads": 4, "kv_heads": 2, "ffn": 128, "v_hidden": 32, "v_depth": 2, "v_heads": 2, "vocab": 400}


def _printable_head(model: Any, tokenizer: Any, *, can_stop: bool) -> None:
    """Zero the output rows of special tokens and of tokens that are not printable ASCII alone
    (`<|im_end|>` keeps its random row when `can_stop`, so answers still end now and then)."""
    special = set(tokenizer.all_special_ids) | set(tokenizer.convert_tokens_to_ids(SPECIAL_TOKENS))
    end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    silent = [
        i
        for i in range(len(tokenizer))
        if (i in special and not (can_stop and i == end))
        or (i not in special and not _printable(tokenizer.decode([i])))
    ]
    head = model.get_output_embeddings()
    with torch.no_grad():
        head.weight[silent] = 0.0


def _printable(text: str) -> bool:
    return bool(text) and all(" " <= c <= "~" for c in text)


def write_tiny_checkpoint(
    out: Path, arch: Arch = "qwen2_5_vl", size: Size = "tiny", seed: int = 0, *, can_stop: bool | None = None
) -> Path:
    """Write config, random weights and processor to `out`; returns `out`. `can_stop`: whether the
    model may end an answer (default: the tiny size may, the bench size never does)."""
    d = _dims(size)
    tokenizer = _tokenizer(d["vocab"])
    ids = {tok: tokenizer.convert_tokens_to_ids(tok) for tok in SPECIAL_TOKENS}
    head_dim = d["hidden"] // d["heads"]
    # mrope_section splits head_dim / 2 rotary frequencies between time, height and width.
    half = head_dim // 2
    section = [half - 2 * (half * 3 // 8), half * 3 // 8, half * 3 // 8]
    text_config: dict[str, Any] = {
        "vocab_size": len(tokenizer),
        "hidden_size": d["hidden"],
        "intermediate_size": d["ffn"],
        "num_hidden_layers": d["layers"],
        "num_attention_heads": d["heads"],
        "num_key_value_heads": d["kv_heads"],
        "max_position_embeddings": 32768,
        "rope_parameters": {"rope_type": "default", "rope_theta": 1_000_000.0, "mrope_section": section},
        "eos_token_id": ids["<|im_end|>"],
        "pad_token_id": ids["<|endoftext|>"],
    }
    vision_config: dict[str, Any] = {
        "depth": d["v_depth"],
        "hidden_size": d["v_hidden"],
        "intermediate_size": d["v_hidden"] * 2,
        "num_heads": d["v_heads"],
        "out_hidden_size": d["hidden"],
    }
    token_ids: dict[str, Any] = {
        "image_token_id": ids["<|image_pad|>"],
        "video_token_id": ids["<|video_pad|>"],
        "vision_start_token_id": ids["<|vision_start|>"],
        "vision_end_token_id": ids["<|vision_end|>"],
    }
    if arch == "qwen2_5_vl":
        vision_config.update(patch_size=14, fullatt_block_indexes=[d["v_depth"] - 1], window_size=112)
        text_config["bos_token_id"] = ids["<|endoftext|>"]
        config: PretrainedConfig = Qwen2_5_VLConfig(text_config=text_config, vision_config=vision_config, **token_ids)
        image_processor = Qwen2VLImageProcessor(patch_size=14, merge_size=2)
        processor: ProcessorMixin = Qwen2_5_VLProcessor(
            image_processor=image_processor,
            tokenizer=tokenizer,
            video_processor=Qwen2VLVideoProcessor(patch_size=14, merge_size=2),
            chat_template=CHAT_TEMPLATE,
        )
    else:
        text_config["head_dim"] = head_dim
        vision_config.update(
            patch_size=16, num_position_embeddings=256, deepstack_visual_indexes=[d["v_depth"] - 1]
        )
        config = Qwen3VLConfig(text_config=text_config, vision_config=vision_config, **token_ids)
        image_processor = Qwen2VLImageProcessor(patch_size=16, merge_size=2, image_mean=[0.5] * 3, image_std=[0.5] * 3)
        processor = Qwen3VLProcessor(
            image_processor=image_processor,
            tokenizer=tokenizer,
            video_processor=Qwen3VLVideoProcessor(patch_size=16, merge_size=2),
            chat_template=CHAT_TEMPLATE,
        )
    config.eos_token_id = ids["<|im_end|>"]
    config.pad_token_id = ids["<|endoftext|>"]
    torch.manual_seed(seed)
    model = AutoModelForImageTextToText.from_config(config, dtype=torch.float32)
    _printable_head(model, tokenizer, can_stop=size == "tiny" if can_stop is None else can_stop)
    model.generation_config.eos_token_id = ids["<|im_end|>"]
    model.generation_config.pad_token_id = ids["<|endoftext|>"]
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out
