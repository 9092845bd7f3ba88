"""The browser's JSON API: its own sessions, questions with streamed answers, rename, remove, export, clear."""

from __future__ import annotations

import json
import logging
import re
from typing import Any

from aiohttp import web

from bot.commands import COMMANDS
from bot.i18n import N_, _, current_language
from bot.inbox import Inbox
from bot.incoming import Delivery, Sender
from bot.language import Language, from_accept_language
from bot.messages import Attachment
from bot.store import SessionInfo, VoteInfo
from bot.votes import Vote, VoteOutcome

from .bodies import check_text, parse_json_object, string_field
from .errors import ApiError
from .page_words import page_words
from .presets import presets
from .security import Access
from .sse import SseTransport, stream_events
from .stored_files import picture_response
from .uploads import PictureChecks, PictureRef, UploadLimits, read_message_form
from .views import image_type, session_view, turn_view, video_hashes

__all__ = ["PLATFORM", "ChatApi", "browser_language", "session_id_param", "sha_param"]

log = logging.getLogger(__name__)

PLATFORM = "web"
_THREAD = re.compile(r"^[A-Za-z0-9_-]{6,64}$")
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_SHA = re.compile(r"^[0-9a-f]{64}$")
_TURN = re.compile(r"^[0-9]{1,15}$")  # ASCII digits that fit a database integer
NOT_FOUND = N_("There is no such conversation here.")


def browser_language(request: web.Request) -> Language | None:
    """The language the browser prefers among the bot's (Accept-Language, q-values weighed)."""
    return from_accept_language(request.headers.get("Accept-Language"))


def session_id_param(request: web.Request) -> str:
    value = request.match_info["session"]
    if not _UUID.fullmatch(value):
        raise ApiError(404, _(NOT_FOUND))
    return value


def sha_param(request: web.Request) -> str:
    value = request.match_info["sha"]
    if not _SHA.fullmatch(value):
        raise ApiError(404, _("There is no such picture."))
    return value


def export_response(session: SessionInfo, data: bytes) -> web.Response:
    return web.Response(
        body=data,
        content_type="application/json",
        # A download, never a page: nosniff (set for every response) keeps browsers from guessing otherwise.
        headers={"Content-Disposition": f'attachment; filename="vlmbot-session-{session.id[:8]}.json"'},
    )


