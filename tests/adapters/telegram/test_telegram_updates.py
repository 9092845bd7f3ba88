"""Platform update -> Inbound: thread keys, group addressing rules, commands, media choice."""

from __future__ import annotations

from telegram import Update

from adapters.telegram.updates import parse_update
from tests.adapters.telegram.botapi_standin import BotApiStandIn

API = BotApiStandIn()
BOT_ID, NAME = API.bot_id, API.username


def parse(**kw):
    data = {"update_id": 1, **API.message(**kw)}
    return parse_update(Update.de_json(data, None), bot_id=BOT_ID, username=NAME)


def test_thread_keys():
    assert parse(chat_id=5, user_id=5, text="hi").thread_key == "chat:5"
    assert parse(chat_id=-7, user_id=5, chat_type="group", text="/help").thread_key == "chat:-7"
    topic = parse(chat_id=-9, user_id=5, chat_type="supergroup", is_forum=True, topic_id=4, text="/help")
    assert topic.thread_key == "chat:-9/topic:4" and topic.topic_id == 4


def test_group_addressing():
    group = {"chat_id": -7, "user_id": 5, "chat_type": "supergroup"}
    assert not parse(**group, text="hello all").addressed
    mentioned = parse(**group, text=f"@{NAME} what is this?")
    assert mentioned.addressed and mentioned.text == "what is this?"
    assert parse(**group, text=f"/clear@{NAME}").text == "/clear"
    assert not parse(**group, text="/clear@other_bot").addressed
    bot_msg = {"message_id": 1, "date": 0, "chat": {"id": -7, "type": "supergroup"},
               "from": {"id": BOT_ID, "is_bot": True, "first_name": "b"}, "text": "answer"}
    assert parse(**group, text="and why?", reply_to=bot_msg).addressed


def test_topic_creation_reply_is_not_a_reply_to_the_bot():
    # Telegram marks topic messages as replies to the topic's creation message, even one the bot made.
    created = {"message_id": 4, "date": 0, "chat": {"id": -9, "type": "supergroup"},
               "from": {"id": BOT_ID, "is_bot": True, "first_name": "b"},
               "forum_topic_created": {"name": "t", "icon_color": 1}}
    inbound = parse(chat_id=-9, user_id=5, chat_type="supergroup", is_forum=True, topic_id=4, text="chat",
                    reply_to=created)
    assert not inbound.addressed


def test_largest_photo_and_image_documents():
    small, large = API.add_file(b"s"), API.add_file(b"l")
    assert [f.ref for f in parse(chat_id=5, user_id=5, photo=[small, large]).files] == [large]
    doc = API.add_file(b"png")
    [shot] = parse(chat_id=5, user_id=5, document=(doc, "shot.png", "image/png")).files
    assert shot.name == "shot.png" and shot.is_picture and shot.ref == doc
    [pdf] = parse(chat_id=5, user_id=5, document=(doc, "a.pdf", "application/pdf")).files
    assert pdf.name == "a.pdf" and not pdf.is_picture


def test_mention_in_reply_to_a_photo_asks_about_it():
    photo = API.message(chat_id=-7, user_id=6, chat_type="group", photo=[API.add_file(b"p")])["message"]
    inbound = parse(chat_id=-7, user_id=5, chat_type="group", text=f"@{NAME} what is it?", reply_to=photo)
    assert inbound.addressed and len(inbound.files) == 1 and inbound.files[0].is_picture


def test_album_items_carry_their_group():
    items = [parse(chat_id=5, user_id=5, photo=[API.add_file(b"x")], caption="Compare" if i == 1 else None,
                   media_group_id="g") for i in range(3)]
    assert {i.media_group_id for i in items} == {"g"} and [i.text for i in items] == ["", "Compare", ""]
