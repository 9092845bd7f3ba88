"""Feedback buttons on a final answer: a `context_actions` block holding `feedback_buttons`, whose
values are `bot.votes.encode_vote` payloads, and the block that shows the answer's text beside them
(a message with blocks shows its blocks, not its `text`). The buttons' labels are in the user's language."""

from __future__ import annotations

from typing import Any

from bot.i18n import _
from bot.transport import AnswerDone
from bot.votes import Vote, encode_vote

__all__ = ["VOTE_ACTION", "answer_blocks", "feedback_block"]

VOTE_ACTION = "vlmbot_vote"  # the action_id a press arrives with (block_actions)
MARKDOWN_BLOCK_LIMIT = 12_000  # a `markdown` block's text (Block Kit reference)


def feedback_block(answer: AnswerDone) -> dict[str, Any]:
    return {
        "type": "context_actions",
        "elements": [{
            "type": "feedback_buttons",
            "action_id": VOTE_ACTION,
            "positive_button": {"text": {"type": "plain_text", "text": _("Helpful")},
                                "value": encode_vote(answer.turn_id, Vote.UP)},
            "negative_button": {"text": {"type": "plain_text", "text": _("Not helpful")},
                                "value": encode_vote(answer.turn_id, Vote.DOWN)},
        }],
    }


def answer_blocks(markdown: str, answer: AnswerDone) -> list[dict[str, Any]]:
    """A posted or updated final answer: its Markdown in a `markdown` block, then the buttons."""
    return [{"type": "markdown", "text": markdown[:MARKDOWN_BLOCK_LIMIT]}, feedback_block(answer)]
