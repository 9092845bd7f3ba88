"""End to end: the real python-telegram-bot Application, the real core on the tiny model, the stand-in API."""

from __future__ import annotations

import pytest

from adapters.telegram.render import render
from bot.commands import COMMANDS
from bot.messages import Answer, Text
from bot.wording import not_pictures
from tests.adapters.telegram.botapi_standin import parse_html
from tests.adapters.telegram.harness import (
    ALLOWED_USER,
    FORUM,
    GROUP,
    OTHER_USER,
    STRANGER,
    exported,
    photo_sizes,
    png,
    running_adapter,
    settle,
    shown_text,
)

pytestmark = pytest.mark.asyncio(loop_scope="function")
CHAT = ALLOWED_USER  # a private chat's id is the user's id


@pytest.fixture(params=["polling", "webhook"])
def mode(request: pytest.FixtureRequest) -> str:
    return request.param


def final_text(answer: Answer) -> str:
    return parse_html(render(answer.text))[0]


async def test_photo_with_caption_is_answered(standin, service_factory, mode):
    async with service_factory(max_new_tokens=16) as service:
        async with running_adapter(standin, service, mode=mode) as (adapter, rec):
            sizes = photo_sizes(standin, png())
            await standin.inject(standin.message(chat_id=CHAT, user_id=ALLOWED_USER, photo=sizes, caption="What is this?"))
            await settle(standin, adapter)
    assert [c.params["file_id"] for c in standin.calls("getFile")] == [sizes[1]]  # the largest size only
    [message] = rec.handled
    assert message.thread_key == f"chat:{CHAT}" and message.text == "What is this?"
    assert message.user_id == str(ALLOWED_USER) and len(message.attachments) == 1
    [answer] = rec.answers()
    assert shown_text(standin, CHAT) == [final_text(answer)]
    assert standin.calls("sendChatAction")[0].params["action"] == "typing"
    assert [c["command"] for c in standin.commands] == [c.name for c in COMMANDS]
    if mode == "webhook":
        assert standin.webhook and standin.webhook["secret_token"] == "hook-secret_1"
        assert standin.calls("getUpdates") == [] and standin.webhook_deliveries[0][1] == 200
    else:
        assert standin.calls("getUpdates") and standin.calls("deleteWebhook")


async def test_photo_then_question_uses_the_photo(standin, service_factory):
    async with service_factory(max_new_tokens=8) as service:
        async with running_adapter(standin, service) as (adapter, rec):
            await standin.inject(standin.message(chat_id=CHAT, user_id=ALLOWED_USER, photo=photo_sizes(standin, png())))
            await standin.inject(standin.message(chat_id=CHAT, user_id=ALLOWED_USER, text="What colour is it?"))
            await settle(standin, adapter)
            await standin.inject(standin.message(chat_id=CHAT, user_id=ALLOWED_USER, text="/export"))
            await settle(standin, adapter)
    texts = shown_text(standin, CHAT)
    assert texts[0].startswith("Got it")
    [answer] = rec.answers()
    assert texts[1] == final_text(answer)
    turns = exported(standin, CHAT)["turns"]
    assert len(turns[0]["image_hashes"]) == 1 and turns[-1]["user_input"] == "What colour is it?"


async def test_album_is_one_turn(standin, service_factory, mode):
    async with service_factory(max_new_tokens=8) as service:
        async with running_adapter(standin, service, mode=mode) as (adapter, rec):
            colours = [(250, 0, 0), (0, 250, 0), (0, 0, 250)]
            for i, colour in enumerate(colours):
                await standin.inject(standin.message(
                    chat_id=CHAT, user_id=ALLOWED_USER, photo=photo_sizes(standin, png(colour)),
                    caption="Compare these" if i == 0 else None, media_group_id="album-1",
                ))
            await settle(standin, adapter)
    [message] = rec.handled
    assert message.text == "Compare these" and len(message.attachments) == 3
    assert len(rec.answers()) == 1 and len(shown_text(standin, CHAT)) == 1


