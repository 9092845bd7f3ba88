"""Long answers and markup that breaks HTML, end to end: the real Application, the real core on the tiny
model with its output forced through the engine's decode hook, and the Bot API stand-in's limits
(4096 characters, an HTML entity parser that rejects malformed markup)."""

from __future__ import annotations

import re
from typing import Any

import pytest
from telegram.constants import MessageLimit

from tests.adapters.telegram.botapi_standin import _ApiError
from tests.adapters.telegram.harness import ALLOWED_USER, running_adapter, settle
from tests.hooks import forced_answer

pytestmark = pytest.mark.asyncio(loop_scope="function")
CHAT = ALLOWED_USER  # a private chat's id is the user's id
LIMIT = MessageLimit.MAX_TEXT_LENGTH
SLOW_S = 300.0  # the request timeout and the wait for a long forced answer

LONG = "\n\n".join(
    f"Paragraph {i}. " + " ".join(f"w{i}x{j}" for j in range(50)) + " and a < b & c > d with **bold** and `x<y>`."
    for i in range(30)
)
CODE = "\n".join(f"if value_{i} < limit and flags & {i} > 0:  # <tag> &amp;\n    total += {i}" for i in range(120))
WITH_CODE = f"Here is the script:\n\n```python\n{CODE}\n```\n\nRun it with python."
BROKEN = "\n".join([
    "Result: <b>unclosed and <i>nested</b> tags",
    "Math: a < b & c > d, also 1 <2 and 3> 2",
    "**bold *nested** italic* and __under _mixed__ end_",
    "Inline: `code <tag>` and `a & b` then ``` stray fence marker",
    "Entities as text: &amp; &lt;b&gt; &#x41; &nosuch; &",
    "Closing tags alone: </i></b></pre> and <br> <div class=\"x\"> <a href=x>link</a>",
    "[a link](javascript:alert(1)) [ok](https://example.com/?a=1&b=<2>)",
])


def answer_messages(standin) -> list[Any]:
    return [m for m in standin.chat_messages(CHAT) if m.kind == "text"]


def squeeze(text: str) -> str:
    """Text without whitespace and Markdown markers: what must survive rendering and splitting."""
    return re.sub(r"[\s*_`]", "", text)


def writes(standin) -> list[Any]:
    return [r for r in standin.requests if r.method in ("sendMessage", "editMessageText")]


async def ask(standin, service_factory, answer: str, *, piece: int = 16, delay: float = 0.0, **adapter: Any):
    # Hundreds of forced tokens through the real decode loop: a loaded CI machine needs minutes, not 60 s.
    async with service_factory(max_new_tokens=16384, request_timeout_s=SLOW_S) as service:
        service.engine.generate_hook = forced_answer(service, answer, piece=piece, delay=delay)
        async with running_adapter(standin, service, **adapter) as (tg, rec):
            await standin.inject(standin.message(chat_id=CHAT, user_id=ALLOWED_USER, text="Tell me everything"))
            await settle(standin, tg, timeout=SLOW_S)
        [session] = await service.store.list_sessions(platform="telegram", thread_key=f"chat:{CHAT}")
        [turn] = await service.store.turns(session.id)
    return rec, turn


