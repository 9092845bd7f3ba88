"""Vote values: button payloads that survive forging, and one line of wording per outcome."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.votes import Vote, VoteOutcome, VoteResult, decode_vote, encode_vote


@pytest.mark.parametrize("vote", list(Vote))
def test_payload_round_trips_within_telegrams_64_bytes(vote: Vote) -> None:
    payload = encode_vote(9_223_372_036_854_775_807 // 10, vote)
    assert len(payload.encode()) <= 64
    assert decode_vote(payload) == (9_223_372_036_854_775_807 // 10, vote)
    assert decode_vote(encode_vote(1, vote)) == (1, vote)


@pytest.mark.parametrize(
    "payload",
    [
        "",
        "vote:up",
        "vote:up:",
        "vote:up:0",
        "vote:up:-3",
        "vote:up:007",
        "vote:sideways:3",
        "vote:UP:3",
        "vote:up:3 ",
        "vote:up:3\n",
        "vote:up:٣",  # an Arabic-Indic digit: int() would take it
        "vote:up:1" + "0" * 18,  # beyond a 64-bit turn id
        "vote:down:3:extra",
        "up:3",
    ],
)
def test_malformed_payloads_decode_to_none(payload: str) -> None:
    assert decode_vote(payload) is None


@given(st.text(max_size=80))
def test_any_text_decodes_to_none_or_a_valid_vote(payload: str) -> None:
    decoded = decode_vote(payload)
    if decoded is not None:
        turn_id, vote = decoded
        assert turn_id >= 1 and encode_vote(turn_id, vote) == payload


def test_turn_ids_are_positive() -> None:
    with pytest.raises(ValueError):
        encode_vote(0, Vote.UP)


def test_every_outcome_has_its_own_line() -> None:
    results = [
        VoteResult(VoteOutcome.RECORDED, 1, Vote.UP),
        VoteResult(VoteOutcome.RECORDED, 1, Vote.DOWN),
        VoteResult(VoteOutcome.CHANGED, 1, Vote.UP),
        VoteResult(VoteOutcome.CHANGED, 1, Vote.DOWN),
        VoteResult(VoteOutcome.UNCHANGED, 1, Vote.UP),
        VoteResult(VoteOutcome.UNKNOWN_TURN, 1),
        VoteResult(VoteOutcome.NOT_AN_ANSWER, 1),
        VoteResult(VoteOutcome.NO_ANSWER),
    ]
    texts = [result.text for result in results]
    assert len(set(texts)) == len(texts)
    assert all(text and "\n" not in text for text in texts)
    assert "not helpful" in VoteResult(VoteOutcome.CHANGED, 1, Vote.DOWN).text
    assert [r.accepted for r in results] == [True] * 5 + [False] * 3
