"""The operator's feedback report on real answers: counts per platform, each down vote with its context."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from bot.feedback_report import feedback_report, parse_since
from bot.votes import Vote
from tests.bot.test_feedback import answer_id, send
from tests.conftest import picture_bytes

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30m", NOW - timedelta(minutes=30)),
        ("12h", NOW - timedelta(hours=12)),
        ("7d", NOW - timedelta(days=7)),
        (" 2W ", NOW - timedelta(weeks=2)),
        ("0d", NOW),
        ("2026-11-30", datetime(2026, 11, 30, tzinfo=UTC)),
        ("2026-11-30T08:15", datetime(2026, 11, 30, 8, 15, tzinfo=UTC)),
        ("2026-11-30T08:15Z", datetime(2026, 11, 30, 8, 15, tzinfo=UTC)),
        ("2026-11-30T10:15+02:00", datetime(2026, 11, 30, 10, 15, tzinfo=timezone(timedelta(hours=2)))),
    ],
)
def test_since_takes_periods_and_iso_dates(text: str, expected: datetime) -> None:
    assert parse_since(text, NOW) == expected


@pytest.mark.parametrize("text", ["", "7", "d", "yesterday", "7y", "-7d", "1.5h", "2026-13-01", "999999w"])
def test_since_refuses_anything_else_in_one_line(text: str) -> None:
    with pytest.raises(ValueError) as error:
        parse_since(text, NOW)
    assert "\n" not in str(error.value) and str(error.value)


async def make_feedback(service: Any) -> dict[str, int]:
    """Answers on two platforms with up and down votes; the turn ids by name."""
    vote = service.conversations.record_vote
    await send(service, "", picture=picture_bytes(color=(200, 0, 0)))  # the picture, then its questions
    first = await answer_id(service, "What does the error say?")
    follow_up = await answer_id(service, "And how do I fix it?")
    await vote("telegram", "chat:1", "7", first, Vote.UP)
    await vote("telegram", "chat:1", "8", first, Vote.UP)
    await vote("telegram", "chat:1", "7", follow_up, Vote.UP)
    await vote("telegram", "chat:1", "7", follow_up, Vote.DOWN)  # changed its mind: one down vote
    hostile = await answer_id(
        service, "Read this \x1b]0;pwned\x07\x1b[2J please", platform="slack", thread="C1/1700.1", user="U1",
        picture=picture_bytes(color=(0, 0, 200)),
    )
    await vote("slack", "C1/1700.1", "U1", hostile, Vote.DOWN)
    return {"first": first, "follow_up": follow_up, "hostile": hostile}


async def test_report_counts_current_votes_and_shows_each_down_vote(service_factory: Any) -> None:
    async with service_factory() as service:
        since = datetime.now(UTC) - timedelta(minutes=5)
        turns = await make_feedback(service)
        report = await feedback_report(service.store, since)
        assert (report.up, report.down) == (2, 2)
        assert [(c.platform, c.up, c.down) for c in report.platforms] == [("slack", 0, 1), ("telegram", 2, 1)]
        follow_up, hostile = report.down_votes
        red = (await service.store.turns((await service.store.get_turn(turns["first"])).session_id))[0].image_hashes
        assert (follow_up.turn_id, follow_up.platform, follow_up.user_id) == (turns["follow_up"], "telegram", "7")
        assert follow_up.question == "And how do I fix it?" and follow_up.image_hashes == red  # sent two turns before
        assert follow_up.answer == (await service.store.get_turn(turns["follow_up"])).answer
        assert hostile.turn_id == turns["hostile"] and len(hostile.image_hashes) == 1

        data = report.to_json()
        assert (data["up"], data["down"]) == (2, 2)
        assert data["platforms"] == {"slack": {"up": 0, "down": 1}, "telegram": {"up": 2, "down": 1}}
        assert data["down_votes"][1]["question"] == "Read this \x1b]0;pwned\x07\x1b[2J please"

        text = report.to_text()
        assert "2 up, 2 down" in text and "telegram: 2 up, 1 down" in text
        assert "Question: And how do I fix it?" in text and f"Pictures: {red[0]}" in text
        # The user's escape sequences are shown, not run by the operator's terminal.
        assert "\x1b" not in text and "\x07" not in text
        assert "Read this \\x1b]0;pwned\\x07\\x1b[2J please" in text

        later = await feedback_report(service.store, datetime.now(UTC) + timedelta(minutes=1))
        assert (later.up, later.down, later.down_votes) == (0, 0, ())
        assert later.to_text().endswith(": 0 up, 0 down")