async def test_an_answer_over_4096_characters_arrives_in_several_messages(standin, service_factory):
    rec, turn = await ask(standin, service_factory, LONG, piece=64, delay=0.01)
    assert len(LONG) > 2 * LIMIT
    assert turn.answer == LONG and [a.text for a in rec.answers()] == [LONG]
    messages = answer_messages(standin)
    assert len(messages) >= 3 and len([r for r in standin.calls("sendMessage") if r.status == 200]) >= 3
    texts = [m.text or "" for m in messages]
    assert all(len(t.encode("utf-16-le")) // 2 <= LIMIT for t in texts)
    assert all(t.startswith("Paragraph ") for t in texts)  # cut at paragraph boundaries
    assert squeeze("".join(texts)) == squeeze(LONG)  # nothing lost, nothing repeated
    assert all(r.status == 200 for r in writes(standin))  # no "message is too long", no parse error
    # Streamed in a private chat: the parts grew as drafts, each message was sent once and never edited.
    drafts = standin.draft_texts(CHAT)
    assert len(drafts) >= 3 and all(len(d.encode("utf-16-le")) // 2 <= LIMIT for d in drafts)
    assert standin.calls("editMessageText") == [] and not any(m.history for m in messages)


async def test_a_long_code_block_is_split_into_code_messages_and_sent_as_a_file(standin, service_factory):
    rec, turn = await ask(standin, service_factory, WITH_CODE, piece=64)
    assert len(CODE) > LIMIT and turn.answer == WITH_CODE
    messages = answer_messages(standin)
    assert len(messages) >= 2 and all(r.status == 200 for r in writes(standin))
    code_parts = []
    for message in messages:
        assert len((message.text or "").encode("utf-16-le")) // 2 <= LIMIT
        for entity in message.entities:
            if entity["type"] == "pre":
                assert entity.get("language") == "python"
                code_parts.append((message.text or "")[entity["offset"] : entity["offset"] + entity["length"]])
    assert len(code_parts) >= 2  # each piece of the block is a code block of its own
    assert "\n".join(part.strip("\n") for part in code_parts) == CODE
    assert squeeze("".join(m.text or "" for m in messages)) == squeeze(WITH_CODE.replace("```python", ""))
    [document] = standin.calls("sendDocument")
    assert document.files["document"] == (f"answer-{turn.id}.py", CODE.encode())


async def test_markup_that_breaks_html_is_escaped_and_nothing_is_lost(standin, service_factory):
    rec, turn = await ask(standin, service_factory, BROKEN, piece=4)
    assert turn.answer == BROKEN
    assert writes(standin) and all(r.status == 200 for r in writes(standin))  # every HTML version parsed
    assert all(r.params.get("parse_mode") == "HTML" for r in writes(standin))
    [message] = answer_messages(standin)
    text = message.text or ""
    for literal in ("<b>unclosed and <i>nested</b> tags", "a < b & c > d, also 1 <2 and 3> 2", "code <tag>",
                    "a & b", "&amp; &lt;b&gt; &#x41; &nosuch; &", "</i></b></pre> and <br> <div class=\"x\">",
                    "javascript:alert(1)"):
        assert literal in text, literal
    assert squeeze(text) == squeeze(BROKEN.replace("[ok](https://example.com/?a=1&b=<2>)", "ok"))
    assert {"type": "text_link", "url": "https://example.com/?a=1&b=<2>"}.items() <= next(
        e for e in message.entities if e["type"] == "text_link").items()


async def test_html_telegram_still_rejects_is_resent_as_plain_text(standin, service_factory):
    """A Bot API parser stricter than ours: every HTML message mentioning "unclosed" is refused, so the
    reply falls back to the plain Markdown and the whole answer is still shown."""
    refused: list[str] = []

    def stricter(method):
        async def handler(params, files):
            if (params.get("parse_mode") or "").lower() == "html" and "unclosed" in (params.get("text") or ""):
                refused.append(params["text"])
                raise _ApiError(400, "Bad Request: can't parse entities: Unsupported start tag \"b\" at byte offset 8")
            return await method(params, files)
        return handler

    standin._api_sendMessage = stricter(standin._api_sendMessage)
    standin._api_editMessageText = stricter(standin._api_editMessageText)
    rec, turn = await ask(standin, service_factory, BROKEN, piece=4)
    assert refused  # the HTML was refused ...
    [message] = answer_messages(standin)
    assert message.text == BROKEN and message.entities == []  # ... and the plain text shown instead, complete
    last = [r for r in writes(standin) if r.status == 200][-1]
    assert "parse_mode" not in last.params and last.params["text"] == BROKEN
    assert "Something went wrong" not in " ".join(m.text or "" for m in standin.chat_messages(CHAT))
