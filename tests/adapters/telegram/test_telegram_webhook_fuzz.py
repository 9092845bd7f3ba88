"""Fuzzing the webhook's body handling (issue 11): any bytes, any JSON, and update-shaped JSON with
hostile field values. The route answers 400 for MalformedUpdate, so anything else that escapes would
be a 500. Bounded (a few hundred examples each) so that it runs in CI in seconds.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from telegram import Bot, Update

from adapters.telegram.updates import parse_update, update_from_json
from adapters.telegram.webhook import MalformedUpdate, parse_body

BOT = Bot("123456:FUZZ-token")  # only de_json's reference; never connected
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

strings = st.text(max_size=12) | st.sampled_from(["/start", "/find the label", "@vlm_test_bot what is it?"])
lone_surrogates = st.sampled_from(["\ud800", "x\udfff"])  # JSON's \u escapes can carry them
scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | strings
json_values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(strings, inner, max_size=4), max_leaves=16
)
hostile = json_values | lone_surrogates | st.dictionaries(lone_surrogates, scalars, min_size=1, max_size=1)


def loose(plausible: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """A field's plausible value nine times in ten, a hostile one otherwise."""
    return st.integers(0, 9).flatmap(lambda n: hostile if n == 0 else plausible)


ints = st.integers(-(2**40), 2**40)
files = {"file_id": strings, "file_unique_id": strings}
users = st.fixed_dictionaries({"id": loose(ints), "is_bot": loose(st.booleans()), "first_name": loose(strings)})
chats = st.fixed_dictionaries(
    {"id": loose(ints), "type": loose(st.sampled_from(["private", "group", "supergroup", "channel"]))},
    optional={"is_forum": json_values, "title": json_values},
)
entities = st.lists(
    st.fixed_dictionaries({"type": loose(st.sampled_from(["bot_command", "mention", "text_mention", "url"])),
                           "offset": loose(st.integers(-5, 40)), "length": loose(st.integers(-5, 40))},
                          optional={"user": users}),
    max_size=3,
)
photos = st.lists(st.fixed_dictionaries(files | {"width": loose(ints), "height": loose(ints)},
                                        optional={"file_size": loose(ints)}), max_size=3)
documents = st.fixed_dictionaries(files, optional={"file_name": json_values, "mime_type": loose(
    st.sampled_from(["image/png", "image/jpeg", "application/pdf"])), "file_size": loose(ints)})
basics = {"message_id": loose(ints), "date": loose(st.integers(0, 2**31)), "chat": loose(chats)}
replied = st.fixed_dictionaries(basics, optional={"from": users, "text": strings})
messages = st.fixed_dictionaries(
    basics,
    optional={
        "from": loose(users), "text": loose(strings), "caption": loose(strings), "entities": loose(entities),
        "caption_entities": loose(entities), "photo": loose(photos), "document": loose(documents),
        "reply_to_message": loose(replied), "media_group_id": loose(strings), "message_thread_id": loose(ints),
        "is_topic_message": loose(st.booleans()), "sticker": loose(st.none()), "quote": loose(st.none()),
    },
)
updates = st.fixed_dictionaries(
    {"update_id": loose(ints)},
    optional={"message": loose(messages), "edited_message": loose(st.none()), "callback_query": loose(st.none())},
)


def handle(body: bytes) -> Update | None:
    """What the route does with a body: parse, convert (None where it answers 400)."""
    try:
        return update_from_json(parse_body(body), BOT, bot_id=9000, username="vlm_test_bot")
    except MalformedUpdate:
        return None


@FUZZ
@given(st.binary(max_size=512))
def test_any_bytes(body: bytes) -> None:
    handle(body)


@FUZZ
@given(hostile)
def test_any_json(value: Any) -> None:
    update = handle(json.dumps(value).encode())
    assert update is None or isinstance(value, dict)


@FUZZ
@given(updates)
def test_update_shaped_json(value: dict[str, Any]) -> None:
    update = handle(json.dumps(value).encode())
    event("refused with 400" if update is None else "accepted")
    if update is not None:
        assert isinstance(value["update_id"], int) and update.update_id == value["update_id"]
        parse_update(update, bot_id=9000, username="vlm_test_bot")  # what the handler does after acknowledging
