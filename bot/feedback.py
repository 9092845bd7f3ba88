"""Who may vote on which answer: the rules behind every platform's thumbs-up/down buttons and /good, /bad.

A vote counts only on a final answer (a `done` turn) of the thread where the button was pressed:
button payloads come back from clients (Telegram callback data and web requests can be forged), so a
turn id alone must not reach other threads' or platforms' answers. A refused turn of another thread
is reported as unknown, not as existing elsewhere.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from bot.store import Store, VoteInfo
from bot.votes import Vote, VoteOutcome, VoteResult

__all__ = ["Feedback", "vote_entries"]

log = logging.getLogger(__name__)


class Feedback:
    def __init__(self, store: Store) -> None:
        self._store = store

    async def record_vote(self, platform: str, thread_key: str, user_id: str, turn_id: int, vote: Vote) -> VoteResult:
        turn = await self._store.get_turn(turn_id)
        session = None if turn is None else await self._store.get_session(turn.session_id)
        if turn is None or session is None or (session.platform, session.thread_key) != (platform, thread_key):
            log.info("%s:%s: user %s voted on turn %s, which is not in this thread", platform, thread_key, user_id, turn_id)
            return VoteResult(VoteOutcome.UNKNOWN_TURN, turn_id)
        if turn.status != "done":
            return VoteResult(VoteOutcome.NOT_AN_ANSWER, turn_id)
        outcome = await self._store.vote(turn_id, platform=platform, user_id=user_id, vote=vote)
        log.info("session %s turn %s: %s vote from %s:%s (%s)", session.id, turn_id, vote, platform, user_id, outcome)
        return VoteResult(outcome, turn_id, vote)

    async def vote_last_answer(self, platform: str, thread_key: str, user_id: str, vote: Vote) -> VoteResult:
        """The vote of /good and /bad: on the last final answer of the thread's active session."""
        sessions = await self._store.list_sessions(platform=platform, thread_key=thread_key, active_only=True, limit=1)
        answers = [t for t in await self._store.turns(sessions[0].id) if t.status == "done"] if sessions else []
        if not answers:
            return VoteResult(VoteOutcome.NO_ANSWER)
        return await self.record_vote(platform, thread_key, user_id, answers[-1].id, vote)


def vote_entries(votes: Sequence[VoteInfo]) -> list[dict[str, str]]:
    """A turn's votes as `/export` and the operator view show them."""
    return [{"user": v.user_id, "vote": v.vote.value, "time": v.voted_at.isoformat()} for v in votes]
