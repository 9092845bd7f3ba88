"""The engine's decoding loop: prefix reuse, cached picture features, chunked prefill and continuous batching.

Requests join a running batch at the next step boundary (they do not wait for the batch to end).
`model.generate` cannot do that: it owns its batch from the first step to the last and prefills all
rows from the same cache length. So the loop here calls the model's forward itself:

- A request arrives prepared (`engine.prepare`: pictures decoded and normalised, prompt tokenized,
  positions computed, all before it was queued), so the worker only runs the model.
- Its prompt is read alone (batch 1), in chunks: the session's cached sequence is cropped to the
  longest common prefix of token ids (a picture counts as common only if the same picture at the
  same budget sits at the same place), and only the rest is read, at most `chunk_tokens` per turn of
  the loop. Pictures are encoded when their first chunk comes, unless their features were cached; a
  chunk may end inside a picture (it is fed the slice of the picture's features it covers). Positions
  (M-RoPE) are those of the whole prompt, so the model's shared `rope_deltas` is never used.
- How much is read per turn of the loop: with nothing else running, or with several prompts
  waiting for their first token, `chunk_tokens` (a whole prompt at the default: one forward is the
  cheapest way to read it, and the first in line gets its first token soonest); a long prompt read
  to its end ends the turn, so the running answers (its own too) step before the next is read.
  With one prompt waiting while answers stream, it is read in pieces of under a decode step
  (`engine.read_pieces`, `read_in_pieces`) so they keep streaming smoothly, or (pieces off, or a
  video) in chunks sized by time to about `CHUNK_STEPS` decode steps, never fewer than
  `MIN_CHUNK_TOKENS` (on a CPU one forward of a single token costs about a decode step), with the
  vision tower in a turn of its own.
- Several prompts share one forward (`engine.prefill_batch`), and their pictures one vision-tower
  call, where that pays (`_share`): on a GPU, where a forward over several costs little more than
  one; on a CPU only short ones (follow-up questions, small pictures), since there it costs their sum
  and reading long prompts together only holds back the first one's first token.
- Waiting prompts are read in `_reading_order`: those with little left first (a short question is
  not held behind a long prompt), then the oldest (shortest-first alone starved a long prompt while
  slightly shorter ones kept arriving). A cancel or timeout of a request being read takes effect at
  the next chunk boundary (what it read so far goes back to its session's store).
- A finished prompt's KV is left-padded into the batch's cache (or the batch is left-padded to it),
  and every step feeds one token per row with a 2-D attention mask and per-row positions.
- A row leaves when it stops, reaches its limit, is cancelled or times out; its KV (without
  padding) goes back to the session's store, the others continue unchanged.
- Choosing a token cannot fail a neighbour: a row whose logits are not finite, or whose sampling
  fails, ends with an error alone (`engine.sampling`: each row's penalties, seed and `min_tokens`
  act on its own logits); temperatures below `MIN_TEMPERATURE` decode greedily (dividing by 1e-38
  turned logits into inf and NaN). A failure of the model's forward on the batch still fails the
  batch: that is one computation.
- Stop strings: the text that could start one is held back across pieces (`engine.stopping`).

Everything here runs on the engine's single worker thread.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import DynamicCache
from transformers.modeling_outputs import BaseModelOutputWithPooling

from engine.decode import DecodeControl, DecodeResult, ImageBudget, stop_token_ids
from engine.features import FeatureCache, ImageFeatures
from engine.hooks import DecodeHook
from engine.interface import EngineError, GenerationLimits, GenerationRequest
from engine.kvstore import KVEntry, KVStore, SessionKey
from engine.loader import LoadedModel
from engine.pictures import PictureRejected
from engine.prefill_batch import ChunkInput, forward_together
from engine.prompt import (
    Prompt,
    build_prompt,
    model_inputs_view,
    pixels_for,
    rope_positions,
)
from engine.read_pieces import FIRST_VISION_TOKENS, Pending, finish_pending, read_piece
from engine.sampling import (
    MIN_TEMPERATURE,
    BadScores,
    generator_for,
    penalize,
    pick,
    usable,
)
from engine.stopping import StopText
from engine.videos import VideoRejected
from engine.vision_pieces import Encoded

__all__ = ["INTERNAL_MESSAGE", "MIN_TEMPERATURE", "OOM_MESSAGE", "BatchRunner", "Work", "error_for"]

log = logging.getLogger(__name__)

OOM_MESSAGE = "The picture is too large for the GPU's memory right now; please send a smaller or cropped picture."
INTERNAL_MESSAGE = "Something went wrong while answering; please try again."
HALF_BUDGET_NOTE = "The picture was read at reduced resolution because the GPU ran short of memory."
CHUNK_STEPS = 4.0  # while answers run, a prompt chunk takes about this many decode steps' time
FIRST_CHUNK_TOKENS = 128  # while answers run and a chunk's cost is not yet known
SHORT_PROMPT_TOKENS = 256  # a prompt with at most this many tokens left may overtake older ones
MIN_CHUNK_TOKENS = 128  # while answers run: a forward has a fixed cost, smaller chunks cost a newcomer more than they save


@dataclass(eq=False)
class Work:
    """One prepared request handed to the loop, with the callbacks that reach its caller (thread-safe)."""

    request: GenerationRequest
    prompt: Prompt
    control: DecodeControl
    emit: Callable[[str], object]  # what they return is not used
    done: Callable[[DecodeResult | EngineError, str | None], object]


class _Detokenizer:
    """Incremental decoding that holds back an incomplete multi-byte character.

    Decodes only a window: the tokens not yet sent plus the previous piece as context (a token's
    text can depend on its neighbours), so each token costs the same however long the answer is
    (decoding every token from the start made long answers quadratic)."""

    def __init__(self, tokenizer: Any, emit: Callable[[str], None]) -> None:
        self._tokenizer = tokenizer
        self._emit = emit
        self._ids: list[int] = []
        self._context = 0  # the window starts here
        self._sent = 0  # tokens before this were emitted

    def push(self, token: int | None) -> None:
        """The next token, or None at the end (which sends whatever is held back)."""
        if token is not None:
            self._ids.append(token)
        decode = self._tokenizer.decode
        before = decode(self._ids[self._context : self._sent], skip_special_tokens=True)
        text = decode(self._ids[self._context :], skip_special_tokens=True)
        if token is not None and text.endswith("\ufffd"):
            return
        if len(text) > len(before):
            self._emit(text[len(before) :])
            self._context, self._sent = self._sent, len(self._ids)


@dataclass(eq=False)
class _Row:
    work: Work
    prompt: Prompt
    cache: Any | None  # batch-1 cache until the row joins the batch
    next_pos: int
    epoch: int
    detok: _Detokenizer
    stop: StopText  # between the detokenizer and the caller: holds back what may start a stop string
    generator: torch.Generator | None  # the request's own, when it has a seed
    note: str | None
    generated: list[int] = field(default_factory=list)  # the last one is not yet fed to the model
    first_token_at: float | None = None
    finish: str | None = None
    error: EngineError | None = None  # set with finish "error": this row alone failed

    @property
    def rid(self) -> str:
        return self.work.request.request_id

    @property
    def limits(self) -> GenerationLimits:
        return self.work.request.limits


@dataclass(eq=False)
class _Reading:
    """A request whose prompt is being read, chunk by chunk, into its own batch-1 cache."""

    work: Work
    prompt: Prompt
    cache: Any
    done: int  # prompt tokens already in `cache`
    epoch: int
    note: str | None
    retried: bool  # read again at half the pixel budget after running out of memory
    features: dict[int, ImageFeatures]  # by slot index: known features of the pictures still to read
    to_encode: list[int]  # slot indexes whose features are computed when their chunk comes
    pending: Pending | None = None  # work in progress while answers stream (engine.read_pieces)
    cached: int = 0  # prompt tokens that came from the session's cache

    @property
    def rid(self) -> str:
        return self.work.request.request_id


def error_for(exc: BaseException) -> EngineError:
    """The user-facing error for a failure of the decoding loop itself."""
    if isinstance(exc, torch.OutOfMemoryError):
        return EngineError(OOM_MESSAGE, detail="CUDA out of memory")
    return EngineError(INTERNAL_MESSAGE, detail=f"{type(exc).__name__}: {exc}")


class BatchRunner:
    def __init__(
        self,
        loaded: LoadedModel,
        budget: ImageBudget,
        batch_size: int,
        kv: KVStore | None,
        features: FeatureCache | None,
        chunk_tokens: int = 2048,
    ) -> None:
        self.loaded = loaded
        self.budget = budget
        self.batch_size = max(1, batch_size)
        self.chunk_tokens = max(1, chunk_tokens)
        self.kv = kv if kv is not None and kv.enabled else None
        self.features = features if features is not None and features.enabled else None
        self.rows: list[_Row] = []
        self.reading: list[_Reading] = []
        self._cache: Any | None = None
        self._mask: torch.Tensor | None = None  # (rows, cached length): 0 marks left padding
        self._padded = False  # any 0 in the mask; without padding the model needs no mask at all
        # Does a forward over several prompts cost little more than one? On a GPU it does; on a CPU
        # it costs their sum, so reading long prompts together only delays the first in line.
        self._sharing_pays = loaded.device.type != "cpu"
        self._stop_ids = stop_token_ids(loaded)
        self._deepstack = loaded.arch.name == "qwen3_vl"
        self._pad_id = _pad_id(loaded)
        self._step_s: float | None = None  # a decode step's time, smoothed
        self._last_chunk: tuple[int, float] | None = None  # the last prompt chunk's tokens and seconds
        # While answers stream, read a lone newcomer in pieces of under a decode step (engine.read_pieces)?
        self.read_in_pieces = False  # the operator's default is on (VLMBOT_READ_IN_PIECES)
        self._vision_tokens = FIRST_VISION_TOKENS  # tokens of the next vision-tower piece
        self.counters = {
            "prefix_hits": 0,
            "reused_tokens": 0,
            "prefilled_tokens": 0,
            "prefill_chunks": 0,
            "batched_prefills": 0,  # forwards that read several prompts' chunks together
            "encoded_images": 0,
            "encoder_calls": 0,  # vision-tower calls: several prompts' pictures may share one
            "vision_pieces": 0,  # pieces the vision tower ran in while answers streamed
            "worker_prepared_images": 0,  # pictures the worker had to decode itself (see engine.prepare)
        }

    @property
    def active(self) -> int:
        """Requests in the loop: decoding or being read."""
        return len(self.rows) + len(self.reading)

    @property
    def sessions(self) -> set[SessionKey]:
        works = [row.work for row in self.rows] + [reading.work for reading in self.reading]
        return {work.request.session_key for work in works}

    # --- the loop -----------------------------------------------------------------------------

    def run(self, new: list[Work], wake: threading.Event, hooks: Callable[[], DecodeHook | None]) -> None:
        """Admit `new`, then read prompts and decode until a row ends or `wake` asks for a chance to admit more.

        `hooks()` is read before every chunk and step, so a hook set mid-request applies at once.
        """
        with torch.inference_mode():
            for work in new:
                self._admit(work, hooks())
            while self.rows or self.reading:
                if self._drop_stopped():
                    return
                if self.reading:
                    self._read(hooks())
                if self.rows and self._step(hooks()):
                    return
                if wake.is_set():
                    return

    def fail_all(self, error: EngineError) -> None:
        for row in self.rows:
            row.work.done(error, None)
        for reading in self.reading:
            reading.work.done(error, None)
        self.rows, self.reading = [], []
        self._cache = self._mask = None

    # --- reading prompts ----------------------------------------------------------------------

    def _admit(self, work: Work, hook: DecodeHook | None) -> None:
        if work.control.should_stop():
            work.done(DecodeResult(0, 0, "cancelled" if work.control.cancel.is_set() else "timeout", None), None)
            return
        try:
            self.reading.append(self._begin(work, work.prompt, hook, reuse=True, note=None))
        except torch.OutOfMemoryError:
            self._out_of_memory(work, work.prompt, hook, retried=False)
        except Exception as exc:  # one bad request must not take the batch down
            self._failed(work, exc)

    def _begin(self, work: Work, prompt: Prompt, hook: DecodeHook | None, *, reuse: bool, note: str | None) -> _Reading:
        """Take the session's cached prefix and the features at hand; nothing is computed yet."""
        request = work.request
        session = request.session_key
        epoch = self.kv.epoch(session) if self.kv is not None else 0
        entry = self.kv.take(session) if self.kv is not None and reuse else None
        common = self._common_prefix(entry, prompt) if entry is not None else 0
        if entry is not None and common > 0:
            cache = entry.cache
            if common < len(entry.ids):
                cache.crop(common - len(entry.ids))  # crop takes minus the number of tokens to drop
            self.counters["prefix_hits"] += 1
            self.counters["reused_tokens"] += common
        else:
            common = 0
            cache = DynamicCache(config=self.loaded.model.config)
        del entry
        features: dict[int, ImageFeatures] = {}
        to_encode: list[int] = []
        for index, slot in enumerate(prompt.images):
            if slot.start < common:
                continue
            found = prompt.features.get(index)
            if found is None and self.features is not None:
                found = self.features.get(slot.key)
            if found is not None:
                features[index] = found
            else:
                to_encode.append(index)
        for index in to_encode:
            if index not in prompt.pixels:
                self.counters["worker_prepared_images"] += 1
            pixels_for(self.loaded, prompt, index)
        if hook is not None:
            pixel_values = torch.cat([prompt.pixels[i] for i in to_encode]) if to_encode else None
            view = model_inputs_view(prompt, pixel_values, common)
            view["feature_hits"] = len(features)
            hook.on_prefill(request.request_id, view)
        return _Reading(work, prompt, cache, common, epoch, note, note is not None, features, to_encode, cached=common)

    def _chunk_budget(self) -> int:
        """Prompt tokens to read this turn: all `chunk_tokens` when nothing streams, else what should
        take about `CHUNK_STEPS` decode steps, scaled from the last chunk's size and time (at most
        doubling, at least `MIN_CHUNK_TOKENS`)."""
        if not self.rows or len(self.reading) > 1:
            # Nothing streams, or several wait for their first token: each is read whole in turn
            # (one forward is the cheapest way to read a prompt), running answers step in between.
            return self.chunk_tokens
        if self._step_s is None or self._last_chunk is None:
            return min(self.chunk_tokens, FIRST_CHUNK_TOKENS)
        tokens, seconds = self._last_chunk
        fits = int(tokens * CHUNK_STEPS * self._step_s / max(seconds, 1e-9))
        return min(self.chunk_tokens, max(MIN_CHUNK_TOKENS, min(2 * tokens, fits)))

    def _read(self, hook: DecodeHook | None) -> None:
        """Read up to `_chunk_budget()` tokens of the waiting prompts in `_reading_order`. The prompts
        that share the budget are read in one forward (`engine.prefill_batch`), at most `batch_size`."""
        if self.rows and self.read_in_pieces and len(self.reading) == 1 and self._in_pieces(self.reading[0]):
            read_piece(self, hook)
            return
        budget = self._chunk_budget()
        if not self.rows:
            finish_pending(self, self.reading, hook)
            self._encode_waiting()
        while self.reading and budget > 0:
            order = self._reading_order()
            group: list[tuple[_Reading, int]] = []
            for reading in order[: self.batch_size]:
                if reading.pending is not None:  # begun in pieces (a short question before it is read first)
                    if not group and len(self.reading) > 1:  # others wait behind it: finish it now
                        finish_pending(self, [reading], hook)
                    break  # alone again: it goes on in pieces next turn
                end = min(len(reading.prompt.ids), reading.done + budget)
                if group and not self._share([e - r.done for r, e in group] + [end - reading.done]):
                    break  # on a CPU a long prompt is read alone
                if self.rows and self._missing(reading, end):
                    if group:
                        break  # its pictures are encoded in a turn of their own
                    try:
                        self._encode_first(reading, end)
                    except Exception as exc:
                        self._read_failed(reading, exc, hook)
                    return  # encoding was this turn's work: the running answers take their step
                group.append((reading, end))
                budget -= end - reading.done
                if budget <= 0:
                    break
            if not group:
                return  # finishing work begun in pieces was this turn's work
            starts = [reading.done for reading, _ in group]
            if len(group) == 1 or not self._read_together(group, hook):
                for reading, end in group:
                    self._read_alone(reading, end, hook)
            read = [end - start for (_, end), start in zip(group, starts, strict=True)]
            if self.reading and any(end == len(r.prompt.ids) for r, end in group) and not self._share(read):
                return  # a long prompt was read to its end: the answers (its own too) step before the next

    def _share(self, tokens: list[int]) -> bool:
        """May work of these sizes (prompt chunks, pictures; in tokens) share one forward? On a GPU,
        yes: a forward over several costs little more than one. On a CPU it costs their sum, so only
        short ones share (follow-up questions, small pictures: the weights are read once for all);
        a long one would only hold back the first token of the one before it."""
        return self._sharing_pays or all(size <= SHORT_PROMPT_TOKENS for size in tokens)

    def _in_pieces(self, reading: _Reading) -> bool:
        """Is this lone newcomer read in pieces while answers stream? Not a short prompt (a follow-up
        question: read whole, it costs a few steps at most) nor a video's (read in chunks)."""
        new = len(reading.prompt.ids) - reading.cached
        return new > SHORT_PROMPT_TOKENS and not any(slot.video for slot in reading.prompt.images)

    def _reading_order(self) -> list[_Reading]:
        """Prompts with at most `SHORT_PROMPT_TOKENS` left first, the least left first (a
        short question is not held behind a long prompt), then the others oldest first: ordering them
        all by what is left starved a long prompt as long as slightly shorter ones kept arriving (a
        1056-token picture waited 54 s behind newcomers a few tokens shorter)."""
        def key(reading: _Reading) -> tuple[int, int]:
            left = len(reading.prompt.ids) - reading.done
            return (0, left) if left <= SHORT_PROMPT_TOKENS else (1, 0)

        return sorted(self.reading, key=key)  # stable: the oldest first among equals

    def _read_alone(self, reading: _Reading, end: int, hook: DecodeHook | None) -> None:
        try:
            logits = self._chunk(reading, end, hook)
        except Exception as exc:  # the forward of this prompt alone: only this request fails
            self._read_failed(reading, exc, hook)
            return
        self._chunk_read(reading, logits, hook)

    def _read_failed(self, reading: _Reading, exc: Exception, hook: DecodeHook | None) -> None:
        self.reading.remove(reading)
        if isinstance(exc, torch.OutOfMemoryError):
            self._out_of_memory(reading.work, reading.prompt, hook, retried=reading.retried)
        else:
            self._failed(reading.work, exc)

    def _chunk_read(self, reading: _Reading, logits: torch.Tensor, hook: DecodeHook | None) -> None:
        if reading.done == len(reading.prompt.ids):
            self._first_token(reading, logits, hook)
            self.reading.remove(reading)  # after joining: if joining fails, fail_all still sees it

    def _read_together(self, group: list[tuple[_Reading, int]], hook: DecodeHook | None) -> bool:
        """One forward over several prompts' chunks; False (nothing read) if it failed: then each is read alone."""
        try:
            for reading, end in group:
                if hook is not None:
                    hook.on_prefill_chunk(reading.rid, reading.done, end)
                self._encode_first(reading, end)
            rows = [self._chunk_input(reading, end) for reading, end in group]
            began = time.perf_counter()
            caches, logits = forward_together(self.loaded, rows, self._pad_id, self._encoder_outputs)
            if logits.device.type == "cuda":
                torch.cuda.synchronize(logits.device)
        except Exception as exc:  # each prompt then meets its own failure alone
            log.warning("reading %d prompts together failed (%s: %s); one at a time", len(group), type(exc).__name__, exc)
            return False
        tokens = sum(end - reading.done for reading, end in group)
        self._last_chunk = (tokens, time.perf_counter() - began)
        self.counters["prefilled_tokens"] += tokens
        self.counters["prefill_chunks"] += 1
        self.counters["batched_prefills"] += 1
        for (reading, end), cache in zip(group, caches, strict=True):
            reading.cache, reading.done = cache, end
        for index, (reading, _) in enumerate(group):
            self._chunk_read(reading, logits[index : index + 1], hook)
        return True

    def _chunk_input(self, reading: _Reading, end: int) -> ChunkInput:
        prompt, start = reading.prompt, reading.done
        assert prompt.positions is not None
        return ChunkInput(reading.cache, start, prompt.ids[start:end], prompt.positions[:, start:end], self._pieces(reading, end))

    def _pieces(self, reading: _Reading, end: int) -> list[tuple[bool, ImageFeatures]]:
        """The slice of each picture's (or video part's) features that falls inside the chunk [done, end),
        with whether it is a video's."""
        prompt, start = reading.prompt, reading.done
        pieces = []
        for i, slot in enumerate(prompt.images):
            first, last = max(start, slot.start), min(end, slot.start + slot.length)
            if first < last:
                pieces.append((slot.video, reading.features[i].part(first - slot.start, last - slot.start)))
        return pieces

    def _missing(self, reading: _Reading, end: int) -> list[int]:
        """The pictures of [done, end) whose features are not known yet."""
        start = reading.done
        return [
            i
            for i, slot in enumerate(reading.prompt.images)
            if slot.start < end and slot.start + slot.length > start and i not in reading.features
        ]

    def _encode_first(self, reading: _Reading, end: int) -> bool:
        """Encode the pictures of [done, end) whose features are not known yet; True if there were any."""
        missing = self._missing(reading, end)
        if missing:
            self._encode(reading, missing)
        return bool(missing)

    def _chunk(self, reading: _Reading, end: int, hook: DecodeHook | None) -> torch.Tensor:
        """One forward over prompt tokens [done, end); encodes the pictures it covers first if needed."""
        prompt, start = reading.prompt, reading.done
        if hook is not None:
            hook.on_prefill_chunk(reading.rid, start, end)
        self._encode_first(reading, end)
        pieces = self._pieces(reading, end)
        assert prompt.positions is not None
        began = time.perf_counter()
        out = self.loaded.model(
            input_ids=torch.tensor([prompt.ids[start:end]], device=self.loaded.device),
            position_ids=prompt.positions[:, None, start:end].to(self.loaded.device),
            cache=reading.cache,
            use_cache=True,
            logits_to_keep=1,
            mm_encoder_outputs=self._encoder_outputs(pieces),
        )
        logits = out.logits[:, -1, :]
        if logits.device.type == "cuda":
            torch.cuda.synchronize(logits.device)
        self._last_chunk = (end - start, time.perf_counter() - began)
        reading.cache = out.cache
        reading.done = end
        self.counters["prefilled_tokens"] += end - start
        self.counters["prefill_chunks"] += 1
        return logits

    def _encode(self, reading: _Reading, indexes: list[int]) -> None:
        """One vision-encoder call for these pictures of one prompt."""
        self._encode_pictures([(reading, i) for i in indexes])

    def _encode_waiting(self) -> None:
        """With nothing streaming, one vision-encoder call for the pictures of every prompt waiting
        to be read (several newcomers' pictures together); if it fails, each prompt encodes its own."""
        pending = [(r, i) for r in self.reading for i in r.to_encode if i not in r.features]
        if len({id(r) for r, _ in pending}) < 2 or not self._share([r.prompt.images[i].length for r, i in pending]):
            return
        try:
            self._encode_pictures(pending)
        except Exception as exc:  # each prompt then meets its own failure alone, in _chunk
            log.warning("encoding several prompts' pictures together failed (%s); one prompt at a time", exc)

    def _encode_pictures(self, pictures: list[tuple[_Reading, int]]) -> None:
        """One vision-encoder call; the features go to their prompts and the feature cache."""
        device, dtype = self.loaded.device, self.loaded.dtype
        pixel_values = torch.cat([r.prompt.pixels[i] for r, i in pictures])
        grids = torch.tensor([r.prompt.images[i].grid for r, i in pictures], device=device)
        encoded = self.loaded.model.model.get_image_features(pixel_values.to(device, dtype), grids, return_dict=True)
        deep = getattr(encoded, "deepstack_features", None) or []
        self._store_features(pictures, Encoded(tuple(encoded.pooler_output), tuple(tuple(layer) for layer in deep)))

    def _store_features(self, pictures: list[tuple[_Reading, int]], encoded: Encoded) -> None:
        """The features of one vision-encoder run go to their prompts and the feature cache."""
        for position, (reading, index) in enumerate(pictures):
            prompt = reading.prompt
            features = ImageFeatures(
                grid=prompt.images[index].grid,
                # Clones: a split is a view that would keep the whole batch's output alive.
                embeds=encoded.embeds[position].clone(),
                deepstack=tuple(layer[position].clone() for layer in encoded.deepstack),
            )
            reading.features[index] = features
            prompt.pixels.pop(index, None)  # read: the pixels are no longer needed
            if self.features is not None:
                self.features.put(prompt.images[index].key, features)
        self.counters["encoded_images"] += len(pictures)
        self.counters["encoder_calls"] += 1

    def _first_token(self, reading: _Reading, logits: torch.Tensor, hook: DecodeHook | None) -> None:
        prompt = reading.prompt
        assert prompt.positions is not None
        limits = reading.work.request.limits
        stop = StopText(limits.stop, reading.work.emit)
        row = _Row(
            work=reading.work,
            prompt=prompt,
            cache=reading.cache,
            next_pos=int(prompt.positions[:, -1].max()) + 1,
            epoch=reading.epoch,
            detok=_Detokenizer(self.loaded.processor.tokenizer, stop.feed),
            stop=stop,
            generator=generator_for(limits, self.loaded.device),
            note=reading.note,
        )
        reading.cache = None
        try:
            if hook is not None:
                hook.on_step([row.rid])
            self._choose([row], logits, hook)
        except Exception as exc:  # still this request's own computation: it fails alone
            self._failed(reading.work, exc)
            return
        if row.finish is not None:
            self._finish(row)
        else:
            self._join(row)

    def _out_of_memory(self, work: Work, prompt: Prompt, hook: DecodeHook | None, *, retried: bool) -> None:
        """Read the prompt again at half the pixel budget (pictures prepared here), or give up."""
        if self.loaded.device.type == "cuda":
            torch.cuda.empty_cache()
        rid = work.request.request_id
        if retried or not prompt.images:
            log.error("request %s: out of memory, giving up", rid)
            work.done(EngineError(OOM_MESSAGE, detail="CUDA out of memory"), None)
            return
        log.warning("request %s: out of memory; retrying at half the pixel budget", rid)
        try:
            budget = prompt.budget.halved()
            smaller = build_prompt(
                self.loaded, work.request.turns, budget, limits=prompt.limits, tenant=work.request.tenant
            )
            smaller.positions = rope_positions(self.loaded, smaller)
            self.counters["worker_prepared_images"] += len(smaller.pixels)
            self.reading.append(self._begin(work, smaller, hook, reuse=False, note=HALF_BUDGET_NOTE))
        except torch.OutOfMemoryError:
            log.error("request %s: out of memory again, giving up", rid)
            work.done(EngineError(OOM_MESSAGE, detail="CUDA out of memory"), None)
        except Exception as exc:
            self._failed(work, exc)

    def _failed(self, work: Work, exc: Exception) -> None:
        if isinstance(exc, PictureRejected | VideoRejected):  # only when the worker prepared a picture itself
            work.done(EngineError(exc.message, detail=exc.detail), None)
            return
        log.exception("request %s failed while reading the prompt", work.request.request_id, exc_info=exc)
        work.done(EngineError(INTERNAL_MESSAGE, detail=f"{type(exc).__name__}: {exc}"), None)

    @staticmethod
    def _common_prefix(entry: KVEntry, prompt: Prompt) -> int:
        n = min(len(entry.ids), len(prompt.ids))
        if n == 0:
            return 0
        diff = (torch.tensor(entry.ids[:n]) != torch.tensor(prompt.ids[:n])).nonzero()
        common = int(diff[0, 0]) if diff.numel() else n
        # Visual tokens are the same id for every picture: a span is common only for the same picture.
        cached = {(key, start, length) for key, start, length, _ in entry.images}
        for slot in prompt.images:
            if slot.start >= common:
                break
            if (slot.key, slot.start, slot.length) not in cached or slot.start + slot.length > common:
                common = slot.start  # a picture is read whole or not at all
                break
        return max(0, min(common, len(prompt.ids) - 1))  # at least one token is read, for its logits

    def _encoder_outputs(self, pieces: list[tuple[bool, ImageFeatures]]) -> dict[str, Any] | None:
        """The chunk's visual features as the model takes them: pictures as "image", videos as "video"."""
        outputs = {}
        for name, video in (("image", False), ("video", True)):
            features = [f for is_video, f in pieces if is_video is video]
            if features:
                outputs[name] = self._encoder_output(features)
        return outputs or None

    def _encoder_output(self, features: list[ImageFeatures]) -> Any:
        embeds = tuple(f.embeds for f in features)
        if self._deepstack:
            from transformers.models.qwen3_vl.modeling_qwen3_vl import (
                BaseModelOutputWithDeepstackFeatures,
            )

            layers = len(features[0].deepstack)
            deep = [tuple(f.deepstack[j] for f in features) for j in range(layers)]
            # The model takes one tensor per picture (a tuple) where transformers' types say one tensor.
            return BaseModelOutputWithDeepstackFeatures(pooler_output=embeds, deepstack_features=deep)  # type: ignore[arg-type]
        return BaseModelOutputWithPooling(pooler_output=embeds)  # type: ignore[arg-type]

    # --- batch membership ---------------------------------------------------------------------

    def _join(self, row: _Row) -> None:
        cache, row.cache = row.cache, None
        assert cache is not None
        length = cache.get_seq_length()
        device = self.loaded.device
        if self._cache is None or not self.rows:
            self._cache, self._mask = cache, torch.ones(1, length, dtype=torch.long, device=device)
            self._padded = False
            self.rows = [row]
            return
        assert self._mask is not None and self._cache is not None
        width = self._mask.shape[1]
        pairs = []
        for mine, theirs in zip(self._cache.layers, cache.layers, strict=True):
            k, v = _pad_left(mine.keys, length - width), _pad_left(mine.values, length - width)
            k2, v2 = _pad_left(theirs.keys, width - length), _pad_left(theirs.values, width - length)
            pairs.append((torch.cat([k, k2]), torch.cat([v, v2])))
        new_width = max(width, length)
        mask = torch.zeros(len(self.rows) + 1, new_width, dtype=torch.long, device=device)
        mask[:-1, new_width - width :] = self._mask
        mask[-1, new_width - length :] = 1
        self._cache = _cache_of(pairs)
        self._mask = mask
        self._padded = bool((mask == 0).any())
        self.rows.append(row)

    def _drop_stopped(self) -> bool:
        """Remove cancelled and timed-out requests, read or decoding; True if any left."""
        stopped = False
        for reading in list(self.reading):
            control = reading.work.control
            if control.should_stop():
                self.reading.remove(reading)
                self._abandon(reading, "cancelled" if control.cancel.is_set() else "timeout")
                stopped = True
        for row in self.rows:
            control = row.work.control
            if control.should_stop():
                row.finish = "cancelled" if control.cancel.is_set() else "timeout"
                stopped = True
        if any(row.finish is not None for row in self.rows):
            self._leave()
        return stopped

    def _abandon(self, reading: _Reading, reason: str) -> None:
        """A request stopped while its prompt was read: what was read goes back to the session's store."""
        prompt = reading.prompt
        if self.kv is not None and reading.done > 0 and reading.cache is not None:
            images = tuple(
                (slot.key, slot.start, slot.length, slot.grid)
                for slot in prompt.images
                if slot.start + slot.length <= reading.done
            )
            entry = KVEntry(ids=prompt.ids[: reading.done], cache=reading.cache, images=images, epoch=reading.epoch)
            if reading.cache.get_seq_length() == reading.done:
                self.kv.put(reading.work.request.session_key, entry)
        reading.cache = None
        reading.work.done(DecodeResult(len(prompt.ids), 0, reason, None), reading.note)

    def _leave(self) -> None:
        """Finish every row with a `finish` reason; keep the others' cache rows."""
        keep = [i for i, row in enumerate(self.rows) if row.finish is None]
        for i, row in enumerate(self.rows):
            if row.finish is not None:
                self._finish(row, index=i)
        if not keep:
            self.rows, self._cache, self._mask = [], None, None
            return
        assert self._cache is not None and self._mask is not None
        if len(keep) < len(self.rows):
            index = torch.tensor(keep, device=self._mask.device)
            self._cache.batch_select_indices(index)
            self._mask = self._mask[index]
            self.rows = [self.rows[i] for i in keep]
            # Columns that are padding in every remaining row are dead weight.
            first = int(self._mask.any(0).nonzero()[0, 0])
            if first:
                for layer in self._cache.layers:
                    layer.keys = layer.keys[:, :, first:, :]
                    layer.values = layer.values[:, :, first:, :]
                self._mask = self._mask[:, first:]
            self._padded = bool((self._mask == 0).any())

    def _finish(self, row: _Row, index: int | None = None) -> None:
        if row.error is not None:
            row.work.done(row.error, None)  # its cache is not kept: the failure may have been in it
            return
        row.stop.watching = len(row.generated) >= row.limits.min_tokens
        row.detok.push(None)
        if row.stop.found:
            row.finish = "stop"
        row.stop.flush()
        self._store(row, index)
        result = DecodeResult(len(row.prompt.ids), len(row.generated), row.finish or "length", row.first_token_at)
        row.work.done(result, row.note)

    def _store(self, row: _Row, index: int | None) -> None:
        if self.kv is None:
            return
        if index is None:
            cache = row.cache
        else:
            assert self._cache is not None and self._mask is not None
            pad = int((self._mask[index] == 0).sum())
            row_slice = (slice(index, index + 1), slice(None), slice(pad, None))
            cache = _cache_of(
                [(layer.keys[row_slice].clone(), layer.values[row_slice].clone()) for layer in self._cache.layers]
            )
        ids = row.prompt.ids + row.generated[:-1]  # the last token chosen was never fed
        if cache is None or cache.get_seq_length() != len(ids):
            log.warning("request %s: cache length does not match its tokens; not kept", row.rid)
            return
        images = tuple((slot.key, slot.start, slot.length, slot.grid) for slot in row.prompt.images)
        self.kv.put(row.work.request.session_key, KVEntry(ids=ids, cache=cache, images=images, epoch=row.epoch))

    # --- decoding -----------------------------------------------------------------------------

    def _step(self, hook: DecodeHook | None) -> bool:
        """Feed every row its last token and choose the next; True if a row ended."""
        assert self._cache is not None and self._mask is not None
        device = self.loaded.device
        rows = self.rows
        if hook is not None:
            hook.on_step([row.rid for row in rows])
        tokens = torch.tensor([[row.generated[-1]] for row in rows], device=device)
        self._mask = torch.cat([self._mask, torch.ones(len(rows), 1, dtype=torch.long, device=device)], dim=1)
        positions = torch.tensor([row.next_pos for row in rows], device=device).view(1, -1, 1).expand(3, -1, -1)
        began = time.perf_counter()
        out = self.loaded.model(
            input_ids=tokens,
            attention_mask=self._mask if self._padded else None,
            position_ids=positions,
            cache=self._cache,
            use_cache=True,
            logits_to_keep=1,
        )
        self._cache = out.cache
        for row in rows:
            row.next_pos += 1
        logits = out.logits[:, -1, :]
        if logits.device.type == "cuda":
            torch.cuda.synchronize(logits.device)
        took = time.perf_counter() - began
        self._step_s = took if self._step_s is None else 0.7 * self._step_s + 0.3 * took
        self._choose(rows, logits, hook)
        if any(row.finish is not None for row in rows):
            self._leave()
            return True
        return False

    def _choose(self, rows: list[_Row], logits: torch.Tensor, hook: DecodeHook | None) -> None:
        """The next token of every row; a row that cannot have one ends with an error, alone.

        Each row's own fields (penalties, `min_tokens`, seed) act on its own logits only."""
        logits = logits.float()
        if hook is not None:
            hook.on_logits([row.rid for row in rows], logits)
        fine = usable(logits).tolist()
        greedy = logits.argmax(dim=-1).tolist()
        now = time.monotonic()
        hook_ignores_eos = hook is not None and hook.ignore_eos
        for i, row in enumerate(rows):
            limits = row.limits
            try:
                own = logits[i]
                scores = penalize(own, row.generated, limits, self._stop_ids)
                if scores is own:
                    row_fine, row_greedy = fine[i], greedy[i]
                else:
                    row_fine, row_greedy = bool(usable(scores)), int(scores.argmax())
                if not row_fine:
                    raise BadScores("the model's scores for the next token are not finite")
                token = pick(scores, row_greedy, limits, row.generator)
                row.generated.append(token)
                if row.first_token_at is None:
                    row.first_token_at = now
                if token in self._stop_ids and not (hook_ignores_eos or limits.ignore_eos):
                    row.finish = "stop"
                    continue
                row.stop.watching = len(row.generated) >= limits.min_tokens
                row.detok.push(token)
                if row.stop.found:
                    row.finish = "stop"
                    continue
            except Exception as exc:  # this row alone: its neighbours' tokens are already chosen
                log.error("request %s: choosing the next token failed: %s: %s", row.rid, type(exc).__name__, exc)
                row.finish = "error"
                row.error = EngineError(INTERNAL_MESSAGE, detail=f"{type(exc).__name__}: {exc}")
                continue
            if len(row.generated) >= limits.max_new_tokens:
                row.finish = "length"




def _pad_id(loaded: LoadedModel) -> int:
    """A token that pads a row of a batched prompt read: never a picture's token."""
    config = loaded.model.config
    visual = {getattr(config, name, None) for name in ("image_token_id", "video_token_id")}
    tokenizer = loaded.processor.tokenizer
    for candidate in (tokenizer.pad_token_id, tokenizer.eos_token_id, 0, 1):
        if isinstance(candidate, int) and candidate not in visual:
            return candidate
    return 2


def _pad_left(tensor: torch.Tensor, count: int) -> torch.Tensor:
    """(batch, heads, seq, dim) with `count` zero positions in front (none if count <= 0)."""
    if count <= 0:
        return tensor
    pad = tensor.new_zeros(tensor.shape[0], tensor.shape[1], count, tensor.shape[3])
    return torch.cat([pad, tensor], dim=2)


def _cache_of(pairs: list[tuple[torch.Tensor, torch.Tensor]]) -> DynamicCache:
    return DynamicCache(ddp_cache_data=pairs)
