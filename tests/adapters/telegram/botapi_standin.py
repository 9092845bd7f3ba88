"""A Telegram Bot API stand-in: a real aiohttp server on 127.0.0.1 speaking the Bot API wire protocol.

It understands form, multipart and JSON bodies, answers with the `ok`/`result` envelope, returns
non-2xx errors with `parameters.retry_after`, long-polls `getUpdates` (offset/timeout), pushes
updates to a webhook with the secret-token header once `setWebhook` is called, serves files at
`/file/bot<token>/<path>`, enforces the 4096-character limit and parses HTML entities the way the
Bot API does (unsupported or malformed tags -> "Bad Request: can't parse entities: ...").

Tests inject updates (`inject`), make the next N calls of a method fail with 429 (`fail_next`) and
assert on `requests`, the record of every call received.

Answer streaming and feedback (Bot API 10.0, python-telegram-bot 22.8):
- `sendMessageDraft` only in private chats; every draft is kept in `drafts` (`draft_texts` gives the
  growing sequence); a `sendMessage` to the chat ends the visible draft (`visible_draft`).
- `reply_markup` inline keyboards are checked (botapi_markup.py) and kept on the message;
  `editMessageText` without one removes the keyboard, `editMessageReplyMarkup` replaces it.
- `callback_query(...)` builds the update of a user pressing a callback button of a bot message
  (inject it like any update: getUpdates or webhook); `answerCallbackQuery` answers it once, recorded
  in `callback_queries`.
- `allowed_updates` (getUpdates / setWebhook) is honoured: an update of another type is not delivered
  but kept in `undelivered`, so a bot that asks only for "message" never sees a button press.
"""

from __future__ import annotations

import asyncio
import html
import io
import itertools
import json
import re
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import ClientSession, ClientTimeout, web
from PIL import Image
from telegram.constants import CallbackQueryLimit

from tests.adapters.telegram.botapi_markup import (
    MarkupError,
    callback_buttons,
    check_inline_keyboard,
    check_reply_markup,
)

__all__ = ["BotApiStandIn", "CallbackQuery", "Draft", "HtmlParseError", "RecordedRequest", "parse_html"]

TEXT_LIMIT = 4096
# allowed_updates: "Specify an empty list to receive all update types except chat_member, message_reaction,
# and message_reaction_count (default). If not specified, the previous setting will be used."
# (https://core.telegram.org/bots/api#getupdates)
_DEFAULT_UPDATES = frozenset({
    "message", "edited_message", "channel_post", "edited_channel_post", "business_connection",
    "business_message", "edited_business_message", "deleted_business_messages", "inline_query",
    "chosen_inline_result", "callback_query", "shipping_query", "pre_checkout_query", "purchased_paid_media",
    "poll", "poll_answer", "my_chat_member", "chat_join_request", "chat_boost", "removed_chat_boost",
})
CAPTION_LIMIT = 1024
DOWNLOAD_LIMIT = 20 * 1024 * 1024
_SUPPORTED_TAGS = {
    "b", "strong", "i", "em", "u", "ins", "s", "strike", "del", "a", "code", "pre",
    "tg-spoiler", "span", "blockquote", "tg-emoji",
}
_ENTITY_TYPES = {
    "b": "bold", "strong": "bold", "i": "italic", "em": "italic", "u": "underline", "ins": "underline",
    "s": "strikethrough", "strike": "strikethrough", "del": "strikethrough", "a": "text_link",
    "code": "code", "pre": "pre", "tg-spoiler": "spoiler", "span": "spoiler", "blockquote": "blockquote",
    "tg-emoji": "custom_emoji",
}
_NAMED_ENTITIES = {"lt": "<", "gt": ">", "amp": "&", "quot": '"'}


class HtmlParseError(ValueError):
    pass


