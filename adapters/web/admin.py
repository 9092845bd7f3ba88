"""The operator's read-only view of every session (web, Telegram, Slack, console): list, search, read, export."""

from __future__ import annotations

from aiohttp import web

from bot.conversations import Conversations
from bot.feedback import vote_entries
from bot.i18n import N_, _
from bot.store import SessionInfo

from .api import export_response, session_id_param, sha_param
from .bodies import check_text
from .errors import ApiError
from .security import Access
from .stored_files import picture_response
from .views import session_view, turn_view, video_hashes

__all__ = ["AdminApi"]

_PLATFORMS = frozenset({"web", "telegram", "slack", "console"})


class AdminApi:
    def __init__(self, conversations: Conversations, access: Access) -> None:
        self._conversations = conversations
        self._store = conversations.store
        self._access = access

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/api/admin/sessions", self.sessions),
            web.get("/api/admin/sessions/{session}", self.session),
            web.get("/api/admin/sessions/{session}/export", self.export),
            web.get("/api/admin/sessions/{session}/images/{sha}", self.image),
        ]

    async def _require_admin(self, request: web.Request) -> None:
        if self._access.admin_token is None:
            raise ApiError(404, _("The operator view is off; set VLMBOT_WEB_ADMIN_TOKEN to turn it on."))
        if not (await self._access.caller(request)).admin:
            raise ApiError(401, _("The operator view needs the admin token."))

    async def _session(self, request: web.Request) -> SessionInfo:
        await self._require_admin(request)
        session = await self._store.get_session(session_id_param(request))
        if session is None:
            raise ApiError(404, _("There is no such session."))
        return session

    async def sessions(self, request: web.Request) -> web.Response:
        await self._require_admin(request)
        search = check_text(request.query.get("search", ""), N_("The search")).strip()[:200] or None
        platform = request.query.get("platform", "").strip() or None
        if platform is not None and platform not in _PLATFORMS:
            raise ApiError(
                400,
                _("Unknown platform '{name}'; use one of {names}.").format(name=platform[:40], names=", ".join(sorted(_PLATFORMS))),
            )
        sessions = await self._store.list_sessions(platform=platform, search=search, limit=200)
        firsts = await self._store.first_questions([s.id for s in sessions])
        return web.json_response(
            {"sessions": [session_view(s, firsts.get(s.id)) | {"owner": s.owner_id} for s in sessions]}
        )

    async def session(self, request: web.Request) -> web.Response:
        session = await self._session(request)
        turns = await self._store.turns(session.id)  # all of them, removed ones marked by in_context
        first = next((t.user_text for t in turns if t.user_text), None)
        votes = await self._store.votes_in_session(session.id)
        videos = await video_hashes(self._store, self._conversations.pictures, turns)
        return web.json_response(
            {
                "session": session_view(session, first) | {"owner": session.owner_id},
                "turns": [
                    turn_view(t, videos) | {"user": t.user_id, "feedback": vote_entries(votes.get(t.id, ()))} for t in turns
                ],
                "read_only": True,
            }
        )

    async def export(self, request: web.Request) -> web.Response:
        session = await self._session(request)
        return export_response(session, await self._conversations.export_session(session.id))

    async def image(self, request: web.Request) -> web.StreamResponse:
        session = await self._session(request)
        return await picture_response(request, self._conversations, session.id, sha_param(request))
