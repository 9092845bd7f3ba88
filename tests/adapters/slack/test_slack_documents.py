"""PDFs and long screenshots shared as Slack files: the real slack-bolt app on the tiny model against the
stand-in; assertions on what the engine's prefill received and what the thread shows."""

from __future__ import annotations

from typing import Any

from bot.wording import PDF_PASSWORD
from tests.adapters.slack.test_slack_adapter import CHANNEL, mention, thread_texts
from tests.adapters.test_console_documents import dominant_channels
from tests.engine.test_local_engine import record_hook
from tests.pdfs import coloured_pdf, encrypted_pdf, tall_screenshot


def last_prompt(service: Any, calls: list[dict[str, Any]]) -> str:
    return service.engine.loaded.processor.tokenizer.decode(calls[-1]["input_ids"][0])


async def test_a_pdf_and_a_long_screenshot_are_answered_as_pages_and_tiles(make_bot) -> None:
    calls: list[dict[str, Any]] = []
    async with make_bot(max_new_tokens=8) as bot:
        slack = bot.slack
        bot.service.engine.generate_hook = record_hook(calls)
        pdf = slack.host_file(coloured_pdf(3), "report.pdf", "application/pdf")
        shot = slack.host_file(tall_screenshot((200, 1500)), "scroll.png", "image/png")
        event = mention(slack, "Compare the report with the screenshot", files=[pdf, shot])
        await bot.deliver(event)
        await bot.settle()
        (turn,) = await bot.turns(f"{CHANNEL}/{event['ts']}")
        assert turn.status == "done" and len(turn.image_hashes) == 10
        assert [s.kind for s in turn.image_sources] == ["pdf", "tiles"]
        tiles = ", ".join(f"Picture 1, part {k}" for k in range(1, 8))
        prompt = last_prompt(bot.service, calls)
        assert f"(The 10 pictures above are, in order: Page 1, Page 2, Page 3, {tiles}.)" in prompt
        assert dominant_channels(calls[-1])[:3] == [0, 1, 2]
        assert thread_texts(slack, event["ts"])  # the answer is in the thread


async def test_an_encrypted_pdf_gets_one_line_in_the_thread(make_bot) -> None:
    async with make_bot(max_new_tokens=8) as bot:
        slack = bot.slack
        locked = slack.host_file(encrypted_pdf(), "locked.pdf", "application/pdf")
        event = mention(slack, "What is the total?", files=[locked])
        await bot.deliver(event)
        await bot.settle()
        assert thread_texts(slack, event["ts"]) == [":warning: " + PDF_PASSWORD.format(name="'locked.pdf'")]
        assert await bot.turns(f"{CHANNEL}/{event['ts']}") == []
