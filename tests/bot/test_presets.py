"""The presets: their prompts, and each one asked through the same queue and session as any question."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import shutil
import threading
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageDraw

from adapters.console import ConsoleAdapter
from bot.commands import COMMANDS, help_text
from bot.conversations import NO_PICTURE
from bot.drawing import PALETTE
from bot.messages import (
    Answer,
    Attachment,
    Document,
    Generating,
    IncomingMessage,
    Notice,
    Picture,
    QueuePosition,
    Reply,
    Text,
)
from bot.presets import (
    PRESETS,
    extract_html,
    found_replies,
    html_replies,
    preset_named,
    table_replies,
)
from engine.arch import QWEN2_5_VL, QWEN3_VL
from tests.engine.test_local_engine import record_hook, slow_hook
from tests.hooks import forced_answer

# --- prompts -------------------------------------------------------------------------------------


def test_every_preset_is_a_command_with_help() -> None:
    names = {spec.name for spec in COMMANDS}
    assert {"ocr", "table", "code", "describe", "find"} <= names
    text = help_text()
    assert "/find THING - " in text and "/ocr - " in text and "last picture of this conversation" in text
    for preset in PRESETS:
        assert preset.example.startswith(f"/{preset.name}")


def test_grounding_prompt_names_each_architectures_coordinates() -> None:
    find = preset_named("find")
    assert find is not None and find.needs_argument
    qwen25 = find.prompt(QWEN2_5_VL, '  the "serial"\nnumber ')
    qwen3 = find.prompt(QWEN3_VL, "the serial number")
    for prompt in (qwen25, qwen3):
        assert '"the \'serial\' number"' in prompt or '"the serial number"' in prompt
        assert "bbox_2d" in prompt and "JSON" in prompt
    assert "absolute pixel" in qwen25 and "0 to 1000" not in qwen25
    assert "0 to 1000" in qwen3
    assert find.prompt(QWEN3_VL, "x" * 500).count("x") <= 2 * 200 + 5  # the argument is bounded
    assert find.prompt(QWEN3_VL, "cat", picture=2).startswith("Look only at Picture 2. ")


def test_text_presets_share_prompts_and_cover_several_pictures() -> None:
    for name in ("ocr", "table", "code", "describe"):
        preset = preset_named(name)
        assert preset is not None and not preset.needs_argument
        assert preset.prompt(QWEN2_5_VL) == preset.prompt(QWEN3_VL)
        assert preset.prompt(QWEN3_VL, pictures=2).startswith("Do this for each of the 2 pictures")
    assert "Markdown" in preset_named("table").prompt(QWEN2_5_VL)  # type: ignore[union-attr]
    assert preset_named("nope") is None


def test_extract_html() -> None:
    fenced = "Here you go:\n```html\n<!DOCTYPE html>\n<html><head></head><body><h1>Hi</h1></body></html>\n```\nEnjoy."
    assert extract_html(fenced) == "<!DOCTYPE html>\n<html><head></head><body><h1>Hi</h1></body></html>\n"
    with_css = "```html\n<html><head><title>t</title></head><body><p>x</p></body></html>\n```\n```css\np { color: red; }\n```"
    assert "<style>\np { color: red; }\n</style>\n</head>" in (extract_html(with_css) or "")
    truncated = "```html\n<div class='card'>\n  <p>Cut off by the token li"
    html = extract_html(truncated)
    assert html is not None and html.startswith("<!DOCTYPE html>") and "<div class='card'>" in html
    bare = 'Sure. <!doctype html><html lang="en"><body>ok</body></html> That is all.'
    assert extract_html(bare) == '<!doctype html><html lang="en"><body>ok</body></html>\n'
    assert extract_html("I cannot see any user interface in this picture.") is None


def test_replies_when_extraction_finds_nothing_or_too_much() -> None:
    answer = Answer("No table here, and no markup either.", turn_id=1, latency_ms=5, output_tokens=3)
    assert table_replies(answer) == [answer, Notice("No table was found in the answer, so there is no CSV file.")]
    assert html_replies(answer) == [answer, Notice("The answer has no HTML, so there is no file.")]
    many = Answer("\n\n".join(f"| t{i} |\n|---|\n| {i} |" for i in range(7)), turn_id=1, latency_ms=5, output_tokens=3)
    replies = table_replies(many)
    assert [r.filename for r in replies if isinstance(r, Document)] == [f"table-{i}.csv" for i in range(1, 6)]
    assert replies[-1] == Notice("Only the first 5 of 7 tables were sent as CSV files.")


def test_found_replies_on_an_unreadable_picture() -> None:
    answer = Answer('[{"bbox_2d": [1, 2, 3, 4]}]', turn_id=1, latency_ms=5, output_tokens=3)
    replies = found_replies(answer, b"not a picture", arch=QWEN3_VL, thing="x", min_pixels=3136, max_pixels=50176)
    assert replies[0] == answer and isinstance(replies[1], Text) and replies[1].kind == "error"


# --- through the conversation service --------------------------------------------------------------


async def ask(service: Any, text: str, *pictures: bytes, thread: str = "t") -> list[Reply]:
    message = IncomingMessage(
        "console", thread, "u", text, tuple(Attachment(p, f"p{i}.png") for i, p in enumerate(pictures))
    )
    return [reply async for reply in service.conversations.handle(message)]


def prompt_text(service: Any, call: dict[str, Any]) -> str:
    return service.engine.loaded.processor.tokenizer.decode(call["input_ids"][0])


def images_in(call: dict[str, Any]) -> int:
    grid = call.get("image_grid_thw")
    return 0 if grid is None else int(grid.shape[0])


async def turns(service: Any, thread: str = "t") -> list[Any]:
    session = await service.store.active_session("console", thread)
    return await service.store.turns(session.id)


def square_picture(size: tuple[int, int] = (560, 280), rect: tuple[int, int, int, int] = (140, 70, 280, 210)) -> bytes:
    image = Image.new("RGB", size, "white")
    ImageDraw.Draw(image).rectangle((rect[0], rect[1], rect[2] - 1, rect[3] - 1), fill=(30, 30, 30))
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


async def test_ocr_on_attached_picture_is_an_ordinary_turn(service_factory, red_png: bytes) -> None:
    async with service_factory() as service:
        calls: list[dict[str, Any]] = []
        service.engine.generate_hook = record_hook(calls)
        replies = await ask(service, "/ocr", red_png)
        assert isinstance(replies[-1], Answer) and any(isinstance(r, Generating) for r in replies)
        [turn] = await turns(service)
        assert turn.status == "done" and turn.user_text == preset_named("ocr").prompt(QWEN2_5_VL)  # type: ignore[union-attr]
        assert len(turn.image_hashes) == 1 and turn.latency_ms is not None
        assert images_in(calls[-1]) == 1 and "Read all the text" in prompt_text(service, calls[-1])
        # A follow-up question continues the same session, with the preset's exchange in the prompt.
        await ask(service, "And in German?")
        assert images_in(calls[-1]) == 1 and "Read all the text" in prompt_text(service, calls[-1])
        assert [t.status for t in await turns(service)] == ["done", "done"]


async def test_preset_waits_in_the_same_queue(service_factory, red_png: bytes) -> None:
    async with service_factory(max_new_tokens=12) as service:
        started = threading.Event()
        service.engine.generate_hook = slow_hook(service.engine, delay=0.05, started=started)
        first = asyncio.create_task(ask(service, "A slow question", thread="other"))
        await asyncio.to_thread(started.wait, 10)
        replies = await ask(service, "/describe", red_png)
        await asyncio.wait_for(first, 10)
        assert QueuePosition(1) in replies and isinstance(replies[-1], Answer)


async def test_preset_without_any_picture(service_factory) -> None:
    async with service_factory() as service:
        calls: list[dict[str, Any]] = []
        service.engine.generate_hook = record_hook(calls)
        await ask(service, "Just a question, no picture")
        assert await ask(service, "/ocr") == [Text(NO_PICTURE)]
        assert await ask(service, "/find") == [Text("Usage: /find THING, for example /find the serial number label")]
        assert len(calls) == 1 and len(await turns(service)) == 1


async def test_find_without_thing_keeps_the_picture(service_factory) -> None:
    async with service_factory(max_new_tokens=256) as service:
        calls: list[dict[str, Any]] = []
        service.engine.generate_hook = forced_answer(service, '[{"bbox_2d": [77, 35, 154, 105]}]', calls)
        [usage] = await ask(service, "/find", square_picture())
        assert usage == Text("Usage: /find THING, for example /find the serial number label (the picture is kept)")
        replies = await ask(service, "/find the square")
        assert images_in(calls[-1]) == 1 and any(isinstance(r, Picture) for r in replies)


async def test_preset_uses_the_last_picture_of_the_session(service_factory, red_png: bytes, blue_jpeg: bytes) -> None:
    async with service_factory(max_new_tokens=4) as service:
        calls: list[dict[str, Any]] = []
        service.engine.generate_hook = record_hook(calls)
        await ask(service, "First look", red_png)
        await ask(service, "Second look", blue_jpeg)
        await ask(service, "A question without a picture")
        await ask(service, "/describe")
        history = await turns(service)
        assert history[-1].image_hashes == history[1].image_hashes  # the blue one, the latest picture
        # The picture is put next to the instruction again; earlier turns keep theirs.
        assert images_in(calls[-1]) == 3


async def test_preset_on_pictures_sent_without_text_does_not_repeat_them(service_factory, red_png: bytes) -> None:
    async with service_factory(max_new_tokens=4) as service:
        calls: list[dict[str, Any]] = []
        service.engine.generate_hook = record_hook(calls)
        assert await ask(service, "", red_png) == [Text("Got it - what would you like to know?")]
        await ask(service, "/ocr")
        assert images_in(calls[-1]) == 1
        assert (await turns(service))[-1].image_hashes == ()


async def test_find_draws_boxes_in_original_pixels_qwen25(service_factory) -> None:
    async with service_factory(max_new_tokens=256) as service:
        calls: list[dict[str, Any]] = []
        # 560x280 at the tests' 64x28x28 budget is fed to the model as 308x140 (a 22x10 grid of 14 px
        # patches); the square at (140, 70)-(280, 210) is at (77, 35)-(154, 105) there.
        answer = 'Sure.\n```json\n[\n  {"bbox_2d": [77, 35, 154, 105], "label": "dark square"}\n]\n```'
        service.engine.generate_hook = forced_answer(service, answer, calls)
        replies = await ask(service, "/find the dark square", square_picture())
        assert calls[-1]["image_grid_thw"].tolist() == [[1, 10, 22]]
        assert "Look only" not in prompt_text(service, calls[-1])
        final = next(r for r in replies if isinstance(r, Answer))
        assert final.text == (
            'Located "the dark square" (1), in pixels of the original 560x280 picture:\n'
            "1. dark square: box (140, 70) - (280, 210), 140x140 px"
        )
        [picture] = [r for r in replies if isinstance(r, Picture)]
        assert picture.filename == "find-the-dark-square.png" and picture.mime_type == "image/png"
        drawn = Image.open(io.BytesIO(picture.data)).convert("RGB")
        assert drawn.size == (560, 280)
        assert drawn.getpixel((140, 140)) == PALETTE[0] and drawn.getpixel((279, 140)) == PALETTE[0]
        assert drawn.getpixel((50, 140)) == (255, 255, 255) and drawn.getpixel((210, 140)) == (30, 30, 30)
        [turn] = await turns(service)
        assert turn.answer == answer  # the model's own words stay in the history


@pytest.mark.parametrize("directory", ["tiny-qwen3_vl", "helpdesk-model"])
async def test_find_maps_relative_coordinates_qwen3(
    service_factory, tiny_qwen3_dir: Path, tmp_path: Path, directory: str
) -> None:
    """Qwen3-VL is recognised from the checkpoint's config, whatever its folder is called."""
    model = tmp_path / directory
    shutil.copytree(tiny_qwen3_dir, model)
    async with service_factory(max_new_tokens=256, model=model) as service:
        calls: list[dict[str, Any]] = []
        service.engine.generate_hook = forced_answer(
            service, '[{"bbox_2d": [250, 250, 500, 750], "label": "square"}]', calls
        )
        replies = await ask(service, "/find square", square_picture())
        final = next(r for r in replies if isinstance(r, Answer))
        assert "1. square: box (140, 70) - (280, 210)" in final.text
        assert any(isinstance(r, Picture) for r in replies)
        # 560x280 at the tests' budget in multiples of 32: 288x128, an 8x18 grid of 16 px patches.
        assert calls[-1]["image_grid_thw"].tolist() == [[1, 8, 18]]
        assert "0 to 1000" in prompt_text(service, calls[-1])