def _utf16(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def parse_html(source: str) -> tuple[str, list[dict[str, Any]]]:
    """Return (plain text, entities) or raise HtmlParseError with the Bot API's wording."""
    out: list[str] = []
    entities: list[dict[str, Any]] = []
    stack: list[tuple[str, int, dict[str, str]]] = []  # (tag, utf16 offset, attributes)
    pos = 0

    def byte_offset(i: int) -> int:
        return len(source[:i].encode("utf-8"))

    def text_len() -> int:
        return _utf16("".join(out))

    while pos < len(source):
        ch = source[pos]
        if ch == "&":
            m = re.match(r"&(#x[0-9a-fA-F]+|#[0-9]+|[a-zA-Z]+);", source[pos:])
            if m:
                name = m.group(1)
                if name.startswith("#x"):
                    out.append(chr(int(name[2:], 16)))
                elif name.startswith("#"):
                    out.append(chr(int(name[1:])))
                elif name in _NAMED_ENTITIES:
                    out.append(_NAMED_ENTITIES[name])
                else:
                    out.append(m.group(0))  # unknown named entities stay as text
                pos += len(m.group(0))
            else:
                out.append("&")
                pos += 1
            continue
        if ch != "<":
            out.append(ch)
            pos += 1
            continue
        end = source.find(">", pos)
        if end == -1:
            raise HtmlParseError(f"Can't find end of the tag starting at byte offset {byte_offset(pos)}")
        body = source[pos + 1 : end]
        if body.startswith("/"):
            name = body[1:].strip().lower()
            if not stack:
                raise HtmlParseError(f'Unexpected end tag at byte offset {byte_offset(pos)}')
            tag, start, attrs = stack.pop()
            if name != tag:
                raise HtmlParseError(
                    f'Unmatched end tag at byte offset {byte_offset(pos)}, expected "</{tag}>", found "</{name}>"'
                )
            length = text_len() - start
            if length > 0:
                entity: dict[str, Any] = {"type": _ENTITY_TYPES[tag], "offset": start, "length": length}
                if tag == "a":
                    entity["url"] = attrs.get("href", "")
                if tag == "pre" and entities and entities[-1]["type"] == "code" and entities[-1]["offset"] == start:
                    language = entities.pop().get("language")
                    if language:
                        entity["language"] = language
                if tag == "code" and attrs.get("class", "").startswith("language-"):
                    entity["language"] = attrs["class"][len("language-") :]
                entities.append(entity)
            pos = end + 1
            continue
        m = re.match(r"([a-zA-Z][a-zA-Z0-9-]*)", body)
        if not m:
            raise HtmlParseError(f'Unsupported start tag "{body[:20]}" at byte offset {byte_offset(pos)}')
        name = m.group(1).lower()
        if name not in _SUPPORTED_TAGS:
            raise HtmlParseError(f'Unsupported start tag "{name}" at byte offset {byte_offset(pos)}')
        attrs = {
            a.lower(): html.unescape(v1 or v2 or v3)
            for a, v1, v2, v3 in re.findall(r"""([a-zA-Z-]+)\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'>]+))""", body[m.end() :])
        }
        if name == "span" and attrs.get("class") != "tg-spoiler":
            raise HtmlParseError(f'Unsupported start tag "span" at byte offset {byte_offset(pos)}')
        if name == "a" and "href" not in attrs:
            raise HtmlParseError(f"Can't find href attribute of the tag at byte offset {byte_offset(pos)}")
        stack.append((name, text_len(), attrs))
        pos = end + 1
    if stack:
        raise HtmlParseError(f'Can\'t find end tag corresponding to start tag "{stack[-1][0]}"')
    return "".join(out), sorted(entities, key=lambda e: (e["offset"], -e["length"]))


@dataclass(frozen=True)
class RecordedRequest:
    """One call the stand-in received: method name, decoded parameters and uploaded files."""

    method: str
    params: dict[str, Any]
    files: dict[str, tuple[str, bytes]]
    content_type: str
    status: int
    at: float


@dataclass
class _StoredFile:
    file_id: str
    file_unique_id: str
    data: bytes
    file_size: int
    file_path: str


@dataclass
class _Message:
    chat_id: int
    message_id: int
    text: str | None
    entities: list[dict[str, Any]]
    kind: str = "text"
    caption: str | None = None
    data: bytes | None = None
    filename: str | None = None
    thread_id: int | None = None
    reply_to: int | None = None
    deleted: bool = False
    history: list[str] = field(default_factory=list)
    reply_markup: dict[str, Any] | None = None
    markup_history: list[dict[str, Any] | None] = field(default_factory=list)


@dataclass(frozen=True)
class Draft:
    """One accepted sendMessageDraft call: the text after entity parsing, as the user would see it."""

    chat_id: int
    draft_id: int
    text: str
    entities: list[dict[str, Any]]
    thread_id: int | None
    at: float


@dataclass
class CallbackQuery:
    """A press of a callback button that the stand-in delivered, and the bot's answer to it."""

    id: str
    chat_id: int
    message_id: int
    user_id: int
    data: str
    answered: bool = False
    expired: bool = False
    answer: dict[str, Any] | None = None  # text / show_alert / url / cache_time as received


class _ApiError(Exception):
    def __init__(self, code: int, description: str, parameters: dict[str, Any] | None = None) -> None:
        super().__init__(description)
        self.code = code
        self.description = description
        self.parameters = parameters


class BotApiStandIn:
    """`async with BotApiStandIn(token) as api:` serves on 127.0.0.1:<ephemeral>; `api.url` is the base URL."""

    def __init__(self, token: str = "123456:TEST-token", *, bot_id: int = 9000, username: str = "vlm_test_bot") -> None:
        self.token = token
        self.bot_id = bot_id
        self.username = username
        self.requests: list[RecordedRequest] = []
        self.commands: list[dict[str, Any]] = []  # the default list (no language_code)
        self.commands_by_language: dict[str, list[dict[str, Any]]] = {}  # setMyCommands with a language_code
        self.language_codes: dict[int, str] = {}  # user id -> the `language_code` their updates carry
        self.webhook: dict[str, Any] | None = None
        self.webhook_deliveries: list[tuple[int, int]] = []  # (update_id, HTTP status)
        self.messages: dict[tuple[int, int], _Message] = {}
        self.drafts: list[Draft] = []
        self.callback_queries: dict[str, CallbackQuery] = {}
        self._visible_drafts: dict[tuple[int, int | None], Draft] = {}
        self._query_ids = itertools.count(7_000_000_001)
        self.allowed_updates: list[str] | None = None  # None or []: Telegram's default set
        self.undelivered: list[dict[str, Any]] = []
        self._files: dict[str, _StoredFile] = {}
        self._pending: list[dict[str, Any]] = []
        self._update_ids = itertools.count(1000)
        self._message_ids = itertools.count(1)
        self._file_ids = itertools.count(1)
        self._new_update = asyncio.Condition()
        self._failures: dict[str, list[tuple[int, str, dict[str, Any] | None]]] = {}
        self._runner: web.AppRunner | None = None
        self._pusher: asyncio.Task[None] | None = None
        self._session: ClientSession | None = None
        self.url = ""

    # --- lifecycle ---------------------------------------------------------------------------
    async def __aenter__(self) -> BotApiStandIn:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/bot{token}/{method}", self._on_api)
        app.router.add_get("/file/bot{token}/{path:.+}", self._on_file)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"
        self._session = ClientSession(timeout=ClientTimeout(total=10))
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._pusher:
            self._pusher.cancel()
            await asyncio.gather(self._pusher, return_exceptions=True)
        if self._session:
            await self._session.close()
        if self._runner:
            await self._runner.cleanup()

    # --- test controls -----------------------------------------------------------------------
    def add_file(self, data: bytes, *, file_size: int | None = None, ext: str = "jpg") -> str:
        """Store a file users can send; `file_size` may claim a size other than len(data)."""
        n = next(self._file_ids)
        file_id = f"FILE{n}-{'x' * 10}"
        self._files[file_id] = _StoredFile(
            file_id, f"U{n}", data, len(data) if file_size is None else file_size, f"photos/file_{n}.{ext}"
        )
        return file_id

    def file_meta(self, file_id: str) -> dict[str, Any]:
        f = self._files[file_id]
        return {"file_id": f.file_id, "file_unique_id": f.file_unique_id, "file_size": f.file_size}

    async def inject(self, update: dict[str, Any]) -> int:
        """Queue an update (an `update_id` is assigned unless present) for getUpdates or the webhook.

        An update of a type the bot did not ask for (`allowed_updates` of its last getUpdates or
        setWebhook) is not delivered, as on Telegram; it is kept in `undelivered`."""
        update = dict(update)
        update.setdefault("update_id", next(self._update_ids))
        kind = next(k for k in update if k != "update_id")
        if kind not in (self.allowed_updates or _DEFAULT_UPDATES):
            self.undelivered.append(update)
            return update["update_id"]
        async with self._new_update:
            self._pending.append(update)
            self._new_update.notify_all()
        return update["update_id"]

    def fail_next(self, method: str, count: int = 1, *, retry_after: int = 1) -> None:
        """Answer the next `count` calls of `method` with 429 Too Many Requests."""
        self._failures.setdefault(method, []).extend(
            [(429, f"Too Many Requests: retry after {retry_after}", {"retry_after": retry_after})] * count
        )

    def reject_next(self, method: str, description: str, count: int = 1, *, code: int = 400) -> None:
        """Answer the next `count` calls of `method` with an error, e.g. "Bad Request: can't parse entities"."""
        self._failures.setdefault(method, []).extend([(code, description, None)] * count)

    def clear_failures(self) -> None:
        """Forget the errors still planned by `fail_next` / `reject_next`."""
        self._failures.clear()

    def calls(self, method: str) -> list[RecordedRequest]:
        return [r for r in self.requests if r.method == method]

    def chat_messages(self, chat_id: int, thread_id: int | None = None) -> list[_Message]:
        """Messages the bot sent to a chat (or a forum topic of it) that are still there, oldest first."""
        return [
            m
            for (c, _), m in sorted(self.messages.items())
            if c == chat_id and not m.deleted and (thread_id is None or m.thread_id == thread_id)
        ]

    def texts(self, chat_id: int, thread_id: int | None = None) -> list[str]:
        return [m.text or m.caption or "" for m in self.chat_messages(chat_id, thread_id)]

    async def wait_for(self, predicate, timeout: float = 10.0) -> None:
        """Poll until `predicate()` is true; fail the test with a clear message otherwise."""
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(f"stand-in: condition not met within {timeout}s; calls: {self.summary()}")
            await asyncio.sleep(0.02)

    def summary(self) -> list[str]:
        return [f"{r.method}:{r.status}" for r in self.requests if r.method != "getUpdates"]

    def draft_texts(self, chat_id: int, draft_id: int | None = None, thread_id: int | None = None) -> list[str]:
        """The texts of the accepted drafts in a chat (optionally of one draft id / topic), oldest first."""
        return [
            d.text for d in self.drafts
            if d.chat_id == chat_id
            and (draft_id is None or d.draft_id == draft_id)
            and (thread_id is None or d.thread_id == thread_id)
        ]

    def visible_draft(self, chat_id: int, thread_id: int | None = None) -> Draft | None:
        """The draft the user sees now; sending the final message (sendMessage) to the chat ends it."""
        return self._visible_drafts.get((chat_id, thread_id))

    def expire_callback(self, query_id: str) -> None:
        """Let a callback query time out: answering it now fails as it does on Telegram."""
        self.callback_queries[query_id].expired = True

    # --- updates ------------------------------------------------------------------------------
    def _user(self, user_id: int, name: str = "Ann") -> dict[str, Any]:
        user: dict[str, Any] = {"id": user_id, "is_bot": False, "first_name": name, "username": f"{name.lower()}{user_id}"}
        if user_id in self.language_codes:  # an IETF tag the user's app is set to, e.g. "zh-hans"; optional
            user["language_code"] = self.language_codes[user_id]
        return user

    def message(
        self,
        *,
        chat_id: int,
        user_id: int,
        text: str | None = None,
        chat_type: str = "private",
        is_forum: bool = False,
        topic_id: int | None = None,
        photo: list[str] | None = None,
        document: tuple[str, str, str] | None = None,  # (file_id, file name, mime type)
        caption: str | None = None,
        media_group_id: str | None = None,
        reply_to: dict[str, Any] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Build an update carrying a user message; entities for /commands and @mentions are added."""
        chat: dict[str, Any] = {"id": chat_id, "type": chat_type}
        if chat_type == "private":
            chat["first_name"] = "Ann"
        else:
            chat["title"] = f"Group {chat_id}"
            if is_forum:
                chat["is_forum"] = True
        msg: dict[str, Any] = {
            "message_id": next(self._message_ids),
            "date": int(time.time()),
            "chat": chat,
            "from": self._user(user_id),
        }
        if topic_id is not None:
            msg["message_thread_id"] = topic_id
            msg["is_topic_message"] = True
            # Telegram marks every topic message as a reply to the topic's creation message.
            msg.setdefault(
                "reply_to_message",
                {
                    "message_id": topic_id,
                    "date": int(time.time()),
                    "chat": chat,
                    "from": self._user(user_id),
                    "message_thread_id": topic_id,
                    "forum_topic_created": {"name": f"Topic {topic_id}", "icon_color": 7322096},
                },
            )
        if text is not None:
            msg["text"] = text
            if ents := self._entities(text):
                msg["entities"] = ents
        if caption is not None:
            msg["caption"] = caption
            if ents := self._entities(caption):
                msg["caption_entities"] = ents
        if photo:
            sizes = []
            for i, fid in enumerate(photo):
                side = 90 * (i + 1) * (i + 1)
                sizes.append({**self.file_meta(fid), "width": side, "height": side})
            msg["photo"] = sizes
        if document:
            fid, name, mime = document
            msg["document"] = {**self.file_meta(fid), "file_name": name, "mime_type": mime}
        if media_group_id:
            msg["media_group_id"] = media_group_id
        if reply_to is not None:
            msg["reply_to_message"] = reply_to
        if extra:
            msg.update(extra)
        return {"message": msg}

    @staticmethod
    def _entities(text: str) -> list[dict[str, Any]]:
        ents = []
        for m in re.finditer(r"(?:(?<=\s)|^)(/[a-zA-Z0-9_]+(?:@[a-zA-Z0-9_]+)?)", text):
            if m.start() == 0:
                ents.append({"type": "bot_command", "offset": _utf16(text[: m.start()]), "length": _utf16(m.group(1))})
        for m in re.finditer(r"(?:(?<=\s)|^)(@[a-zA-Z0-9_]{5,})", text):
            ents.append({"type": "mention", "offset": _utf16(text[: m.start()]), "length": _utf16(m.group(1))})
        return ents

    def callback_query(
        self, chat_id: int, message_id: int, *, user_id: int, data: str | None = None, label: str | None = None,
    ) -> dict[str, Any]:
        """Build the update of `user_id` pressing a callback button (chosen by data or label) of a bot message.

        Only a button the message shows now can be pressed: a test that presses a button the bot never
        sent, or one that an edit removed, fails here. Inject the result like any update."""
        msg = self.messages.get((chat_id, message_id))
        if msg is None or msg.deleted:
            raise AssertionError(f"stand-in: no message {message_id} in chat {chat_id} to press a button on")
        buttons = callback_buttons(msg.reply_markup)
        chosen = [b for b in buttons if (data is None or b["callback_data"] == data)
                  and (label is None or b["text"] == label)]
        if not chosen:
            raise AssertionError(f"stand-in: message {message_id} has no such button; it shows {buttons}")
        query = CallbackQuery(str(next(self._query_ids)), chat_id, message_id, user_id, chosen[0]["callback_data"])
        self.callback_queries[query.id] = query
        message = self._message_json(msg)
        if chat_id > 0:
            message["chat"]["first_name"] = "Ann"
        # https://core.telegram.org/bots/api#callbackquery: id, from, message, chat_instance, data.
        return {
            "callback_query": {
                "id": query.id,
                "from": self._user(user_id),
                "message": message,
                "chat_instance": str(-chat_id * 31 + 17),
                "data": query.data,
            }
        }

    def bot_message(self, chat_id: int, message_id: int) -> dict[str, Any]:
        """A `reply_to_message` value pointing at a message the bot sent."""
        m = self.messages[(chat_id, message_id)]
        return {
            "message_id": message_id,
            "date": int(time.time()),
            "chat": {"id": chat_id, "type": "group", "title": "g"},
            "from": self._me(),
            "text": m.text or "",
        }

    # --- HTTP handlers ------------------------------------------------------------------------
    async def _on_file(self, request: web.Request) -> web.StreamResponse:
        if request.match_info["token"] != self.token:
            return web.Response(status=401)
        for f in self._files.values():
            if f.file_path == request.match_info["path"]:
                return web.Response(body=f.data, content_type="application/octet-stream")
        return web.Response(status=404)

    async def _on_api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        params, files = await self._decode(request)
        status = 200
        try:
            if request.match_info["token"] != self.token:
                raise _ApiError(401, "Unauthorized")
            failures = self._failures.get(method)
            if failures:
                code, description, parameters = failures.pop(0)
                raise _ApiError(code, description, parameters)
            handler = getattr(self, f"_api_{method}", None)
            if handler is None:
                raise _ApiError(404, "Not Found")
            result = await handler(params, files)
            body: dict[str, Any] = {"ok": True, "result": result}
        except _ApiError as err:
            status = err.code
            body = {"ok": False, "error_code": err.code, "description": err.description}
            if err.parameters:
                body["parameters"] = err.parameters
        self.requests.append(
            RecordedRequest(method, params, files, request.content_type, status, time.monotonic())
        )
        return web.json_response(body, status=status)

    @staticmethod
    async def _decode(request: web.Request) -> tuple[dict[str, Any], dict[str, tuple[str, bytes]]]:
        params: dict[str, Any] = dict(request.query)
        files: dict[str, tuple[str, bytes]] = {}
        if request.content_type == "application/json":
            body = await request.read()
            if body:
                params.update(json.loads(body))
        elif request.content_type == "multipart/form-data":
            reader = await request.multipart()
            async for part in reader:
                if part.filename is not None:
                    files[part.name] = (part.filename, await part.read())  # type: ignore[index]
                else:
                    params[part.name] = await part.text()  # type: ignore[index]
        elif request.can_read_body:
            params.update(await request.post())
        # Form values that are JSON objects/arrays (reply_parameters, commands, ...) are decoded.
        for key, value in list(params.items()):
            if isinstance(value, str) and value[:1] in "[{":
                try:
                    params[key] = json.loads(value)
                except ValueError:
                    pass
        return params, files

    # --- methods ------------------------------------------------------------------------------
    def _me(self) -> dict[str, Any]:
        return {
            "id": self.bot_id, "is_bot": True, "first_name": "VLM Bot", "username": self.username,
            "can_join_groups": True, "can_read_all_group_messages": False, "supports_inline_queries": False,
        }

    async def _api_getMe(self, p, f):
        return self._me()

    async def _api_logOut(self, p, f):
        return True

    async def _api_close(self, p, f):
        return True

    async def _api_setMyCommands(self, p, f):
        commands = p.get("commands")
        if not isinstance(commands, list):
            raise _ApiError(400, "Bad Request: commands must be an array")
        for c in commands:
            if not re.fullmatch(r"[a-z0-9_]{1,32}", c.get("command", "")):
                raise _ApiError(400, "Bad Request: BOT_COMMAND_INVALID")
            if not 1 <= len(c.get("description", "")) <= 256:
                raise _ApiError(400, "Bad Request: BOT_COMMAND_DESCRIPTION_INVALID")
        language = p.get("language_code") or ""
        if language and not re.fullmatch(r"[a-z]{2}", language):  # "a two-letter ISO 639-1 language code"
            raise _ApiError(400, "Bad Request: invalid language code specified")
        if language:
            self.commands_by_language[language] = commands
        else:
            self.commands = commands
        return True

    async def _api_getMyCommands(self, p, f):
        language = p.get("language_code") or ""
        return self.commands_by_language.get(language, self.commands) if language else self.commands

    async def _api_deleteWebhook(self, p, f):
        self.webhook = None
        if str(p.get("drop_pending_updates", "")).lower() in ("true", "1"):
            self._pending.clear()
        return True

    async def _api_setWebhook(self, p, f):
        url = p.get("url", "")
        if not url:
            return await self._api_deleteWebhook(p, f)
        secret = p.get("secret_token")
        if secret is not None and not re.fullmatch(r"[A-Za-z0-9_-]{1,256}", secret):
            raise _ApiError(400, "Bad Request: secret token contains unallowed characters")
        self.webhook = {"url": url, "secret_token": secret}
        self._allow(p)
        if str(p.get("drop_pending_updates", "")).lower() in ("true", "1"):
            self._pending.clear()
        if self._pusher is None or self._pusher.done():
            self._pusher = asyncio.create_task(self._push_loop())
        return True

    def _allow(self, p) -> None:
        if "allowed_updates" in p:  # left out: the previous setting stays
            allowed = p["allowed_updates"]
            if not isinstance(allowed, list):
                raise _ApiError(400, "Bad Request: can't parse allowed updates JSON object")
            self.allowed_updates = allowed or None

    async def _api_getWebhookInfo(self, p, f):
        info = {"url": (self.webhook or {}).get("url", ""), "has_custom_certificate": False,
                "pending_update_count": len(self._pending)}
        if self.allowed_updates:
            info["allowed_updates"] = self.allowed_updates
        return info

    async def _api_getUpdates(self, p, f):
        if self.webhook:
            raise _ApiError(409, "Conflict: can't use getUpdates method while webhook is active; "
                                 "use deleteWebhook to delete the webhook first")
        self._allow(p)
        offset = int(p.get("offset") or 0)
        timeout = float(p.get("timeout") or 0)
        limit = int(p.get("limit") or 100)
        deadline = time.monotonic() + timeout
        async with self._new_update:
            # Like Telegram: a request's offset confirms (drops) older updates when it arrives.
            if offset:
                self._pending = [u for u in self._pending if u["update_id"] >= offset]
            while True:
                ready = [u for u in self._pending if u["update_id"] >= offset]
                if ready:
                    return ready[:limit]
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return []
                try:
                    await asyncio.wait_for(self._new_update.wait(), remaining)
                except TimeoutError:
                    return []

    async def _push_loop(self) -> None:
        """Deliver pending updates to the webhook one at a time, retrying failures like Telegram does."""
        assert self._session is not None
        while True:
            async with self._new_update:
                while not (self.webhook and self._pending):
                    await self._new_update.wait()
                update = self._pending[0]
                hook = dict(self.webhook)
            headers = {"Content-Type": "application/json"}
            if hook.get("secret_token"):
                headers["X-Telegram-Bot-Api-Secret-Token"] = hook["secret_token"]
            try:
                async with self._session.post(hook["url"], data=json.dumps(update), headers=headers) as resp:
                    status = resp.status
            except OSError:
                status = 0
            self.webhook_deliveries.append((update["update_id"], status))
            if 200 <= status < 300:
                if self._pending and self._pending[0] is update:
                    self._pending.pop(0)
            else:
                await asyncio.sleep(0.2)

    def _check_text(
        self, text: str | None, parse_mode: str | None, limit: int, *, caption: bool = False, empty_ok: bool = False,
    ):
        if text is None or text == "":
            if caption:
                return None, []
            raise _ApiError(400, "Bad Request: message text is empty")
        entities: list[dict[str, Any]] = []
        if (parse_mode or "").lower() == "html":
            try:
                text, entities = parse_html(text)
            except HtmlParseError as err:
                raise _ApiError(400, f"Bad Request: can't parse entities: {err}") from None
        elif parse_mode:
            raise _ApiError(400, f"Bad Request: unsupported parse_mode {parse_mode}")
        if not text.strip() and not caption and not empty_ok:
            raise _ApiError(400, "Bad Request: message text is empty")
        if _utf16(text) > limit:
            raise _ApiError(400, "Bad Request: message caption is too long" if caption else "Bad Request: message is too long")
        return text, entities

    def _chat_id(self, p) -> int:
        try:
            return int(p["chat_id"])
        except (KeyError, ValueError):
            raise _ApiError(400, "Bad Request: chat not found") from None

    def _store(self, p, **kw) -> dict[str, Any]:
        chat_id = self._chat_id(p)
        markup = self._markup(p.get("reply_markup"))
        message_id = next(self._message_ids)
        thread = p.get("message_thread_id")
        reply = p.get("reply_parameters") or {}
        msg = _Message(chat_id=chat_id, message_id=message_id, thread_id=int(thread) if thread else None,
                       reply_to=reply.get("message_id") if isinstance(reply, dict) else None,
                       reply_markup=markup, **kw)
        self.messages[(chat_id, message_id)] = msg
        return self._message_json(msg)

    @staticmethod
    def _markup(raw: Any, *, inline_only: bool = False) -> dict[str, Any] | None:
        try:
            if inline_only:
                return None if raw is None else check_inline_keyboard(raw)
            return check_reply_markup(raw)
        except MarkupError as err:
            raise _ApiError(400, str(err)) from None

    def _message_json(self, msg: _Message) -> dict[str, Any]:
        out: dict[str, Any] = {
            "message_id": msg.message_id,
            "date": int(time.time()),
            "chat": {"id": msg.chat_id, "type": "private" if msg.chat_id > 0 else "supergroup"},
            "from": self._me(),
        }
        if msg.thread_id:
            # The bot names a thread only for a forum topic (Target.topic_id), so this is a topic message.
            out["message_thread_id"] = msg.thread_id
            out["is_topic_message"] = True
        if msg.kind == "text":
            out["text"] = msg.text
            if msg.entities:
                out["entities"] = msg.entities
        elif msg.kind == "document":
            out["document"] = {"file_id": f"SENT{msg.message_id}", "file_unique_id": f"S{msg.message_id}",
                               "file_name": msg.filename, "file_size": len(msg.data or b"")}
        elif msg.kind == "photo":
            out["photo"] = [{"file_id": f"SENT{msg.message_id}", "file_unique_id": f"S{msg.message_id}",
                             "width": 10, "height": 10}]
        if msg.caption:
            out["caption"] = msg.caption
        if msg.reply_markup and "inline_keyboard" in msg.reply_markup:
            out["reply_markup"] = msg.reply_markup  # only inline keyboards are part of a Message
        return out

    async def _api_sendMessage(self, p, f):
        text, entities = self._check_text(p.get("text"), p.get("parse_mode"), TEXT_LIMIT)
        sent = self._store(p, text=text, entities=entities)
        # sendMessageDraft: "once the output is finalized, you must call sendMessage with the complete
        # message" (https://core.telegram.org/bots/api#sendmessagedraft): the final message replaces it.
        self._visible_drafts.pop((sent["chat"]["id"], sent.get("message_thread_id")), None)
        return sent

    _NOT_MODIFIED = ("Bad Request: message is not modified: specified new message content and reply markup are "
                     "exactly the same as a current content and reply markup of the message")

    def _editable(self, p) -> _Message:
        msg = self.messages.get((self._chat_id(p), int(p.get("message_id") or 0)))
        if msg is None or msg.deleted:
            raise _ApiError(400, "Bad Request: message to edit not found")
        return msg

    def _set_markup(self, msg: _Message, markup: dict[str, Any] | None) -> None:
        if markup != msg.reply_markup:
            msg.markup_history.append(msg.reply_markup)
            msg.reply_markup = markup

    async def _api_editMessageText(self, p, f):
        msg = self._editable(p)
        text, entities = self._check_text(p.get("text"), p.get("parse_mode"), TEXT_LIMIT)
        # An edit without reply_markup leaves the message without an inline keyboard.
        markup = self._markup(p.get("reply_markup"), inline_only=True)
        if text == msg.text and entities == msg.entities and markup == msg.reply_markup:
            raise _ApiError(400, self._NOT_MODIFIED)
        if (text, entities) != (msg.text, msg.entities):
            msg.history.append(msg.text or "")
            msg.text, msg.entities = text, entities
        self._set_markup(msg, markup)
        return self._message_json(msg)

    async def _api_editMessageReplyMarkup(self, p, f):
        msg = self._editable(p)
        markup = self._markup(p.get("reply_markup"), inline_only=True)  # none: the keyboard is removed
        if markup == msg.reply_markup:
            raise _ApiError(400, self._NOT_MODIFIED)
        self._set_markup(msg, markup)
        return self._message_json(msg)

    async def _api_sendMessageDraft(self, p, f):
        """https://core.telegram.org/bots/api#sendmessagedraft (Bot API 10.0: text 0-4096 characters
        after entities parsing; an empty text shows a "Thinking..." placeholder; draft_id non-zero)."""
        chat_id = self._chat_id(p)
        if chat_id <= 0:
            # "Unique identifier for the target private chat": groups, supergroups and channels (negative
            # ids) are refused with TEXTDRAFT_PEER_INVALID, as reported by bots that tried them.
            raise _ApiError(400, "Bad Request: TEXTDRAFT_PEER_INVALID")
        try:
            draft_id = int(p.get("draft_id") or 0)
        except (TypeError, ValueError):
            draft_id = 0
        if draft_id == 0:
            # The exact text is undocumented; the documented rule is "must be non-zero".
            raise _ApiError(400, "Bad Request: draft_id must be non-zero")
        raw = p.get("text")
        if raw in (None, ""):
            text, entities = "", []
        else:
            text, entities = self._check_text(raw, p.get("parse_mode"), TEXT_LIMIT, empty_ok=True)
        if not entities and isinstance(p.get("entities"), list):
            entities = p["entities"]
        thread = p.get("message_thread_id")
        draft = Draft(chat_id, draft_id, text, entities, int(thread) if thread else None, time.monotonic())
        self.drafts.append(draft)
        self._visible_drafts[(chat_id, draft.thread_id)] = draft
        return True

    async def _api_answerCallbackQuery(self, p, f):
        """https://core.telegram.org/bots/api#answercallbackquery: text 0-200 characters."""
        query = self.callback_queries.get(str(p.get("callback_query_id") or ""))
        if query is None or query.answered or query.expired:
            raise _ApiError(400, "Bad Request: query is too old and response timeout expired or query ID is invalid")
        text = p.get("text")
        if text is not None and len(text) > CallbackQueryLimit.ANSWER_CALLBACK_QUERY_TEXT_LENGTH:
            raise _ApiError(400, "Bad Request: MESSAGE_TOO_LONG")
        query.answered = True
        query.answer = {k: p[k] for k in ("text", "show_alert", "url", "cache_time") if k in p}
        return True

    async def _api_deleteMessage(self, p, f):
        msg = self.messages.get((self._chat_id(p), int(p.get("message_id") or 0)))
        if msg is None or msg.deleted:
            raise _ApiError(400, "Bad Request: message to delete not found")
        msg.deleted = True
        return True

    async def _api_sendChatAction(self, p, f):
        self._chat_id(p)
        if p.get("action") not in {"typing", "upload_photo", "upload_document", "record_video", "find_location"}:
            raise _ApiError(400, "Bad Request: wrong parameter action in request")
        return True

    async def _send_file(self, p, f, field_name: str, kind: str):
        if field_name not in f:
            raise _ApiError(400, f"Bad Request: there is no {field_name} in the request")
        caption, _ = self._check_text(p.get("caption"), p.get("parse_mode"), CAPTION_LIMIT, caption=True)
        filename, data = f[field_name]
        return self._store(p, text=None, entities=[], kind=kind, caption=caption, data=data, filename=filename)

    async def _api_sendDocument(self, p, f):
        return await self._send_file(p, f, "document", "document")

    async def _api_sendPhoto(self, p, f):
        if "photo" in f:
            # Telegram's photo rules: width + height at most 10000, and a side ratio of at most 20.
            try:
                with Image.open(io.BytesIO(f["photo"][1])) as image:
                    width, height = image.size
            except OSError:
                raise _ApiError(400, "Bad Request: IMAGE_PROCESS_FAILED") from None
            if width + height > 10000 or max(width, height) > 20 * min(width, height):
                raise _ApiError(400, "Bad Request: PHOTO_INVALID_DIMENSIONS")
        return await self._send_file(p, f, "photo", "photo")

    async def _api_getFile(self, p, f):
        stored = self._files.get(p.get("file_id", ""))
        if stored is None:
            raise _ApiError(400, "Bad Request: invalid file_id")
        if stored.file_size > DOWNLOAD_LIMIT:
            raise _ApiError(400, "Bad Request: file is too big")
        return {"file_id": stored.file_id, "file_unique_id": stored.file_unique_id,
                "file_size": stored.file_size, "file_path": stored.file_path}
