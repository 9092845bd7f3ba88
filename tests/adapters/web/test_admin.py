"""The operator view shows every turn's votes, from any platform, as /export does."""

from __future__ import annotations

import json
from typing import Any

from bot.messages import Answer, IncomingMessage
from bot.votes import Vote
from tests.adapters.web.conftest import running_web

TOKEN = "admin-token-123456"


async def test_operator_view_and_its_export_list_each_turns_votes(service_factory: Any, browsers: Any) -> None:
    async with service_factory() as service, running_web(service, web_admin_token=TOKEN) as adapter:
        conversations = service.conversations
        turn_ids = []
        for text in ("Why is the printer offline?", "And the red light?"):
            message = IncomingMessage(platform="telegram", thread_key="chat:42", user_id="7", text=text)
            replies = [reply async for reply in conversations.handle(message)]
            assert isinstance(replies[-1], Answer)
            turn_ids.append(replies[-1].turn_id)
        await conversations.record_vote("telegram", "chat:42", "7", turn_ids[1], Vote.UP)
        await conversations.record_vote("telegram", "chat:42", "9", turn_ids[1], Vote.DOWN)

        async with browsers(adapter.url) as operator:
            status, _ = await operator.request("POST", "/api/login", json={"token": TOKEN})
            assert status == 200
            session_id = (await operator.get("/api/admin/sessions"))[1]["sessions"][0]["id"]
            status, detail = await operator.get(f"/api/admin/sessions/{session_id}")
            assert status == 200
            first, second = detail["turns"]
            assert first["feedback"] == []
            assert [(f["user"], f["vote"]) for f in second["feedback"]] == [("7", "up"), ("9", "down")]
            assert all(f["time"].endswith("+00:00") for f in second["feedback"])

            status, raw = await operator.get(f"/api/admin/sessions/{session_id}/export")
            exported = raw if isinstance(raw, dict) else json.loads(raw)
            assert [t["feedback"] for t in exported["turns"]] == [first["feedback"], second["feedback"]]
