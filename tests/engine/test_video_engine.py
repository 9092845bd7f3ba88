"""Videos in the engine's own decoding loop, on both architectures: video input with its timing, and
the prefix cache and feature cache giving the same first-token logits as a full recompute."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import torch

from engine.decode import ImageBudget
from engine.interface import EngineRejected, PromptTurn
from engine.local import LocalEngine
from engine.videos import VideoBudget, VideoLimits
from tests.engine.support import SYSTEM, Recorder, answer, ask, noisy_picture, recorder, reference_logits, started_engine
from tests.engine.videos import clip, packet_count, prompt_video, slow_first_frame, sound_only

SMALL = 64 * 28 * 28
VIDEO = VideoBudget(VideoLimits(max_seconds=10), max_tokens=96)
BUDGET = ImageBudget(4 * 28 * 28, SMALL, True, VIDEO)
ATOL = 1e-4


@pytest.fixture
async def engine(tiny_model_dir: Path) -> AsyncIterator[LocalEngine]:
    async with started_engine(tiny_model_dir, max_pixels=SMALL, video=VIDEO) as eng:
        eng.generate_hook = Recorder()
        yield eng


async def turn(engine: LocalEngine, rid: str, session: str, turns: list[PromptTurn]) -> str:
    """Run one request; its first-token logits must equal a full recompute by the HF processor and model."""
    text, stats = await answer(engine, ask(rid, session, turns))
    assert stats.prompt_tokens == await engine.count_prompt_tokens(turns)
    first = recorder(engine).logits[rid][0]
    expected = reference_logits(engine, turns, BUDGET)
    assert torch.allclose(first, expected, atol=ATOL), (rid, (first - expected).abs().max())
    return text


async def test_a_clip_is_video_input_with_its_timing(engine: LocalEngine) -> None:
    video = prompt_video(clip(seconds=3.0))  # 6 frames at 2 per second: 3 pairs, one every second
    await turn(engine, "v1", "s", [SYSTEM, PromptTurn("user", "What happens at 0:02?", videos=(video,))])
    seen = recorder(engine).prefill["v1"]
    assert seen["image_grid_thw"] is None
    grids = seen["video_grid_thw"]
    if engine.loaded.arch.name == "qwen3_vl":  # one run of tokens per frame pair, after its time as text
        assert grids.shape[0] == 3 and bool((grids[:, 0] == 1).all())
        text = engine.loaded.processor.tokenizer.decode(seen["input_ids"][0])
        assert "<0.5 seconds>" in text and "<1.5 seconds>" in text and "<2.5 seconds>" in text
    else:  # one run; M-RoPE time advances by the seconds between pairs
        assert grids.shape[0] == 1 and int(grids[0, 0]) == 3
    assert torch.allclose(seen["second_per_grid_ts"], torch.tensor(1.0))
    assert int(grids.prod(-1).sum()) // 4 <= VIDEO.max_tokens  # the frames were sized to the token budget


async def test_follow_up_about_a_clip_reuses_the_prefix(engine: LocalEngine) -> None:
    video = prompt_video(clip(seconds=2.0, container="gif"))
    history = [SYSTEM, PromptTurn("user", "What does the recording show?", (noisy_picture((64, 64), 3),), (video,))]
    reply = await turn(engine, "f1", "s", history)
    history += [PromptTurn("assistant", reply), PromptTurn("user", "And at the end?")]
    await turn(engine, "f2", "s", history)
    seen = recorder(engine).prefill["f2"]
    assert seen["pixel_values"] is None and seen["feature_hits"] == 0  # the clip is inside the reused prefix
    assert seen["cached_tokens"] >= recorder(engine).prefill["f1"]["input_ids"].shape[1]


async def test_same_clip_in_another_session_uses_the_feature_cache(engine: LocalEngine) -> None:
    video = prompt_video(clip(seconds=2.0, container="webm"))
    await turn(engine, "a1", "A", [SYSTEM, PromptTurn("user", "What happens?", videos=(video,))])
    await turn(engine, "b1", "B", [SYSTEM, PromptTurn("user", "Describe the clip.", videos=(video,))])
    seen = recorder(engine).prefill["b1"]
    assert seen["cached_tokens"] == 0 and seen["pixel_values"] is None
    assert seen["feature_hits"] == seen["video_grid_thw"].shape[0]


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (clip(seconds=12.0, rate=2), "video_too_large"),
        (sound_only(), "invalid_video"),
        (b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 64, "invalid_video"),
    ],
    ids=["too-long", "sound-only", "corrupt"],
)
async def test_a_video_that_cannot_be_read_is_rejected(engine: LocalEngine, data: bytes, code: str) -> None:
    with pytest.raises(EngineRejected) as caught:
        await answer(engine, ask("bad", "s", [SYSTEM, PromptTurn("user", "What happens?", videos=(prompt_video(data),))]))
    assert caught.value.code == code
    assert "video" in caught.value.user_message.lower()


async def test_a_checkpoint_whose_template_has_no_video_parts_still_reads_videos(tiny_qwen25_dir: Path, tmp_path: Path) -> None:
    """Demo and bench checkpoints written before videos were read have a template without video parts."""
    old = tmp_path / "old-template"
    shutil.copytree(tiny_qwen25_dir, old)
    template = old / "chat_template.jinja"
    lines = template.read_text().replace("{% elif content['type'] == 'video' %}<|vision_start|><|video_pad|><|vision_end|>", "")
    assert "video" not in lines
    template.write_text(lines)
    async with started_engine(old, max_pixels=SMALL, video=VIDEO) as eng:
        eng.generate_hook = Recorder()
        await turn(eng, "o1", "s", [SYSTEM, PromptTurn("user", "What happens?", videos=(prompt_video(clip(2.0)),))])
        assert recorder(eng).prefill["o1"]["video_grid_thw"] is not None


async def test_a_clip_read_in_small_chunks_gives_the_same_logits(tiny_model_dir: Path) -> None:
    """Chunks that end inside a frame pair's tokens are fed the slice of its features they cover."""
    async with started_engine(tiny_model_dir, max_pixels=SMALL, video=VIDEO, prefill_chunk_tokens=7) as eng:
        eng.generate_hook = Recorder()
        picture = noisy_picture((64, 96), 5)
        await turn(eng, "c1", "s", [SYSTEM, PromptTurn("user", "Compare them.", (picture,), (prompt_video(clip(3.0)),))])
        assert eng.cache_stats().prefill_chunks > 5


