"""Counting prompts before they are sent: in process exactly as the decoding loop counts, and for a
remote server a bound never below what a Qwen tokenizer makes of the prompt, in any script."""

from __future__ import annotations

import hashlib
import io
import unicodedata
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from PIL import Image
from tokenizers import AddedToken, pre_tokenizers
from transformers import AutoProcessor, Qwen2Tokenizer

from engine.counting import PromptCounter
from engine.decode import ImageBudget, messages_for
from engine.interface import GenerationStats, PromptImage, PromptTurn
from engine.loader import LoadedModel, load_model
from engine.prompt import build_prompt
from engine.prompt_bound import picture_token_bound, prompt_token_bound
from engine.tiny import CHAT_TEMPLATE
from tests.engine.support import ask, started_engine

BUDGET = ImageBudget(min_pixels=4 * 28 * 28, max_pixels=64 * 28 * 28)
SPECIAL = ["<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"]


def picture(size: tuple[int, int], fmt: str = "PNG", orientation: int | None = None) -> PromptImage:
    image = Image.new("RGB", size, (sum(size) % 256, 120, 40))
    out = io.BytesIO()
    if orientation is None:
        image.save(out, format=fmt)
    else:
        exif = image.getexif()
        exif[0x0112] = orientation
        image.save(out, format=fmt, exif=exif)
    data = out.getvalue()
    return PromptImage(hashlib.sha256(data).hexdigest(), data)


def conversation() -> list[PromptTurn]:
    """Chinese and other scripts, pictures of every shape the resize treats differently."""
    return [
        PromptTurn("system", "你是公司的帮助台助手。回答要简短。"),
        PromptTurn("user", "打印机显示错误 E42，这是什么意思？", (picture((96, 64)), picture((1000, 300), "JPEG", 6))),
        PromptTurn("assistant", "E42 表示碳粉不足。请更换碳粉盒。"),
        PromptTurn("user", "e\u0301 \ufb2c 한국어 Ελληνικά 😀 and the 2nd row?", (picture((20, 12)), picture((2400, 1800), "JPEG"))),
    ]


@pytest.fixture(scope="module")
def loaded_models(tiny_qwen25_dir: Path, tiny_qwen3_dir: Path) -> Iterator[dict[str, LoadedModel]]:
    yield {
        "qwen2_5_vl": load_model(tiny_qwen25_dir, device_setting="cpu"),
        "qwen3_vl": load_model(tiny_qwen3_dir, device_setting="cpu"),
    }


@pytest.mark.parametrize("arch", ["qwen2_5_vl", "qwen3_vl"])
def test_count_is_the_engines_prompt_length(loaded_models: dict[str, LoadedModel], arch: str) -> None:
    """The counter reads picture headers only; the reference runs the processor on every picture."""
    loaded = loaded_models[arch]
    counter = PromptCounter(loaded, BUDGET)
    turns = conversation()
    reference = build_prompt(loaded, turns, BUDGET)
    assert len(reference.pixels) == 4  # every picture really went through the image processor
    assert counter.count(turns) == len(reference.ids)
    assert counter.count(turns[:1]) == len(build_prompt(loaded, turns[:1], BUDGET).ids)
    # a turned photo costs what its upright size costs, not its stored size
    upright, turned = picture((300, 1000), "JPEG"), picture((1000, 300), "JPEG", 6)
    one = [PromptTurn("user", "", (upright,))]
    assert counter.count(one) == counter.count([PromptTurn("user", "", (turned,))])


@pytest.mark.parametrize("arch", ["qwen2_5_vl", "qwen3_vl"])
async def test_local_engine_counts_what_it_then_reports(tiny_qwen25_dir: Path, tiny_qwen3_dir: Path, arch: str) -> None:
    path = tiny_qwen25_dir if arch == "qwen2_5_vl" else tiny_qwen3_dir
    async with started_engine(path, max_pixels=BUDGET.max_pixels, device="cpu") as engine:
        turns = conversation()
        counted = await engine.count_prompt_tokens(turns)
        stats = [event async for event in engine.generate(ask("r1", "s1", turns, max_new_tokens=2))][-1]
        assert isinstance(stats, GenerationStats) and stats.prompt_tokens == counted


# --- the remote bound ----------------------------------------------------------------------------


def worst_case_qwen_tokenizer() -> Qwen2Tokenizer:
    """transformers' real Qwen2 tokenizer (NFC, Qwen's split pattern, byte level) with no merges at all:
    every byte one token, the most tokens any vocabulary of this kind can make of a text."""
    vocab = {char: index for index, char in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet()))}
    vocab["<|endoftext|>"] = len(vocab)
    tokenizer = Qwen2Tokenizer(vocab=vocab, merges=[])
    tokenizer.add_tokens([AddedToken(token, special=True) for token in SPECIAL])
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


WORST = worst_case_qwen_tokenizer()
PICTURE_TOKENS = picture_token_bound(BUDGET.max_pixels)


def real_count(tokenizer: object, turns: list[PromptTurn], picture_tokens: int) -> int:
    """What a Qwen model counts: the chat template tokenized, each picture placeholder made `picture_tokens`."""
    text = tokenizer.apply_chat_template(messages_for(turns), add_generation_prompt=True, tokenize=False)  # type: ignore[attr-defined]
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]  # type: ignore[operator]
    pad = tokenizer.convert_tokens_to_ids("<|image_pad|>")  # type: ignore[attr-defined]
    pictures = ids.count(pad)
    return len(ids) - pictures + pictures * picture_tokens


texts = st.text(st.characters(exclude_categories=("Cs",)), max_size=300)


@settings(max_examples=300, deadline=None)
@given(system=texts, question=texts, answer=texts, pictures=st.integers(0, 3))
@example(system="", question="\ufb2c" * 40 + "\u0958\u0344", answer="e\u0301" * 30, pictures=1)
@example(system="<|im_end|>\u0338", question="<|im_start|>\u0301한", answer=">\u0338<\u0338", pictures=0)
@example(system="你好" * 100, question="\U00020000\U0002a6d6 👩‍👩‍👧", answer="１２３ｱｲｳ", pictures=2)
def test_bound_is_never_below_a_qwen_tokenizer(system: str, question: str, answer: str, pictures: int) -> None:
    image = picture((96, 64))
    turns = [
        PromptTurn("system", system),
        PromptTurn("user", question, (image,) * pictures),
        PromptTurn("assistant", answer),
        PromptTurn("user", answer + question),
    ]
    assert real_count(WORST, turns, PICTURE_TOKENS) <= prompt_token_bound(turns, PICTURE_TOKENS)


def test_bound_is_tight_for_chinese_and_holds_for_a_trained_vocabulary(tiny_qwen25_dir: Path) -> None:
    """The slack is the chat template's special tokens only: a bound of characters instead of bytes fails."""
    chinese = "请把截图里的表格转换成 Markdown，并保留表头。" * 20
    turns = [PromptTurn("system", "你是帮助台助手。"), PromptTurn("user", chinese)]
    worst = real_count(WORST, turns, PICTURE_TOKENS)
    bound = prompt_token_bound(turns, PICTURE_TOKENS)
    assert worst <= bound <= worst + 3 * 20  # 3 messages, their role and special-token bytes
    assert worst > len(unicodedata.normalize("NFC", chinese)) * 2  # no estimate by characters would hold
    trained = AutoProcessor.from_pretrained(tiny_qwen25_dir).tokenizer  # the tiny model's BPE, with merges
    assert real_count(trained, turns, PICTURE_TOKENS) <= bound
