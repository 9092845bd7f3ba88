"""The random-weight checkpoints write printable text, so answers stream and time to first token is
defined; one that cannot stop runs every answer to the length asked (the bench size, issue 14)."""

from __future__ import annotations

from pathlib import Path

from engine.interface import GenerationStats, PromptTurn, TextPiece
from engine.tiny import write_tiny_checkpoint
from tests.engine.support import SYSTEM, ask, noisy_picture, started_engine


async def answer_pieces(model: Path, count: int, tokens: int) -> list[tuple[list[str], str, int]]:
    async with started_engine(model, max_pixels=64 * 28 * 28) as engine:
        results: list[tuple[list[str], str, int]] = []
        for i in range(count):
            turns = [SYSTEM, PromptTurn("user", f"What is in picture {i}?", (noisy_picture((96, 64), seed=i),))]
            pieces: list[str] = []
            async for event in engine.generate(ask(f"r{i}", f"s{i}", turns, max_new_tokens=tokens)):
                if isinstance(event, TextPiece):
                    pieces.append(event.text)
                elif isinstance(event, GenerationStats):
                    results.append((pieces, event.finish_reason, event.output_tokens))
        return results


async def test_answers_are_printable_and_stream_token_by_token(tiny_model_dir: Path) -> None:
    for pieces, reason, produced in await answer_pieces(tiny_model_dir, 3, 24):
        text = "".join(pieces)
        assert text and all(" " <= c <= "~" for c in text), text
        # No text held back: every token is a piece at once (the end token, when it comes, is none).
        assert len(pieces) == produced - (reason == "stop")


async def test_a_model_that_cannot_stop_answers_at_the_length_asked(tmp_path: Path) -> None:
    model = write_tiny_checkpoint(tmp_path / "endless", "qwen3_vl", can_stop=False)
    for pieces, reason, produced in await answer_pieces(model, 3, 40):
        assert (reason, produced, len(pieces)) == ("length", 40, 40)
