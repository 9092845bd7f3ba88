"""Feedback values that cross the boundary: a user's vote on an answer, and what became of it.

A platform's thumbs-up/down button carries `encode_vote(turn_id, vote)` as its payload; its handler
decodes the payload with `decode_vote` and calls `Conversations.record_vote`, then shows the
user `VoteResult.text`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import assert_never

from bot.i18n import N_, _

__all__ = ["Vote", "VoteOutcome", "VoteResult", "decode_vote", "encode_vote"]


class Vote(StrEnum):
    UP = "up"
    DOWN = "down"


class VoteOutcome(StrEnum):
    RECORDED = "recorded"  # the user's first vote on the answer
    CHANGED = "changed"  # the user had voted the other way
    UNCHANGED = "unchanged"  # the same vote again (a double click, a redelivered button press)
    UNKNOWN_TURN = "unknown_turn"  # no such answer in this thread of this platform
    NOT_AN_ANSWER = "not_an_answer"  # the turn has no final answer (pending, failed, pictures only, ...)
    NO_ANSWER = "no_answer"  # /good or /bad in a thread that has no answer yet


_WORDS = {Vote.UP: N_("helpful"), Vote.DOWN: N_("not helpful")}


@dataclass(frozen=True)
class VoteResult:
    outcome: VoteOutcome
    turn_id: int | None = None
    vote: Vote | None = None  # the user's vote on the turn now; None when the vote was refused

    @property
    def accepted(self) -> bool:
        return self.outcome in (VoteOutcome.RECORDED, VoteOutcome.CHANGED, VoteOutcome.UNCHANGED)

    @property
    def text(self) -> str:
        """One line for the user (a button's toast, the console's reply), in their language."""
        word = _(_WORDS[self.vote]) if self.vote is not None else ""
        match self.outcome:
            case VoteOutcome.RECORDED if self.vote is Vote.DOWN:
                return _("Thanks - marked as not helpful, so the helpdesk can look at this answer.")
            case VoteOutcome.RECORDED:
                return _("Thanks - marked as helpful.")
            case VoteOutcome.CHANGED:
                return _("Changed your vote: marked as {word}.").format(word=word)
            case VoteOutcome.UNCHANGED:
                return _("You already marked this answer as {word}.").format(word=word)
            case VoteOutcome.UNKNOWN_TURN:
                return _("That answer is not in this conversation, so it cannot take a vote.")
            case VoteOutcome.NOT_AN_ANSWER:
                return _("Only a finished answer can take a vote.")
            case VoteOutcome.NO_ANSWER:
                return _("There is no answer to vote on yet: /good and /bad rate the last answer.")
            case _:
                assert_never(self.outcome)


# "vote:up:123". Telegram allows 64 bytes of callback data, Slack 2,000 characters of button value.
_PAYLOAD = re.compile(r"vote:(up|down):([1-9][0-9]{0,17})")


def encode_vote(turn_id: int, vote: Vote) -> str:
    """The payload of a vote button for the answer of `turn_id`."""
    if turn_id < 1:
        raise ValueError(f"turn ids are positive, not {turn_id}")
    return f"vote:{vote.value}:{turn_id}"


def decode_vote(payload: str) -> tuple[int, Vote] | None:
    """(turn id, vote) from a button's payload; None for anything else (payloads can be forged)."""
    match = _PAYLOAD.fullmatch(payload)
    if match is None:
        return None
    return int(match.group(2)), Vote(match.group(1))
