"""The operator's feedback report (`vlmbot feedback`): votes since a time, and each thumbs-down with its context.

A vote counts in the period of its current value: a vote changed from up to down yesterday is one
down vote from yesterday. A down vote lists the pictures of its conversation up to that answer,
since a follow-up question is usually about a picture sent earlier.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from bot.store import Store, TurnInfo
from bot.votes import Vote

__all__ = ["DownVote", "FeedbackReport", "PlatformCount", "feedback_report", "parse_since"]

_RELATIVE = re.compile(r"([0-9]{1,6})\s*([mhdw])")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_since(text: str, now: datetime) -> datetime:
    """'30m', '12h', '7d', '2w' before `now`, or an ISO date or date-time (UTC unless it names a zone)."""
    if match := _RELATIVE.fullmatch(text.strip().lower()):
        try:
            return now - timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
        except OverflowError:
            raise ValueError(f"'{text}' reaches back before the year 1") from None
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(
            f"'{text}' is neither a period (30m, 12h, 7d, 2w) nor an ISO date (2026-11-30, 2026-11-30T08:00)"
        ) from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


@dataclass(frozen=True)
class PlatformCount:
    platform: str
    up: int
    down: int


@dataclass(frozen=True)
class DownVote:
    time: datetime
    platform: str
    user_id: str
    session_id: str
    turn_id: int
    question: str  # what the user sent: the preset command, else the question
    answer: str | None
    image_hashes: tuple[str, ...]  # the conversation's pictures up to this answer


@dataclass(frozen=True)
class FeedbackReport:
    since: datetime
    until: datetime
    platforms: tuple[PlatformCount, ...]  # by platform name
    down_votes: tuple[DownVote, ...]  # oldest first

    @property
    def up(self) -> int:
        return sum(count.up for count in self.platforms)

    @property
    def down(self) -> int:
        return sum(count.down for count in self.platforms)

    def to_json(self) -> dict[str, Any]:
        return {
            "since": self.since.isoformat(),
            "until": self.until.isoformat(),
            "up": self.up,
            "down": self.down,
            "platforms": {count.platform: {"up": count.up, "down": count.down} for count in self.platforms},
            "down_votes": [
                {
                    "time": vote.time.isoformat(),
                    "platform": vote.platform,
                    "user": vote.user_id,
                    "session": vote.session_id,
                    "turn": vote.turn_id,
                    "question": vote.question,
                    "answer": vote.answer,
                    "image_hashes": list(vote.image_hashes),
                }
                for vote in self.down_votes
            ],
        }

    def to_text(self) -> str:
        lines = [f"Feedback from {_when(self.since)} to {_when(self.until)}: {self.up} up, {self.down} down"]
        lines += [f"  {count.platform}: {count.up} up, {count.down} down" for count in self.platforms]
        if self.down_votes:
            lines += ["", f"Down votes ({len(self.down_votes)}):"]
        for vote in self.down_votes:
            lines += [
                "",
                f"- {_when(vote.time)}  {vote.platform}  user {vote.user_id}  session {vote.session_id}  turn {vote.turn_id}",
                f"  Question: {_indented(vote.question)}",
                f"  Answer: {_indented(vote.answer if vote.answer is not None else '(none)')}",
                f"  Pictures: {', '.join(vote.image_hashes) or '(none)'}",
            ]
        return _printable("\n".join(lines))


def _when(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _indented(text: str) -> str:
    return "\n    ".join(text.strip().splitlines()) or "(empty)"


def _printable(text: str) -> str:
    """Users' text with control characters shown as escapes: an ESC in a question must not drive the
    operator's terminal (colours, cursor moves, a changed window title)."""
    return "".join(
        f"\\x{ord(c):02x}" if c != "\n" and unicodedata.category(c) == "Cc" else c for c in text
    )


def _pictures_up_to(turns: Sequence[TurnInfo], turn_id: int) -> tuple[str, ...]:
    seen: dict[str, None] = {}
    for turn in turns:
        if turn.id <= turn_id:
            seen.update(dict.fromkeys(turn.image_hashes))
    return tuple(seen)


async def feedback_report(store: Store, since: datetime, *, now: datetime | None = None) -> FeedbackReport:
    counts = await store.vote_counts(since)
    platforms = sorted({platform for platform, _ in counts})
    sessions: dict[str, list[TurnInfo]] = {}
    down_votes = []
    for vote, turn in await store.votes_since(since, vote=Vote.DOWN):
        if turn.session_id not in sessions:
            sessions[turn.session_id] = await store.turns(turn.session_id)
        down_votes.append(
            DownVote(
                time=vote.voted_at,
                platform=vote.platform,
                user_id=vote.user_id,
                session_id=turn.session_id,
                turn_id=turn.id,
                question=turn.command or turn.user_text,
                answer=turn.answer,
                image_hashes=_pictures_up_to(sessions[turn.session_id], turn.id),
            )
        )
    return FeedbackReport(
        since=since,
        until=now or datetime.now(UTC),
        platforms=tuple(
            PlatformCount(p, counts.get((p, Vote.UP), 0), counts.get((p, Vote.DOWN), 0)) for p in platforms
        ),
        down_votes=tuple(down_votes),
    )