class ChatApi:
    def __init__(
        self,
        inbox: Inbox,
        access: Access,
        limits: UploadLimits,
        checks: PictureChecks,
        *,
        keepalive_s: float = 15.0,
    ) -> None:
        self._inbox = inbox
        self._conversations = inbox.conversations
        self._store = inbox.conversations.store
        self._access = access
        self._limits = limits
        self._checks = checks
        self._keepalive_s = keepalive_s

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/api/me", self.me),
            web.post("/api/login", self.login),
            web.post("/api/logout", self.logout),
            web.get("/api/sessions", self.sessions),
            web.get("/api/sessions/{session}", self.session),
            web.patch("/api/sessions/{session}", self.rename),
            web.delete("/api/sessions/{session}/turns/{turn}", self.remove_turn),
            web.post("/api/sessions/{session}/turns/{turn}/vote", self.vote),
            web.get("/api/sessions/{session}/export", self.export),
            web.get("/api/sessions/{session}/images/{sha}", self.image),
            web.get("/api/threads/{thread}", self.thread),
            web.post("/api/threads/{thread}/messages", self.message),
            web.post("/api/threads/{thread}/clear", self.clear),
        ]

    # --- who is asking ------------------------------------------------------------------------

    async def _user(self, request: web.Request) -> str:
        caller = await self._access.caller(request)
        if not caller.allowed:
            raise ApiError(401, _("This chat needs its access token; enter it to continue."))
        if caller.user_id is None:
            raise ApiError(401, _("Your browser has no chat identity yet; reload the page."))
        return caller.user_id

    def _thread_key(self, request: web.Request, user_id: str) -> str:
        thread = request.match_info["thread"]
        if not _THREAD.fullmatch(thread):
            raise ApiError(400, _("That chat id is malformed; start a new chat."))
        return f"{user_id}/{thread}"

    async def _own_session(self, request: web.Request, user_id: str) -> SessionInfo:
        session = await self._store.get_session(session_id_param(request))
        if not _owned(session, user_id):
            raise ApiError(404, _(NOT_FOUND))
        assert session is not None
        return session

    async def _detail(self, session: SessionInfo, user_id: str) -> dict[str, Any]:
        turns = await self._store.turns(session.id, in_context_only=True)
        first = next((t.user_text for t in turns if t.user_text), None)
        votes = _own_votes(await self._store.votes_in_session(session.id), user_id)
        videos = await video_hashes(self._store, self._conversations.pictures, turns)
        return {
            "session": session_view(session, first),
            "turns": [{**turn_view(t, videos), "vote": votes.get(t.id)} for t in turns],
        }

    # --- identity -----------------------------------------------------------------------------

    async def me(self, request: web.Request) -> web.Response:
        caller = await self._access.caller(request)
        response = web.json_response({})
        # Only a browser that may chat gets an identity: nobody else can mint one to plant in a victim's browser.
        user_id, csrf = self._access.ensure_cookies(request, response, identity=caller.allowed)
        names = {spec.name for spec in COMMANDS}
        response.text = json.dumps(
            {
                "authenticated": caller.allowed,
                "admin": caller.admin,
                "token_required": self._access.token is not None,
                "admin_available": self._access.admin_token is not None,
                "user": user_id if caller.allowed else None,
                "csrf": csrf,
                "model": self._conversations.engine.model_name,
                "commands": sorted(names),
                "presets": presets(names),
                "language": current_language().value,  # the browser's, as the bot speaks it
                "words": page_words(),
                "limits": {
                    "max_image_bytes": self._limits.max_file_bytes,
                    "max_images": self._limits.max_files,
                },
            }
        )
        return response

    async def login(self, request: web.Request) -> web.Response:
        token = string_field(parse_json_object(await request.read()), "token", max_chars=1024)
        if not token:
            raise ApiError(400, _("Enter the access token."))
        response = web.json_response({})
        user, admin = await self._access.login(request, token, response)
        if not (user or admin):
            log.warning("web: a wrong token was entered from %s", self._access.client_address(request))
            raise ApiError(401, _("That token is not right; check it and try again."))
        self._access.ensure_cookies(request, response, identity=True)
        response.text = json.dumps({"authenticated": True, "admin": admin})
        return response

    async def logout(self, request: web.Request) -> web.Response:
        response = web.json_response({"authenticated": self._access.token is None, "admin": False})
        await self._access.logout(request, response)
        return response

    # --- sessions -----------------------------------------------------------------------------

    async def sessions(self, request: web.Request) -> web.Response:
        user_id = await self._user(request)
        sessions = await self._store.list_sessions(platform=PLATFORM, owner_id=user_id, limit=200)
        firsts = await self._store.first_questions([s.id for s in sessions])
        return web.json_response({"sessions": [session_view(s, firsts.get(s.id)) for s in sessions]})

    async def session(self, request: web.Request) -> web.Response:
        user_id = await self._user(request)
        session = await self._own_session(request, user_id)
        return web.json_response(await self._detail(session, user_id))

    async def thread(self, request: web.Request) -> web.Response:
        user_id = await self._user(request)
        key = self._thread_key(request, user_id)
        active = await self._store.list_sessions(platform=PLATFORM, thread_key=key, active_only=True, limit=1)
        if not active:
            return web.json_response({"session": None, "turns": []})
        return web.json_response(await self._detail(active[0], user_id))

    async def rename(self, request: web.Request) -> web.Response:
        session = await self._own_session(request, await self._user(request))
        title = string_field(parse_json_object(await request.read()), "title", max_chars=10_000)
        title = " ".join(check_text(title, N_("The name")).split())[:200]
        if not title:
            raise ApiError(400, _("Enter a name for the conversation."))
        await self._store.rename_session(session.id, title)
        renamed = await self._store.get_session(session.id)
        assert renamed is not None
        return web.json_response({"session": session_view(renamed)})

    async def remove_turn(self, request: web.Request) -> web.Response:
        session = await self._own_session(request, await self._user(request))
        turn_id = _turn_param(request)
        turn = await self._store.get_turn(turn_id)
        if turn is None or turn.session_id != session.id or not turn.in_context:
            raise ApiError(404, _("There is no such turn."))
        if turn.status == "pending":
            raise ApiError(409, _("That question is still being answered; stop it or wait, then remove it."))
        await self._store.drop_from_context(turn.id)
        return web.json_response({"removed": turn.id})

    async def vote(self, request: web.Request) -> web.Response:
        """Thumbs up or down on an answer of the browser's own session; a second vote replaces the first."""
        user_id = await self._user(request)
        session = await self._own_session(request, user_id)
        turn_id = _turn_param(request)
        raw = string_field(parse_json_object(await request.read()), "vote", max_chars=16)
        try:
            vote = Vote(raw)
        except ValueError:
            raise ApiError(400, _('"vote" must be "up" or "down".')) from None
        # The session's own thread key: the one its questions were asked under, so a forged turn
        # id of another thread (or another browser) is refused by the core's rule, not only here.
        result = await self._conversations.record_vote(PLATFORM, session.thread_key, user_id, turn_id, vote)
        if result.outcome is VoteOutcome.UNKNOWN_TURN:
            raise ApiError(404, _("There is no such answer in this conversation."))
        if not result.accepted:
            raise ApiError(409, result.text)
        assert result.vote is not None
        return web.json_response(
            {"turn_id": turn_id, "vote": result.vote.value, "outcome": result.outcome.value, "message": result.text}
        )

    async def export(self, request: web.Request) -> web.Response:
        session = await self._own_session(request, await self._user(request))
        return export_response(session, await self._conversations.export_session(session.id))

    async def image(self, request: web.Request) -> web.StreamResponse:
        session = await self._own_session(request, await self._user(request))
        return await picture_response(request, self._conversations, session.id, sha_param(request))

    # --- asking ---------------------------------------------------------------------------------

    async def message(self, request: web.Request) -> web.StreamResponse:
        user_id = await self._user(request)
        key = self._thread_key(request, user_id)
        form = await read_message_form(request, self._limits, self._checks)
        again = [await self._reattach(ref, user_id) for ref in form.refs]
        delivery = Delivery(PLATFORM, key, Sender(user_id, language=browser_language(request)), form.text, attachments=form.files + tuple(again))
        log.info("web %s: question with %d picture(s)", key, len(delivery.attachments))
        transport = SseTransport()
        ticket = self._inbox.submit(delivery, transport)
        return await stream_events(request, transport, ticket, keepalive_s=self._keepalive_s, label=key)

    async def _reattach(self, ref: PictureRef, user_id: str) -> Attachment:
        session = await self._store.get_session(ref.session_id)
        if not _owned(session, user_id) or not await self._store.image_in_session(ref.sha256, ref.session_id):
            raise ApiError(404, _("That earlier picture is not in your conversations; attach it again."))
        try:
            data = await self._conversations.pictures.load(ref.sha256)
        except FileNotFoundError:
            raise ApiError(404, _("That earlier picture is missing from storage; attach it again.")) from None
        return Attachment(data=data, filename=f"{ref.sha256[:12]}", mime_type=image_type(data))

    async def clear(self, request: web.Request) -> web.Response:
        key = self._thread_key(request, await self._user(request))
        return web.json_response({"message": await self._inbox.clear(PLATFORM, key)})


def _turn_param(request: web.Request) -> int:
    raw = request.match_info["turn"]
    if not _TURN.fullmatch(raw):
        raise ApiError(404, _("There is no such turn."))
    return int(raw)


def _own_votes(votes: dict[int, tuple[VoteInfo, ...]], user_id: str) -> dict[int, str]:
    """The browser's own current vote on each turn (other voters' stay private to the operator)."""
    return {
        turn_id: vote.vote.value
        for turn_id, entries in votes.items()
        for vote in entries
        if vote.platform == PLATFORM and vote.user_id == user_id
    }


def _owned(session: SessionInfo | None, user_id: str) -> bool:
    """A web session belongs to the browser identity that created it, and to no one else."""
    return (
        session is not None
        and session.platform == PLATFORM
        and session.owner_id == user_id
        and session.thread_key.startswith(f"{user_id}/")
    )