async def test_retry_after_find_draws_again_and_export_shows_the_command(service_factory) -> None:
    async with service_factory(max_new_tokens=256) as service:
        calls: list[dict[str, Any]] = []
        service.engine.generate_hook = forced_answer(service, '[{"bbox_2d": [77, 35, 154, 105], "label": "sq"}]', calls)
        first = await ask(service, "/find the square", square_picture())
        again = await ask(service, "/retry")
        for replies in (first, again):
            assert any(isinstance(r, Picture) for r in replies)
            assert "1. sq: box (140, 70) - (280, 210)" in next(r for r in replies if isinstance(r, Answer)).text
        assert images_in(calls[-1]) == 1
        history = await turns(service)
        assert [(t.command, t.in_context, t.status) for t in history] == [
            ("/find the square", False, "done"),
            ("/find the square", True, "done"),
        ]
        assert history[0].image_hashes == history[1].image_hashes
        session = await service.store.active_session("console", "t")
        exported = json.loads(await service.conversations.export_session(session.id))
        assert exported["turns"][1]["user_input"] == "/find the square"
        assert "bbox_2d" in exported["turns"][1]["prompt"]


async def test_find_nothing_located(service_factory) -> None:
    async with service_factory(max_new_tokens=256) as service:
        service.engine.generate_hook = forced_answer(service, "Not found. The picture shows a dark square on white.")
        replies = await ask(service, "/find a cat", square_picture())
        final = next(r for r in replies if isinstance(r, Answer))
        assert final.text == (
            'Nothing was located for "a cat".\nThe model said: Not found. The picture shows a dark square on white.'
        )
        assert not any(isinstance(r, Picture) for r in replies)