async def test_follow_up_without_a_picture(standin, service_factory):
    async with service_factory(max_new_tokens=8) as service:
        async with running_adapter(standin, service) as (adapter, rec):
            await standin.inject(standin.message(
                chat_id=CHAT, user_id=ALLOWED_USER, photo=photo_sizes(standin, png()), caption="Describe it"))
            await settle(standin, adapter)
            await standin.inject(standin.message(chat_id=CHAT, user_id=ALLOWED_USER, text="And the second row?"))
            await settle(standin, adapter)
            await standin.inject(standin.message(chat_id=CHAT, user_id=ALLOWED_USER, text="/export"))
            await settle(standin, adapter)
    assert len(rec.answers()) == 2 and rec.handled[1].attachments == ()
    turns = exported(standin, CHAT)["turns"]
    assert [t["user_input"] for t in turns] == ["Describe it", "And the second row?"]
    assert all(t["status"] == "done" or t["model_output"] for t in turns)


async def test_group_answers_only_when_addressed(standin, service_factory):
    async with service_factory(max_new_tokens=6) as service:
        async with running_adapter(standin, service) as (adapter, rec):
            say = lambda text, **kw: standin.message(chat_id=GROUP, user_id=OTHER_USER, chat_type="supergroup", text=text, **kw)  # noqa: E731
            await standin.inject(say("just chatting among colleagues"))
            await standin.inject(say("/status@some_other_bot"))
            await standin.inject(standin.message(  # a photo nobody asked the bot about
                chat_id=GROUP, user_id=OTHER_USER, chat_type="supergroup", photo=photo_sizes(standin, png())))
            await settle(standin, adapter)
            assert rec.handled == [] and standin.calls("sendMessage") == [] and standin.calls("getFile") == []

            await standin.inject(say("@vlm_test_bot what is a VLM?"))
            await settle(standin, adapter)
            bot_reply = standin.chat_messages(GROUP)[-1].message_id
            await standin.inject(say("and why?", reply_to=standin.bot_message(GROUP, bot_reply)))
            await standin.inject(say("/status@vlm_test_bot"))
            await settle(standin, adapter)
    # /status is answered at once, beside the thread's lane, so it may overtake "and why?".
    assert sorted(m.text for m in rec.handled) == sorted(["what is a VLM?", "and why?", "/status"])
    assert {m.thread_key for m in rec.handled} == {f"chat:{GROUP}"}
    # In groups the answer quotes the question it answers.
    first = standin.calls("sendMessage")[0]
    assert first.params["reply_parameters"]["message_id"] > 0


async def test_forum_topics_are_separate_sessions(standin, service_factory):
    async with service_factory(max_new_tokens=6) as service:
        async with running_adapter(standin, service) as (adapter, rec):
            def say(topic: int, **kw):
                return standin.message(chat_id=FORUM, user_id=OTHER_USER, chat_type="supergroup", is_forum=True,
                                       topic_id=topic, **kw)

            await standin.inject(say(10, photo=photo_sizes(standin, png()), caption="@vlm_test_bot what is in it?"))
            await standin.inject(say(20, text="@vlm_test_bot and here?"))
            await settle(standin, adapter)
            await standin.inject(say(20, text="/clear"))
            await standin.inject(say(10, text="/export"))
            await settle(standin, adapter)
    keys = [m.thread_key for m in rec.handled]
    assert sorted(keys[:2]) == [f"chat:{FORUM}/topic:10", f"chat:{FORUM}/topic:20"]  # topics run side by side
    assert len(rec.answers()) == 2
    # Replies land in the topic they answer.
    assert {m.thread_id for m in standin.chat_messages(FORUM)} == {10, 20}
    assert len(standin.chat_messages(FORUM, 20)) == 2  # the answer and the /clear confirmation
    turns = exported(standin, FORUM)["turns"]  # topic 10 is untouched by /clear in topic 20
    assert [t["user_input"] for t in turns] == ["what is in it?"] and len(turns[0]["image_hashes"]) == 1


