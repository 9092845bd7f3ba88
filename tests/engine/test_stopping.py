"""Stop strings on streamed text: never sent, even when they span pieces; what may start one is held back."""

from __future__ import annotations

from engine.stopping import StopText


def run(stops: list[str], pieces: list[str]) -> tuple[list[str], bool]:
    sent: list[str] = []
    stop = StopText(stops, sent.append)
    for piece in pieces:
        stop.feed(piece)
    stop.flush()
    return sent, stop.found


def test_a_stop_string_split_across_pieces_is_never_sent() -> None:
    sent, found = run(["END"], ["The answer E", "N", "D and more"])
    assert found and "".join(sent) == "The answer "
    assert all("E" not in piece for piece in sent)  # "E" was held back until "N", "D" settled it


def test_text_that_only_looked_like_a_stop_is_sent_in_order() -> None:
    sent, found = run(["END"], ["The E", "Nd", " of it"])
    assert not found and "".join(sent) == "The ENd of it"
    assert sent[0] == "The "  # the "E" waited for the next piece


def test_the_earliest_of_several_stops_wins_and_the_tail_is_flushed_without_one() -> None:
    sent, found = run(["zz", "b"], ["aaa", "bzz"])
    assert found and "".join(sent) == "aaa"
    sent, found = run(["xyz"], ["abc x", "y"])
    assert not found and "".join(sent) == "abc xy"  # the held "xy" goes out at the end


def test_while_not_watching_text_passes_unchecked() -> None:
    sent: list[str] = []
    stop = StopText(["."], sent.append)
    stop.watching = False  # min_tokens not reached
    stop.feed("One.")
    stop.watching = True
    stop.feed(" Two. Three")
    assert stop.found and "".join(sent) == "One. Two"