async def test_find_with_two_pictures_targets_the_last_one(service_factory, red_png: bytes) -> None:
    async with service_factory(max_new_tokens=256) as service:
        calls: list[dict[str, Any]] = []
        service.engine.generate_hook = forced_answer(service, '[{"bbox_2d": [77, 35, 154, 105]}]', calls)
        replies = await ask(service, "/find the square", red_png, square_picture())
        prompt = prompt_text(service, calls[-1])
        assert "(The 2 pictures above are, in order: Picture 1, Picture 2.)" in prompt
        assert "Look only at Picture 2." in prompt
        [picture] = [r for r in replies if isinstance(r, Picture)]
        assert Image.open(io.BytesIO(picture.data)).size == (560, 280)


async def test_table_sends_csv(service_factory, red_png: bytes) -> None:
    async with service_factory(max_new_tokens=256) as service:
        table = "| Part | Qty |\n|---|---|\n| Toner, black | 2 |\n| Drum | 1 |"
        service.engine.generate_hook = forced_answer(service, table)
        replies = await ask(service, "/table", red_png)
        kinds = [type(r) for r in replies]
        assert kinds.index(Answer) < kinds.index(Document)
        assert next(r for r in replies if isinstance(r, Answer)).text == table
        [document] = [r for r in replies if isinstance(r, Document)]
        assert (document.filename, document.mime_type) == ("table.csv", "text/csv")
        rows = list(csv.reader(io.StringIO(document.data.decode("utf-8-sig"))))
        assert rows == [["Part", "Qty"], ["Toner, black", "2"], ["Drum", "1"]]
        service.engine.generate_hook = forced_answer(service, "There is no table in this picture.")
        replies = await ask(service, "/table")
        assert isinstance(replies[-1], Notice) and "no CSV" in replies[-1].text


