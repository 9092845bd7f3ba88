"""Screen recordings and GIFs through the console adapter, on the tiny Qwen2.5-VL model."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.videos import REFUSAL_TEXTS
from bot.wording import FIND_NEEDS_A_PICTURE, video_refused
from engine.videos import VideoProblem
from tests.adapters.test_console import Chat, session_turns, write_picture
from tests.engine.videos import clip, sound_only


def video_in_last_prompt(chat: Chat) -> tuple[int, float]:
    """(frame pairs, seconds between pairs) of the video the engine was last given."""
    call = chat.calls[-1]
    grids = call["video_grid_thw"]
    assert grids is not None, "the engine got no video input"
    return int(grids[:, 0].sum()), float(call["second_per_grid_ts"][0])


@pytest.mark.parametrize("container", ["mp4", "gif"])
async def test_a_clip_gets_an_answer_with_its_timing(service_factory, tmp_path: Path, container: str) -> None:
    path = tmp_path / f"recording.{container}"
    path.write_bytes(clip(seconds=3.0, container=container))
    async with service_factory() as service:
        chat = Chat(service, tmp_path)
        out = await chat.send(f"/image {path}", "What happens when I click the button?")
        assert "bot> " in out and "error" not in out.lower()
        assert video_in_last_prompt(chat) == (3, 1.0)  # 6 frames, 2 per second, read in pairs
        assert "(The video above is 0:03 long; say when things happen" in chat.last_prompt_text()
        await chat.send("And at 0:02?")
        assert video_in_last_prompt(chat) == (3, 1.0)  # the follow-up still sees the clip
        turns = await session_turns(service)
        assert [t.status for t in turns] == ["done", "done"] and len(turns[0].image_hashes) == 1


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (lambda: clip(seconds=70.0, rate=1), "too_long"),
        (sound_only, "no_video"),
        (lambda: b"\x00\x00\x00\x18ftypisom" + b"\x17" * 300, "damaged"),
    ],
    ids=["over-long", "sound-only", "corrupt"],
)
async def test_bad_videos_get_one_clear_line(service_factory, tmp_path: Path, data, problem: str) -> None:
    path = tmp_path / "clip.mp4"
    path.write_bytes(data())
    async with service_factory() as service:
        chat = Chat(service, tmp_path)
        out = await chat.send(f"/image {path}", "What is this?")
        assert video_refused(REFUSAL_TEXTS[VideoProblem(problem)], "clip.mp4", "60") in out
        assert not chat.calls  # the engine never saw it


async def test_the_reading_status_counts_videos_and_pdf_pages(service_factory, tmp_path: Path) -> None:
    from bot.messages import Attachment, Generating, IncomingMessage
    from bot.wording import reading
    from tests.conftest import picture_bytes
    from tests.pdfs import coloured_pdf

    async def status(thread: str, *files: tuple[str, bytes]) -> Generating:
        message = IncomingMessage("console", thread, "u", "What is this?", tuple(Attachment(d, name) for name, d in files))
        [shown] = [r async for r in service.conversations.handle(message) if isinstance(r, Generating)]
        return shown

    async with service_factory() as service:
        assert await status("v", ("a.mp4", clip(seconds=1.0))) == Generating(videos=1)
        assert await status("p", ("doc.pdf", coloured_pdf(3))) == Generating(pages=3)
        assert await status("m", ("a.png", picture_bytes()), ("b.mp4", clip(seconds=1.0))) == Generating(pictures=1, videos=1)
    assert reading(0, 1) == "⏳ Watching the video…" and reading(0, 0, 3) == "⏳ Reading the pages…"
    assert reading(1, 1) == "⏳ Reading the pictures and watching the video…" and reading(0, 2) == "⏳ Watching the 2 videos…"


async def test_the_console_says_files_not_pictures(service_factory, tmp_path: Path) -> None:
    path = tmp_path / "recording.mp4"
    path.write_bytes(clip(seconds=1.0))
    async with service_factory() as service:
        out = await Chat(service, tmp_path).send(f"/image {path}")
    assert out == "Attached recording.mp4 (1 file(s) for the next question).\n"


def test_a_video_of_unknown_length_is_labelled_in_plain_words() -> None:
    from bot.prompt import label_videos

    assert label_videos("Q", [None]).startswith("(The length of the video above is unknown; say when")
    assert label_videos("Q", [None, 7.0]).startswith("(The 2 videos above are, in order: Video 1 (unknown length), Video 2 (0:07);")


@pytest.mark.parametrize("container", ["mp4", "gif"])
async def test_find_on_a_video_is_refused_before_the_model_is_asked(service_factory, tmp_path: Path, container: str) -> None:
    path = tmp_path / f"recording.{container}"
    path.write_bytes(clip(seconds=3.0, container=container))
    red = write_picture(tmp_path, "red.png", (220, 0, 0))
    async with service_factory() as service:
        chat = Chat(service, tmp_path)
        out = await chat.send(f"/image {path}", "/find the button")
        assert FIND_NEEDS_A_PICTURE in out and not chat.calls
        await chat.send(f"/image {path}", "What happens?")
        asked = len(chat.calls)
        out = await chat.send("/find the button")  # the conversation's last picture is the video
        assert FIND_NEEDS_A_PICTURE in out and len(chat.calls) == asked
        out = await chat.send(f"/image {red}", "/find the button")  # a picture: marked as before
        assert FIND_NEEDS_A_PICTURE not in out and len(chat.calls) == asked + 1 and "error" not in out


async def test_a_clip_and_a_long_pdf_are_answered_within_the_context(service_factory, tmp_path: Path) -> None:
    from engine.arch import DEFAULT_MAX_PIXELS
    from tests.pdfs import coloured_pdf

    recording, manual = tmp_path / "recording.mp4", tmp_path / "manual.pdf"
    recording.write_bytes(clip(seconds=8.0, rate=2, size=(1280, 720)))  # 16 frames: 8 pairs of about 1,000 tokens
    manual.write_bytes(coloured_pdf(12))
    # The default context and pictures; a video may cost 8,192 tokens (half the context). Read beside it as
    # before (8 pages of about 1,300 tokens), the PDF would take the prompt to about 18,700 tokens.
    async with service_factory(max_pixels=DEFAULT_MAX_PIXELS, video_max_tokens=8192) as service:
        context = service.settings.context_tokens
        assert context == 16384
        chat = Chat(service, tmp_path)
        out = await chat.send(f"/image {recording}", f"/image {manual}", "Does the clip match the manual?")
        assert "'manual.pdf' has 12 pages; I read pages 1-2." in out.split("bot> ")[0]  # said before the answer
        assert "bot> " in out and "error" not in out.lower()
        prefill = chat.calls[-1]["input_ids"].shape[1]
        assert 8 * 1000 + 2 * 1000 < prefill <= context  # the clip and two pages, within the context
        assert video_in_last_prompt(chat)[0] == 8 and chat.images_in_last_prompt() == 2
        chat = Chat(service, tmp_path, thread="two clips")
        out = await chat.send(f"/image {recording}", f"/image {recording}", f"/image {manual}", "Compare them")
        assert "'recording.mp4' was left out: with the other files of this message" in out
        assert "bot> " in out and chat.calls[-1]["input_ids"].shape[1] <= context
        assert video_in_last_prompt(chat)[0] == 8 and chat.images_in_last_prompt() == 2  # one clip and two pages, as above


async def test_a_clip_whose_first_frame_is_slow_is_refused_in_time_and_the_rest_answered(
    service_factory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bot.wording import VIDEO_TOO_SLOW
    from tests.engine.videos import packet_count, slow_first_frame

    hostile = clip(seconds=20.0, rate=10)  # 200 packets of 50 ms each, against a limit of 0.5 s
    (tmp_path / "hostile.mp4").write_bytes(hostile)
    red = write_picture(tmp_path, "red.png", (220, 0, 0))
    decoded = slow_first_frame(monkeypatch)
    async with service_factory(video_timeout_s=0.5) as service:
        chat = Chat(service, tmp_path)
        out = await chat.send(f"/image {tmp_path / 'hostile.mp4'}", f"/image {red}", "What colour is the picture?")
        assert video_refused(VIDEO_TOO_SLOW, "hostile.mp4") in out.split("bot> ")[0]
        assert 0 < len(decoded) < packet_count(hostile) // 2  # stopped long before the stream's end
        assert "bot> " in out and chat.images_in_last_prompt() == 1 and chat.calls[-1].get("video_grid_thw") is None
        turns = await session_turns(service)
        assert [t.status for t in turns] == ["done"] and len(turns[0].image_hashes) == 1
