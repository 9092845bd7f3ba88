"""Votes on answers through the real conversation service: one per user and answer, only on final
answers of the thread where the button was pressed; /good and /bad; votes in /export."""

from __future__ import annotations

import json
from typing import Any

from bot.commands import help_text
from bot.messages import Answer, Attachment, Document, IncomingMessage, Text
from bot.votes import Vote, VoteOutcome, VoteResult
from tests.conftest import picture_bytes


async def send(service: Any, text: str, *, platform: str = "telegram", thread: str = "chat:1", user: str = "7",
               picture: bytes | None = None) -> list[Any]:
    attachments = () if picture is None else (Attachment(picture, "p.png", "image/png"),)
    message = IncomingMessage(platform, thread, user, text, attachments)
    return [reply async for reply in service.conversations.handle(message)]


async def answer_id(service: Any, text: str, **where: Any) -> int:
    replies = await send(service, text, **where)
    assert isinstance(replies[-1], Answer), replies
    return replies[-1].turn_id


async def exported_feedback(service: Any, **where: Any) -> dict[int, list[dict[str, str]]]:
    document = (await send(service, "/export", **where))[-1]
    assert isinstance(document, Document)
    return {turn["id"]: turn["feedback"] for turn in json.loads(document.data)["turns"]}


async def test_one_vote_per_user_and_answer_that_can_change(service_factory: Any) -> None:
    async with service_factory() as service:
        vote = service.conversations.record_vote
        turn = await answer_id(service, "What does the error say?", picture=picture_bytes())
        assert await vote("telegram", "chat:1", "7", turn, Vote.UP) == VoteResult(VoteOutcome.RECORDED, turn, Vote.UP)
        assert await vote("telegram", "chat:1", "7", turn, Vote.UP) == VoteResult(VoteOutcome.UNCHANGED, turn, Vote.UP)
        assert await vote("telegram", "chat:1", "7", turn, Vote.DOWN) == VoteResult(VoteOutcome.CHANGED, turn, Vote.DOWN)
        # Another member of the group chat votes on the same answer.
        assert (await vote("telegram", "chat:1", "8", turn, Vote.UP)).outcome is VoteOutcome.RECORDED

        feedback = (await exported_feedback(service))[turn]
        assert [(f["user"], f["vote"]) for f in feedback] == [("7", "down"), ("8", "up")]
        votes = (await service.store.votes_in_session((await service.store.get_turn(turn)).session_id))[turn]
        first, = [v for v in votes if v.user_id == "7"]
        assert first.created_at <= first.voted_at and feedback[0]["time"] == first.voted_at.isoformat()


async def test_votes_outside_the_thread_or_on_no_final_answer_are_refused(service_factory: Any) -> None:
    async with service_factory() as service:
        vote = service.conversations.record_vote
        turn = await answer_id(service, "What is this?", picture=picture_bytes())
        # Payloads come back from clients: a turn id of another thread or platform is unknown there.
        for platform, thread, turn_id in (
            ("slack", "chat:1", turn),
            ("telegram", "chat:2", turn),
            ("telegram", "chat:1/topic:5", turn),
            ("telegram", "chat:1", turn + 1000),
        ):
            result = await vote(platform, thread, "7", turn_id, Vote.DOWN)
            assert result == VoteResult(VoteOutcome.UNKNOWN_TURN, turn_id) and not result.accepted

        await send(service, "", picture=picture_bytes(color=(0, 0, 200)))  # pictures only: no answer
        session = await service.store.active_session("telegram", "chat:1")
        attached = (await service.store.turns(session.id))[-1]
        assert attached.status == "attached"
        failed = await service.store.add_turn(session.id, user_id="7", text="q", image_hashes=[])
        assert (await vote("telegram", "chat:1", "7", failed.id, Vote.UP)).outcome is VoteOutcome.NOT_AN_ANSWER
        await service.store.finish_turn(failed.id, status="failed", error="engine down")
        for turn_id in (attached.id, failed.id):
            assert (await vote("telegram", "chat:1", "7", turn_id, Vote.UP)).outcome is VoteOutcome.NOT_AN_ANSWER
        assert await service.store.votes_in_session(session.id) == {}


async def test_an_answer_of_a_cleared_conversation_still_takes_its_buttons_vote(service_factory: Any) -> None:
    async with service_factory() as service:
        turn = await answer_id(service, "Old question", platform="slack", thread="C1/1700.1", user="U1")
        await send(service, "/clear", platform="slack", thread="C1/1700.1", user="U1")
        result = await service.conversations.record_vote("slack", "C1/1700.1", "U1", turn, Vote.DOWN)
        assert result.outcome is VoteOutcome.RECORDED


async def test_good_and_bad_vote_on_the_threads_last_answer(service_factory: Any) -> None:
    async with service_factory() as service:
        console = {"platform": "console", "thread": "main", "user": "local"}
        none_yet = await send(service, "/good", **console)
        assert none_yet == [Text(VoteResult(VoteOutcome.NO_ANSWER).text, kind="error")]

        first = await answer_id(service, "First question", picture=picture_bytes(), **console)
        second = await answer_id(service, "Second question", **console)
        await send(service, "", picture=picture_bytes(color=(0, 200, 0)), **console)  # pictures after the answer
        assert await send(service, "/bad", **console) == [Text(VoteResult(VoteOutcome.RECORDED, second, Vote.DOWN).text)]
        assert await send(service, "/good", **console) == [Text(VoteResult(VoteOutcome.CHANGED, second, Vote.UP).text)]
        assert await send(service, "/GOOD", **console) == [Text(VoteResult(VoteOutcome.UNCHANGED, second, Vote.UP).text)]
        feedback = await exported_feedback(service, **console)
        assert feedback[first] == [] and [f["vote"] for f in feedback[second]] == ["up"]

        await send(service, "/clear", **console)
        assert (await send(service, "/bad", **console))[-1].kind == "error"  # a new conversation has no answer


def test_help_lists_good_and_bad() -> None:
    text = help_text()
    assert "/good - Mark the last answer as helpful" in text
    assert "/bad - Mark the last answer as not helpful" in text


async def test_votes_are_counted_in_metrics_and_erased_with_their_user(service_factory: Any) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    def counted(service: Any) -> dict[str, float]:
        families = text_string_to_metric_families(service.conversations.metrics.render().decode())
        return {s.labels["vote"]: s.value for f in families for s in f.samples if s.name == "vlmbot_feedback_votes_total"}

    async with service_factory() as service:
        vote = service.conversations.record_vote
        turn = await answer_id(service, "What is this?", picture=picture_bytes())
        await vote("telegram", "chat:1", "7", turn, Vote.UP)
        await vote("telegram", "chat:1", "7", turn, Vote.UP)  # unchanged: not counted again
        await vote("telegram", "chat:1", "8", turn, Vote.DOWN)
        assert counted(service) == {"up": 1.0, "down": 1.0}

        # User 8 erases what they sent: their vote on user 7's answer goes too; user 7's stays.
        assert "/forget confirm" in (await send(service, "/forget", user="8"))[-1].text
        await send(service, "/forget confirm", user="8")
        votes = (await service.store.votes_in_session((await service.store.get_turn(turn)).session_id))[turn]
        assert [(v.user_id, v.vote) for v in votes] == [("7", Vote.UP)]
