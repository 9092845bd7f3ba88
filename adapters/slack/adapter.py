"""The Slack adapter: slack-bolt's AsyncApp over Socket Mode or the HTTP Events API.

Every event is acknowledged at once (the listener only parses and starts a tracked task); the work
happens in that task, after a `claim_delivery` on "CHANNEL/TS" so that retries, duplicate event ids
and the `message` + `app_mention` pair for one mention are processed once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from collections.abc import Coroutine
from typing import Any

import aiohttp
from aiohttp import web
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.app.async_app import AsyncApp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.adapter import ConfigurationError
from bot.config import Settings
from bot.conversations import Conversations
from bot.messages import Attachment, Document, IncomingMessage, Text
from bot.presets import preset_named

from . import commands
from .access import REFUSAL, AccessPolicy
from .events import SlackMessage, parse_message, strip_mention
from .files import DownloadError, download
from .http_events import events_handler, json_errors
from .mrkdwn import MESSAGE_LIMIT, escape, to_mrkdwn, unescape_slack
from .render import RenderOptions, render
from .stream import Poster, ReplyStream

__all__ = ["REQUIRED_SCOPES", "SlackAdapter"]

log = logging.getLogger(__name__)

PLATFORM = "slack"
EVENTS_PATH = "/slack/events"
REQUIRED_SCOPES = (
    "app_mentions:read", "channels:history", "groups:history", "im:history", "mpim:history",
    "chat:write", "files:read", "files:write", "commands",
)
REPLY_FAILED = ":warning: Slack refused part of my answer; please ask again."
NOT_A_PICTURE = "I can only read pictures (PNG, JPEG, WebP, GIF...); I skipped {names}."


class _Recent:
    """A bounded set of recently seen keys."""

    def __init__(self, size: int = 10_000) -> None:
        self._keys: OrderedDict[str, None] = OrderedDict()
        self._size = size

    def add(self, key: str) -> bool:
        """True when `key` is new."""
        if key in self._keys:
            self._keys.move_to_end(key)
            return False
        self._keys[key] = None
        if len(self._keys) > self._size:
            self._keys.popitem(last=False)
        return True

    def __contains__(self, key: str) -> bool:
        return key in self._keys


class SlackAdapter:
    """Answers mentions in channel threads, follow-ups in threads it answered, and every DM."""

    name = "slack"

    def __init__(
        self,
        settings: Settings,
        conversations: Conversations,
        *,
        message_limit: int = MESSAGE_LIMIT,
        update_interval: float = 1.0,
        code_file_lines: int = 30,
    ) -> None:
        if not settings.slack_bot_token:
            raise ConfigurationError("Slack: SLACK_BOT_TOKEN is not set.")
        if not settings.slack_app_token and not settings.slack_signing_secret:
            raise ConfigurationError("Slack: set SLACK_APP_TOKEN (Socket Mode) or SLACK_SIGNING_SECRET (HTTP Events API).")
        self._policy = AccessPolicy.from_settings(settings)
        self._policy.check_configured()
        self._settings = settings
        self._conversations = conversations
        self._options = RenderOptions(limit=message_limit, interval=update_interval, code_file_lines=code_file_lines)
        self._tasks: set[asyncio.Task[None]] = set()
        self._threads = _Recent()  # thread keys the bot has replied in (the store knows the rest)
        self._refused = _Recent()
        self._http: aiohttp.ClientSession | None = None
        self._socket: AsyncSocketModeHandler | None = None
        self._runner: web.AppRunner | None = None
        self._poster: Poster | None = None
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
            await self._check_auth(client)
            socket_mode = bool(settings.slack_app_token)
            app = AsyncApp(
                client=client,
                signing_secret=settings.slack_signing_secret or "",
                request_verification_enabled=not socket_mode,
                process_before_response=True,  # listeners only start tracked tasks: acknowledging stays fast
                logger=logging.getLogger("slack_bolt"),
            )
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
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=self._settings.shutdown_grace_s)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        if self._http is not None:
            await self._http.close()
            self._http = None

    async def idle(self) -> None:
        """Return once every task started so far (and any they started) has finished."""
        while self._tasks:
            await asyncio.wait(set(self._tasks))

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
        host, _, port = self._settings.slack_http_listen.rpartition(":")
        await web.TCPSite(self._runner, host.strip("[]") or "0.0.0.0", int(port)).start()
        bound_host, bound_port = self._runner.addresses[0][:2]
        self.http_url = f"http://{bound_host}:{bound_port}{EVENTS_PATH}"

    # --- listeners (run before the acknowledgement: they must stay quick) ---------------------

    async def _on_event(self, body: dict[str, Any], event: dict[str, Any]) -> None:
        message = parse_message(event, bot_user_id=self.bot_user_id, team=body.get("team_id"))
        if message is not None:
            self._spawn(self._process(message), f"slack-{message.delivery_key}")

    async def _on_command(self, ack: Any, command: dict[str, Any], respond: Any) -> None:
        await ack()
        self._spawn(self._slash(command, respond), f"slack-command-{command.get('trigger_id')}")

    def _spawn(self, work: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.create_task(self._guard(work, name), name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _guard(self, work: Coroutine[Any, Any, None], name: str) -> None:
        try:
            await work
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("slack: %s failed", name)

    # --- messages -----------------------------------------------------------------------------

    async def _addressed(self, message: SlackMessage) -> bool:
        """DMs, mentions, and threads the bot takes part in are for the bot."""
        if message.is_dm or message.mentioned:
            return True
        if not message.in_thread:
            return False
        key = message.thread_key
        return key in self._threads or await self._conversations.has_conversation(PLATFORM, key)

    async def _process(self, message: SlackMessage) -> None:
        if not await self._addressed(message):
            return
        if not self._policy.allows(message.team, message.channel, message.user):
            # refuse those who address the bot; others chatting in a thread it is in are left alone
            if (message.mentioned or message.is_dm) and self._refused.add(message.delivery_key):
                log.info("slack: refused user %s in channel %s (team %s)", message.user, message.channel, message.team)
                self._conversations.refused("access")
                await self._say(message.channel, message.reply_thread_ts, REFUSAL)
            return
        if not await self._conversations.claim_delivery(PLATFORM, message.delivery_key):
            log.debug("slack: %s already handled", message.delivery_key)
            return
        text = commands.from_text(unescape_slack(strip_mention(message.text, self.bot_user_id)))
        attachments = await self._attachments(message, has_text=bool(text.strip()))
        if attachments is None:
            return
        incoming = IncomingMessage(PLATFORM, message.thread_key, message.user, text, attachments)
        await self._answer(incoming, message.channel, message.reply_thread_ts)

    async def _attachments(self, message: SlackMessage, *, has_text: bool) -> tuple[Attachment, ...] | None:
        """The message's pictures (several files form one turn), or None when the user was told why not."""
        pictures = [f for f in message.files if f.is_image]
        others = [f for f in message.files if not f.is_image]
        if others:
            await self._say(message.channel, message.reply_thread_ts,
                            NOT_A_PICTURE.format(names=", ".join(f.name for f in others)))
            if not pictures and not has_text:
                return None
        for file in pictures:
            problem = self._conversations.check_attachment_size(file.size)
            if problem:
                await self._say(message.channel, message.reply_thread_ts, f":warning: {problem}")
                return None
        assert self._http is not None and self._settings.slack_bot_token
        attachments = []
        for file in pictures:
            try:
                data = await download(self._http, file, self._settings.slack_bot_token,
                                      max_bytes=self._settings.max_image_bytes)
            except DownloadError as exc:
                await self._say(message.channel, message.reply_thread_ts, f":warning: {exc.user_message}")
                return None
            attachments.append(Attachment(data, file.name, file.mimetype))
        return tuple(attachments)

    async def _answer(self, incoming: IncomingMessage, channel: str, thread_ts: str | None) -> None:
        assert self._poster is not None
        self._threads.add(incoming.thread_key)
        replies = self._conversations.handle(incoming)
        try:
            await render(replies, self._poster, channel, thread_ts, self._options)
        except SlackApiError as exc:
            log.error("slack: replying in %s failed: %s", incoming.thread_key, exc.response.get("error"))
            with contextlib.suppress(SlackApiError):
                await self._say(channel, thread_ts, REPLY_FAILED)
        finally:
            await replies.aclose()

    async def _say(self, channel: str, thread_ts: str | None, text: str) -> None:
        """Post plain text (escaped: a file name such as `<!channel>.png` must not ping anyone)."""
        assert self._poster is not None
        await ReplyStream(self._poster, channel, thread_ts, limit=self._options.limit).show(escape(text), final=True)

    # --- the slash command --------------------------------------------------------------------

    async def _slash(self, command: dict[str, Any], respond: Any) -> None:
        """DMs: the DM conversation. Channels: a question starts a new thread; commands act on the
        channel's own conversation and answer privately (thread commands are "@bot clear" in the thread)."""
        channel, user = str(command.get("channel_id", "")), str(command.get("user_id", ""))
        if not self._policy.allows(command.get("team_id"), channel, user):
            await respond(REFUSAL)
            return
        text = commands.from_slash_command(unescape_slack(str(command.get("text", ""))))
        if channel.startswith("D"):
            await self._answer(IncomingMessage(PLATFORM, channel, user, text), channel, None)
        elif (preset := preset_named(text[1:].split(" ", 1)[0].lower())) is not None:
            # A slash command carries no file and a channel conversation holds no picture.
            await respond(
                f"`{preset.name}` works on a picture: post it in a message that mentions me with "
                f"`{preset.name}{' ' + preset.usage if preset.usage else ''}`, or say it in the picture's thread."
            )
        elif text.startswith("/"):
            await self._respond_all(IncomingMessage(PLATFORM, channel, user, text), respond)
        else:
            assert self._poster is not None
            client = self._poster.client
            root = await self._poster.call(
                "chat.postMessage", lambda: client.chat_postMessage(channel=channel, text=f"<@{user}> asked: {escape(text)}")
            )
            key = f"{channel}/{root['ts']}"
            await self._answer(IncomingMessage(PLATFORM, key, user, text), channel, root["ts"])

    async def _respond_all(self, incoming: IncomingMessage, respond: Any) -> None:
        """Command output in a channel goes only to the user who asked (via response_url)."""
        replies = self._conversations.handle(incoming)
        try:
            async for reply in replies:
                if isinstance(reply, Text):
                    await respond(to_mrkdwn(reply.text))
                elif isinstance(reply, Document):
                    await respond(f"Exports are per thread: send `<@{self.bot_user_id}> export` in the thread.")
        finally:
            await replies.aclose()