async def test_clear_starts_afresh(standin, service_factory):
    async with service_factory(max_new_tokens=6) as service:
        async with running_adapter(standin, service) as (adapter, rec):
            await standin.inject(standin.message(
                chat_id=CHAT, user_id=ALLOWED_USER, photo=photo_sizes(standin, png()), caption="What is it?"))
            await settle(standin, adapter)
            await standin.inject(standin.message(chat_id=CHAT, user_id=ALLOWED_USER, text="/clear@vlm_test_bot"))
            await standin.inject(standin.message(chat_id=CHAT, user_id=ALLOWED_USER, text="/export"))
            await settle(standin, adapter)
    assert [m.text for m in rec.handled] == ["What is it?", "/clear", "/export"]
    assert any(t.startswith("Cleared") for t in shown_text(standin, CHAT))
    assert exported(standin, CHAT)["turns"] == []


async def test_clear_during_an_answer_stops_it_as_cancelled(standin, service_factory):
    import threading

    from tests.engine.test_local_engine import slow_hook

    async with service_factory(max_new_tokens=400) as service:
        started = threading.Event()
        service.engine.generate_hook = slow_hook(service.engine, delay=0.05, started=started)
        async with running_adapter(standin, service) as (adapter, rec):
            await standin.inject(standin.message(chat_id=CHAT, user_id=ALLOWED_USER, text="A long answer please"))
            await standin.wait_for(started.is_set, timeout=20)
            old = await service.store.active_session("telegram", f"chat:{CHAT}")
            await standin.inject(standin.message(chat_id=CHAT, user_id=ALLOWED_USER, text="/clear"))
            await settle(standin, adapter)
        assert [t.status for t in await service.store.turns(old.id)] == ["cancelled"]
        assert (await service.store.get_session(old.id)).status == "archived"
    assert any(t.startswith("Cleared") for t in shown_text(standin, CHAT))


async def test_a_user_who_blocked_the_bot_costs_nothing_but_that_answer(standin, service_factory):
    blocked = "Forbidden: bot was blocked by the user"
    async with service_factory(max_new_tokens=30) as service:
        async with running_adapter(standin, service, private_edit_interval=0.0) as (adapter, rec):
            standin.reject_next("sendChatAction", blocked, 5, code=403)
            standin.reject_next("sendMessage", blocked, 20, code=403)
            standin.reject_next("editMessageText", blocked, 20, code=403)
            await standin.inject(standin.message(chat_id=CHAT, user_id=ALLOWED_USER, text="Are you there?"))
            await settle(standin, adapter)
            session = await service.store.active_session("telegram", f"chat:{CHAT}")
            assert [t.status for t in await service.store.turns(session.id)] == ["done"]
            assert standin.chat_messages(CHAT) == []
            # Unblocked again: the next message is answered as usual.
            standin.clear_failures()
            await standin.inject(standin.message(chat_id=CHAT, user_id=ALLOWED_USER, text="And now?"))
            await settle(standin, adapter)
    assert len(rec.answers()) == 2 and len(shown_text(standin, CHAT)) == 1


async def test_flood_control_during_streaming_loses_no_text(standin, service_factory):
    async with service_factory(max_new_tokens=30) as service:
        async with running_adapter(standin, service, private_edit_interval=0.0) as (adapter, rec):
            # The first write happens at the first streamed piece, so the 429 lands mid-stream.
            standin.fail_next("sendMessage", 1, retry_after=1)
            standin.fail_next("editMessageText", 1, retry_after=1)
            await standin.inject(standin.message(chat_id=CHAT, user_id=ALLOWED_USER, text="Tell me a story"))
            await settle(standin, adapter)
    assert [r.status for r in standin.calls("sendMessage")][0] == 429
    writes = [r for r in standin.requests if r.method in ("editMessageText", "sendMessage")]
    for before, after in zip(writes, writes[1:]):
        if before.status == 429:
            assert after.at - before.at >= 0.9  # waited as told before writing again
    [answer] = rec.answers()
    assert shown_text(standin, CHAT) == [final_text(answer)]


