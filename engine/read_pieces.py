"""While answers stream, a newcomer's prompt is read in pieces of about one decode step each.

The decoding loop (`engine.batch`) alternates: one piece of reading, one decode step of the running
answers. A piece is either a piece of the vision tower on the newcomer's pictures
(`engine.vision_pieces`: a range of tokens of one phase of one block) or some decoder layers of
one prompt chunk (`engine.prefill_pieces`). A chunk is sized so that one of its layers takes about
`PIECE_STEPS` decode steps; vision pieces are sized by the time the last one took (halved at once
when one ran long, grown slowly). So the longest pause a running answer sees while a picture is
read is about `1 + PIECE_STEPS` decode steps, and the newcomer's prompt costs no more compute than
read in one go (each weight is still read once per chunk).

With nothing streaming the loop reads prompts whole (`engine.batch`); work left half done when the
last answer ends is finished at once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from engine.hooks import DecodeHook
from engine.prefill_pieces import PiecewiseChunk
from engine.vision_pieces import PiecewiseEncoding

if TYPE_CHECKING:
    from engine.batch import BatchRunner, _Reading

log = logging.getLogger(__name__)

__all__ = ["FIRST_VISION_TOKENS", "MIN_PIECE_CHUNK_TOKENS", "PIECE_STEPS", "Pending", "chunk_tokens", "finish_pending", "read_piece"]

PIECE_STEPS = 0.75  # a piece of a newcomer's reading takes about this many decode steps' time
MIN_PIECE_CHUNK_TOKENS = 16
FIRST_VISION_TOKENS = 256


@dataclass(eq=False)
class Pending:
    """A reading's work in progress: its pictures' encoding, or one chunk read layer by layer."""

    encoding: PiecewiseEncoding | None = None
    encoding_for: tuple[int, ...] = ()
    chunk: PiecewiseChunk | None = None
    chunk_end: int = 0
    chunk_seconds: float = 0.0


def chunk_tokens(runner: BatchRunner) -> int:
    """Tokens of the next chunk read layer by layer: one layer of it should take about `PIECE_STEPS` steps."""
    if runner._step_s is None or runner._last_chunk is None:
        return min(runner.chunk_tokens, 128)
    tokens, seconds = runner._last_chunk
    layers = len(runner.loaded.model.model.language_model.layers)
    fits = int(tokens * PIECE_STEPS * layers * runner._step_s / max(seconds, 1e-9))
    return min(runner.chunk_tokens, max(MIN_PIECE_CHUNK_TOKENS, min(2 * tokens, fits)))


def read_piece(runner: BatchRunner, hook: DecodeHook | None) -> None:
    """One piece of work for the first waiting prompt in the loop's order (`BatchRunner._reading_order`)."""
    reading = runner._reading_order()[0]
    try:
        _piece(runner, reading, hook)
    except Exception as exc:  # this prompt's own computation: it fails alone
        reading.pending = None
        runner._read_failed(reading, exc, hook)


def finish_pending(runner: BatchRunner, readings: Sequence[_Reading], hook: DecodeHook | None) -> None:
    """Finish these readings' work in progress at once (nothing streams any more, or others wait too)."""
    for reading in [r for r in readings if r.pending is not None]:
        try:
            while reading.pending is not None:
                _piece(runner, reading, hook, whole=True)
        except Exception as exc:
            reading.pending = None
            runner._read_failed(reading, exc, hook)


def _piece(runner: BatchRunner, reading: _Reading, hook: DecodeHook | None, whole: bool = False) -> None:
    loaded = runner.loaded
    pending = reading.pending
    if pending is None:
        end = min(len(reading.prompt.ids), reading.done + chunk_tokens(runner))
        missing = runner._missing(reading, end)
        pending = reading.pending = Pending()
        if missing:
            pixels = torch.cat([reading.prompt.pixels[i] for i in missing]).to(loaded.device, loaded.dtype)
            grids = torch.tensor([reading.prompt.images[i].grid for i in missing], device=loaded.device)
            pending.encoding, pending.encoding_for = PiecewiseEncoding(loaded.model, pixels, grids), tuple(missing)
        else:
            if hook is not None:
                hook.on_prefill_chunk(reading.rid, reading.done, end)
            prompt = reading.prompt
            assert prompt.positions is not None
            pending.chunk = PiecewiseChunk(
                loaded.model,
                torch.tensor([prompt.ids[reading.done : end]], device=loaded.device),
                prompt.positions[:, None, reading.done : end].to(loaded.device),
                reading.cache,
                runner._pieces(reading, end),
                runner._encoder_outputs,
            )
            pending.chunk_end = end
    began = time.perf_counter()
    if pending.encoding is not None:
        tokens = runner._vision_tokens
        finished = pending.encoding.advance(1 << 30 if whole else tokens)
        _sync(loaded.device)
        took = time.perf_counter() - began
        log.debug("vision piece %d: %d tokens, %.1f ms (step %.1f ms)", pending.encoding.pieces, tokens, took * 1e3,
                  (runner._step_s or 0) * 1e3)
        if not whole:
            _size_vision(runner, took)
        if finished:
            assert pending.encoding.result is not None
            runner._store_features([(reading, i) for i in pending.encoding_for], pending.encoding.result)
            runner.counters["encoder_calls"] += 1
            runner.counters["vision_pieces"] += pending.encoding.pieces
            reading.pending = None
        return
    assert pending.chunk is not None
    finished = pending.chunk.advance(1 << 30 if whole else 1)
    _sync(loaded.device)
    took = time.perf_counter() - began
    pending.chunk_seconds += took
    log.debug("chunk piece of %d tokens: %.1f ms (step %.1f ms)", pending.chunk_end - reading.done, took * 1e3,
              (runner._step_s or 0) * 1e3)
    if not finished:
        return
    assert pending.chunk.logits is not None
    tokens = pending.chunk_end - reading.done
    if not whole:
        runner._last_chunk = (tokens, pending.chunk_seconds)
    reading.done = pending.chunk_end
    reading.pending = None
    runner.counters["prefilled_tokens"] += tokens
    runner.counters["prefill_chunks"] += 1
    runner._chunk_read(reading, pending.chunk.logits, hook)


def _size_vision(runner: BatchRunner, seconds: float) -> None:
    """Halve the vision piece at once when one ran long, grow it slowly when they are short."""
    if runner._step_s is None:
        return
    target = PIECE_STEPS * runner._step_s
    tokens = runner._vision_tokens
    if seconds > target:
        tokens = int(tokens * max(0.25, target / seconds))
    elif seconds < target / 2:
        tokens = int(tokens * 1.25) + 1
    runner._vision_tokens = max(8, min(1 << 16, tokens))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
