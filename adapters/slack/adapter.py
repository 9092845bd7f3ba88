"""The Slack adapter: slack-bolt's AsyncApp over Socket Mode or the HTTP Events API.

Every event is acknowledged at once: a listener only converts it into a delivery for the core's
inbox (which orders, checks access, claims "CHANNEL/TS" exactly once, and answers) together with a
transport for the reply. Slack sends one mention as a `message` and an `app_mention` event: both
carry the same delivery id, so the core answers it once. Assistant threads (the Agents & AI Apps
surface) come through slack-bolt's `AsyncAssistant`; a feedback button press (`block_actions`) is
acknowledged, then recorded as the user's vote on that answer.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

import aiohttp
from aiohttp import web
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.app.async_app import AsyncApp
from slack_bolt.middleware.assistant.async_assistant import AsyncAssistant
from slack_sdk.web.async_client import AsyncWebClient

from bot.adapter import ConfigurationError
from bot.config import Settings
from bot.http import json_errors
from bot.i18n import _, speaking
from bot.inbox import Inbox
from bot.incoming import Addressing, Delivery, Sender
from bot.presets import preset_named
from bot.transport import TextKind, TransportError
from bot.votes import Vote, decode_vote
from bot.wording import refusal

from . import commands
from .assistant import AssistantThreads
from .calls import Poster
from .events import SlackMessage, parse_message, strip_mention
from .feedback import VOTE_ACTION
from .files import SlackFiles
from .http_events import events_handler
from .locales import SlackLocales
from .mrkdwn import escape, unescape_slack
from .transport import (
    MESSAGE_LIMIT,
    Recipient,
    ResponseTransport,
    SlackTransport,
    StreamGate,
)

__all__ = ["REQUIRED_SCOPES", "SlackAdapter"]

log = logging.getLogger(__name__)

PLATFORM = "slack"
EVENTS_PATH = "/slack/events"
REQUIRED_SCOPES = (
    "app_mentions:read", "channels:history", "groups:history", "im:history", "mpim:history",
    "chat:write", "files:read", "files:write", "commands", "assistant:write", "users:read",
)


class SlackAdapter:
    """Answers mentions in channel threads, follow-ups in threads it answered, and every DM."""

    name = PLATFORM

    def __init__(
        self,
        settings: Settings,
        inbox: Inbox,
        *,
        message_limit: int = MESSAGE_LIMIT,
        update_interval: float = 1.0,
    ) -> None:
        if not settings.slack_bot_token:
            raise ConfigurationError("Slack: SLACK_BOT_TOKEN is not set.")
        inbox.require_access(PLATFORM)
        if not settings.slack_app_token and not settings.slack_signing_secret:
            raise ConfigurationError("Slack: set SLACK_APP_TOKEN (Socket Mode) or SLACK_SIGNING_SECRET (HTTP Events API).")
        self._settings = settings
        self._inbox = inbox
        self._message_limit = message_limit
        self._update_interval = update_interval  # chat.update is tier 3: about 50 a minute per workspace
        self._tasks: set[asyncio.Task[None]] = set()  # the slash command's own work (posting a thread's root)
        self._http: aiohttp.ClientSession | None = None
        self._socket: AsyncSocketModeHandler | None = None
        self._runner: web.AppRunner | None = None
        self._poster: Poster | None = None
        self._assistant: AssistantThreads | None = None
        self._gate = StreamGate()
        self._votes = asyncio.Lock()  # one vote press handled at a time
        self._files: SlackFiles | None = None
        self._locales: SlackLocales | None = None
        self.bot_user_id: str | None = None
        self.team_id: str | None = None
        self.granted_scopes: frozenset[str] = frozenset()
        self.http_url: str | None = None  # the Events API URL once listening (HTTP mode)

    # --- Adapter ------------------------------------------------------------------------------

    async def start(self) -> None:
        settings = self._settings
        self._http = aiohttp.ClientSession()
        try:
            client = AsyncWebClient(token=settings.slack_bot_token, base_url=settings.slack_api_url, session=self._http)
            self._poster = Poster(client)
            self._assistant = AssistantThreads(self._poster)
            self._locales = SlackLocales(self._poster)
            self._files = SlackFiles(self._http, settings.slack_bot_token or "", max_bytes=settings.max_image_bytes)
            await self._check_auth(client)
            self._gate.team = self.team_id
            socket_mode = bool(settings.slack_app_token)
            app = AsyncApp(
                client=client,
                signing_secret=settings.slack_signing_secret or "",
                request_verification_enabled=not socket_mode,
                process_before_response=True,  # listeners only hand work on: acknowledging stays fast
                logger=logging.getLogger("slack_bolt"),
            )
            assistant = AsyncAssistant()
            assistant.thread_started(self._on_thread_started)
            assistant.thread_context_changed(self._on_context_changed)
            assistant.user_message(self._on_event)
            app.use(assistant)
            app.action(VOTE_ACTION)(self._on_vote)
            app.event("app_mention")(self._on_event)
            app.event("message")(self._on_event)
            app.command(settings.slack_slash_command)(self._on_command)
            if socket_mode:
                self._socket = AsyncSocketModeHandler(app, settings.slack_app_token, web_client=client)
                await self._socket.connect_async()
                log.info("slack: connected in Socket Mode as %s (team %s)", self.bot_user_id, self.team_id)
            else:
                await self._serve_http(app)
                log.info("slack: Events API listening at %s", self.http_url)
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        if self._socket is not None:
            await self._socket.close_async()
            self._socket = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        grace = self._settings.shutdown_grace_s
        if self._tasks:
            _done, pending = await asyncio.wait(set(self._tasks), timeout=grace)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        await self._inbox.close(PLATFORM, grace)
        if self._http is not None:
            await self._http.close()
            self._http = None

    async def idle(self) -> None:
        """Return once every event received so far has been fully handled."""
        while self._tasks or self._inbox.busy(PLATFORM):
            if self._tasks:
                await asyncio.wait(set(self._tasks))
            await self._inbox.idle(PLATFORM)

    # --- start-up -----------------------------------------------------------------------------

    async def _check_auth(self, client: AsyncWebClient) -> None:
        auth = await client.auth_test()
        self.bot_user_id = auth.get("user_id")
        self.team_id = auth.get("team_id")
        header = auth.headers.get("x-oauth-scopes") or auth.headers.get("X-OAuth-Scopes") or ""
        self.granted_scopes = frozenset(s.strip() for s in header.split(",") if s.strip())
        if not header:
            return  # a proxy may drop the header: nothing to judge by
        missing = [scope for scope in REQUIRED_SCOPES if scope not in self.granted_scopes]
        if "files:read" in missing:
            log.warning(
                "slack: the app lacks the files:read scope, so pictures cannot be downloaded (Slack answers "
                "with a sign-in page); add it under OAuth & Permissions and reinstall the app"
            )
        if missing:
            log.warning("slack: missing scopes %s; see adapters/slack/manifest.yaml", ", ".join(missing))

    async def _serve_http(self, app: AsyncApp) -> None:
        web_app = web.Application(middlewares=[json_errors])
        web_app.router.add_post(EVENTS_PATH, events_handler(app, self._settings.slack_signing_secret or ""))
        self._runner = web.AppRunner(web_app, access_log=None)
        await self._runner.setup()
        host, _sep, port = self._settings.slack_http_listen.rpartition(":")
        await web.TCPSite(self._runner, host.strip("[]") or "0.0.0.0", int(port)).start()
        bound_host, bound_port = self._runner.addresses[0][:2]
        self.http_url = f"http://{bound_host}:{bound_port}{EVENTS_PATH}"

    # --- listeners (run before the acknowledgement: they must stay quick) ---------------------

    async def _on_event(self, body: dict[str, Any], event: dict[str, Any]) -> None:
        message = parse_message(event, bot_user_id=self.bot_user_id, team=body.get("team_id"))
        if message is None:
            return
        if message.is_dm or message.mentioned:
            addressing = Addressing.DIRECT
        elif message.in_thread:
            addressing = Addressing.FOLLOW_UP  # answered in threads the bot takes part in
        else:
            return  # channel chatter
        delivery = Delivery(
            platform=PLATFORM,
            thread_key=message.thread_key,
            sender=Sender(message.user, chat_id=message.channel, team_id=message.team),
            text=commands.from_text(unescape_slack(strip_mention(message.text, self.bot_user_id))),
            files=message.files,
            delivery_id=message.delivery_key,
            addressing=addressing,
        )
        thread_ts = message.reply_thread_ts
        assistant = self._assistant is not None and self._assistant.is_assistant_thread(message.channel, thread_ts)
        transport = self._transport(message.channel, thread_ts, Recipient(message.team, message.user), assistant=assistant)
        self._inbox.submit(delivery, transport, self._files, languages=self._locales)
        if assistant and thread_ts is not None and self._inbox.admits(delivery):
            assert self._assistant is not None
            self._spawn(self._assistant.question(message.channel, thread_ts, delivery.text), f"slack-title-{thread_ts}")

    def _transport(
        self, channel: str, thread_ts: str | None, recipient: Recipient | None = None, *, assistant: bool = False
    ) -> SlackTransport:
        assert self._poster is not None
        return SlackTransport(
            self._poster, channel, thread_ts, max_text=self._message_limit, interval=self._update_interval,
            gate=self._gate, recipient=recipient, assistant=assistant,
        )

    async def _on_thread_started(self, event: dict[str, Any]) -> None:
        thread = event.get("assistant_thread") or {}
        channel, thread_ts = str(thread.get("channel_id") or ""), str(thread.get("thread_ts") or "")
        if channel and thread_ts and self._assistant is not None:
            sender = Sender(str(thread.get("user_id") or ""), chat_id=channel)
            self._spawn(self._greet(channel, thread_ts, sender), f"slack-assistant-{thread_ts}")

    async def _greet(self, channel: str, thread_ts: str, sender: Sender) -> None:
        assert self._assistant is not None
        with speaking(await self._inbox.language_of(sender, self._locales if sender.user_id else None)):
            await self._assistant.started(channel, thread_ts)

    async def _on_context_changed(self) -> None:
        """The channel the user looks at changed: the bot answers about pictures, not channels."""

    async def _on_vote(self, ack: Any, body: dict[str, Any]) -> None:
        await ack()
        self._spawn(self._vote(body), f"slack-vote-{body.get('trigger_id')}")

    async def _vote(self, body: dict[str, Any]) -> None:
        """A feedback button press: checked and keyed as a message from the same user in the same
        place would be, recorded, and answered privately."""
        assert self._poster is not None
        client = self._poster.client
        container, user, team_of = (_object(body.get(k)) for k in ("container", "user", "team"))
        actions = body.get("actions")
        action = _object(actions[0]) if isinstance(actions, list) and actions else {}
        channel, user_id = str(container.get("channel_id") or ""), str(user.get("id") or "")
        message_ts = str(container.get("message_ts") or "")
        thread_ts = str(container["thread_ts"]) if container.get("thread_ts") else None
        decoded = decode_vote(str(action.get("value") or ""))
        if not channel or not user_id or not message_ts or decoded is None:
            log.info("slack: ignored a malformed vote press from %r in %r", user_id, channel)
            return
        team = user.get("team_id") or team_of.get("id")
        where = SlackMessage(team, channel, user_id, message_ts, thread_ts, "", (), channel.startswith("D"), False)
        sender = Sender(user_id, chat_id=channel, team_id=team)
        async with self._votes:  # presses are handled in the order acknowledged: a change of mind wins
            with speaking(await self._inbox.language_of(sender, self._locales)):
                text = await self._vote_text(where.thread_key, sender, decoded)
            await self._poster.call(
                "chat.postEphemeral",
                lambda: client.chat_postEphemeral(channel=channel, user=user_id, thread_ts=thread_ts, text=escape(text)),
            )

    async def _vote_text(self, thread_key: str, sender: Sender, decoded: tuple[int, Vote]) -> str:
        if not self._inbox.admits(Delivery(PLATFORM, thread_key, sender)):
            return refusal(sender.user_id)
        turn_id, vote = decoded
        result = await self._inbox.conversations.record_vote(PLATFORM, thread_key, sender.user_id, turn_id, vote)
        return result.text

    async def _on_command(self, ack: Any, command: dict[str, Any], respond: Any) -> None:
        """DMs: the DM conversation. Channels: a question starts a new thread; commands act on the
        channel's own conversation and answer privately (thread commands are "@bot clear" in the thread)."""
        await ack()
        channel, user = str(command.get("channel_id", "")), str(command.get("user_id", ""))
        text = commands.from_slash_command(unescape_slack(str(command.get("text", ""))))
        delivery = Delivery(PLATFORM, channel, Sender(user, chat_id=channel, team_id=command.get("team_id")), text)
        private = ResponseTransport(respond)
        name = f"slack-command-{command.get('trigger_id')}"
        preset = preset_named(text[1:].split(" ", 1)[0].lower()) if text.startswith("/") else None
        if channel.startswith("D"):
            self._inbox.submit(delivery, self._transport(channel, None), languages=self._locales)
        elif not self._inbox.admits(delivery):
            self._inbox.submit(delivery, private, languages=self._locales)  # the core refuses, privately
        elif preset is not None:
            self._spawn(self._preset_hint(private, delivery.sender, preset.name, preset.usage), name)
        elif text.startswith("/"):
            self._inbox.submit(delivery, private, languages=self._locales)  # a command on the channel's own conversation
        else:
            self._spawn(self._ask_in_new_thread(delivery, channel, user), name)

    async def _preset_hint(self, private: ResponseTransport, sender: Sender, name: str, usage: str) -> None:
        """A slash command carries no file and a channel conversation holds no picture."""
        with speaking(await self._inbox.language_of(sender, self._locales)):
            command = f"{name} {_(usage)}".rstrip()
            hint = _("`{name}` works on a picture: post it in a message that mentions me with `{command}`, "
                     "or say it in the picture's thread.").format(name=name, command=command)
        await private.post(hint, TextKind.INFO)

    async def _ask_in_new_thread(self, delivery: Delivery, channel: str, user: str) -> None:
        assert self._poster is not None
        client = self._poster.client
        with speaking(await self._inbox.language_of(delivery.sender, self._locales)):
            text = _("{user} asked: {question}").format(user=f"<@{user}>", question=escape(delivery.text))
        root = await self._poster.call("chat.postMessage", lambda: client.chat_postMessage(channel=channel, text=text))
        thread = Delivery(PLATFORM, f"{channel}/{root['ts']}", delivery.sender, delivery.text)
        self._inbox.submit(thread, self._transport(channel, root["ts"]), languages=self._locales)

    def _spawn(self, work: Coroutine[Any, Any, Any], name: str) -> None:
        task = asyncio.create_task(self._guard(work, name), name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _guard(self, work: Coroutine[Any, Any, Any], name: str) -> None:
        try:
            await work
        except TransportError as exc:
            log.warning("slack: %s failed: %s", name, exc)


def _object(value: Any) -> dict[str, Any]:
    """A payload field that should be an object; a forged payload may hold anything."""
    return value if isinstance(value, dict) else {}