async def test_code_sends_html(service_factory, red_png: bytes) -> None:
    async with service_factory(max_new_tokens=256) as service:
        page = "<!DOCTYPE html>\n<html><head><style>b{color:red}</style></head><body><b>Login</b></body></html>"
        answer = f"```html\n{page}\n```"
        service.engine.generate_hook = forced_answer(service, answer)
        replies = await ask(service, "/code", red_png)
        [document] = [r for r in replies if isinstance(r, Document)]
        assert (document.filename, document.mime_type) == ("page.html", "text/html")
        assert document.data.decode().startswith("<!DOCTYPE html>") and b"<b>Login</b>" in document.data


async def test_several_pictures_in_a_question_are_labelled(service_factory, red_png: bytes, blue_jpeg: bytes) -> None:
    async with service_factory(max_new_tokens=4) as service:
        calls: list[dict[str, Any]] = []
        service.engine.generate_hook = record_hook(calls)
        await ask(service, "What changed between them?", red_png, blue_jpeg)
        assert "(The 2 pictures above are, in order: Picture 1, Picture 2.)\nWhat changed between them?" in prompt_text(
            service, calls[-1]
        )
        await ask(service, "And now?", red_png)
        prompt = prompt_text(service, calls[-1])
        assert prompt.count("pictures above") == 1  # the earlier turn keeps its label; one picture needs none


async def test_console_saves_the_marked_picture(service_factory, tmp_path: Path) -> None:
    path = tmp_path / "square.png"
    path.write_bytes(square_picture())
    async with service_factory(max_new_tokens=256) as service:
        service.engine.generate_hook = forced_answer(service, '[{"bbox_2d": [77, 35, 154, 105], "label": "square"}]')
        out = io.StringIO()
        console = ConsoleAdapter(service.inbox, files_dir=tmp_path / "files", stdout=out)
        await console.process_line(f"/image {path}")
        await console.process_line("/find square")
        text = out.getvalue()
        assert '"square" marked on the picture. Saved to ' in text
        assert Image.open(tmp_path / "files" / "find-square.png").size == (560, 280)