async def test_corrupt_photo_gets_a_clear_reply(standin, service_factory):
    async with service_factory() as service:
        async with running_adapter(standin, service) as (adapter, rec):
            bad = [standin.add_file(b"\xff\xd8 this is not a jpeg at all")]
            await standin.inject(standin.message(chat_id=CHAT, user_id=ALLOWED_USER, photo=bad, caption="Read this"))
            await settle(standin, adapter)
    assert rec.answers() == []
    errors = [r for _, r in rec.replies if isinstance(r, Text)]
    assert errors and shown_text(standin, CHAT) == [errors[0].text]


async def test_too_big_files_are_refused_before_download(standin, service_factory):
    async with service_factory(max_image_bytes=1024 * 1024) as service:
        async with running_adapter(standin, service) as (adapter, rec):
            huge = standin.add_file(b"x", file_size=25 * 1024 * 1024)
            big = standin.add_file(b"x", file_size=3 * 1024 * 1024)
            await standin.inject(standin.message(chat_id=CHAT, user_id=ALLOWED_USER, document=(huge, "s.png", "image/png")))
            await standin.inject(standin.message(chat_id=CHAT, user_id=ALLOWED_USER, document=(big, "s.png", "image/png")))
            await settle(standin, adapter)
    assert standin.calls("getFile") == [] and rec.handled == []
    first, second = shown_text(standin, CHAT)
    assert "20 MB" in first and "25.0 MB" in first
    assert "3.0 MB" in second and "1 MB limit" in second


async def test_unsupported_content_gets_a_hint(standin, service_factory):
    async with service_factory() as service:
        async with running_adapter(standin, service) as (adapter, rec):
            archive = standin.add_file(b"PK\x03\x04")
            await standin.inject(standin.message(
                chat_id=CHAT, user_id=ALLOWED_USER, document=(archive, "a.zip", "application/zip")))
            await standin.inject(standin.message(chat_id=CHAT, user_id=ALLOWED_USER, extra={"sticker": {
                "file_id": "st", "file_unique_id": "st", "width": 1, "height": 1, "is_animated": False,
                "is_video": False, "type": "regular"}}))
            await settle(standin, adapter)
    assert rec.handled == [] and standin.calls("getFile") == []
    assert shown_text(standin, CHAT) == [not_pictures(["a.zip"]), not_pictures(["the sticker"])]


async def test_disallowed_user_gets_one_line_and_nothing_is_kept(standin, service_factory):
    async with service_factory() as service:
        async with running_adapter(standin, service) as (adapter, rec):
            await standin.inject(standin.message(
                chat_id=STRANGER, user_id=STRANGER, photo=photo_sizes(standin, png()), caption="hi"))
            await settle(standin, adapter)
            sessions = await service.store.list_sessions(platform="telegram", thread_key=f"chat:{STRANGER}")
    assert rec.handled == [] and standin.calls("getFile") == [] and sessions == []
    [refusal] = shown_text(standin, STRANGER)
    assert "\n" not in refusal and str(STRANGER) in refusal


async def test_duplicated_update_is_answered_once(standin, service_factory, mode):
    async with service_factory(max_new_tokens=6) as service:
        update = standin.message(chat_id=CHAT, user_id=ALLOWED_USER, text="Hello")
        async with running_adapter(standin, service, mode=mode) as (adapter, rec):
            uid = await standin.inject(update)
            await settle(standin, adapter)
            if mode == "webhook":  # Telegram retries a webhook delivery it thinks failed
                await standin.inject({**update, "update_id": uid})
                await settle(standin, adapter)
        if mode == "polling":  # a restart after a crash: the update is fetched again
            await standin.inject({**update, "update_id": uid})
            async with running_adapter(standin, service, conversations=rec) as (adapter2, _):
                await settle(standin, adapter2)
    assert len(rec.handled) == 1 and len(shown_text(standin, CHAT)) == 1