async def test_a_phone_clip_with_a_rotation_flag_is_read_upright(engine: LocalEngine) -> None:
    video = prompt_video(clip(seconds=2.0, size=(96, 64), rotation=-90))  # stored landscape, shown portrait
    await turn(engine, "r1", "s", [SYSTEM, PromptTurn("user", "What is on screen?", videos=(video,))])
    grids = recorder(engine).prefill["r1"]["video_grid_thw"]
    assert int(grids[0, 1]) > int(grids[0, 2])  # more rows than columns of patches: portrait


async def test_counting_a_clip_whose_first_frame_is_slow_is_refused_in_time(tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The count decodes a clip's first frame for its rotation flag: under the video's time limit, so a hostile
    clip neither holds the counting thread nor its lock (the next count goes through)."""
    video = VideoBudget(VideoLimits(max_seconds=30, timeout_s=0.3), max_tokens=96)
    async with started_engine(tiny_model_dir, max_pixels=SMALL, video=video) as eng:
        hostile = clip(seconds=20.0, rate=10)  # 200 packets of 50 ms each
        decoded = slow_first_frame(monkeypatch)
        with pytest.raises(EngineRejected) as caught:
            await eng.count_prompt_tokens([SYSTEM, PromptTurn("user", "What happens?", videos=(prompt_video(hostile),))])
        assert caught.value.code == "invalid_video" and caught.value.user_message == "The video took too long to decode."
        assert 0 < len(decoded) < packet_count(hostile) // 2  # stopped long before the stream's end
        assert await eng.count_prompt_tokens([SYSTEM, PromptTurn("user", "And this?", (noisy_picture((64, 64), 1),))]) > 0
