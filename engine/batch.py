"""The engine's decoding loop: prefix reuse, cached picture features and continuous batching.

Requests join a running batch at the next step boundary (they do not wait for the batch to end).
`model.generate` cannot do that: it owns its batch from the first step to the last and prefills all
rows from the same cache length. So the loop here calls the model's forward itself:

- A new request is prefilled alone (batch 1): the session's cached sequence is cropped to the
  longest common prefix of token ids (a picture counts as common only if the same picture at the
  same budget sits at the same place), and only the rest is read, with features of new pictures
  taken from the feature cache or computed once. Positions (M-RoPE) are computed for the whole
  prompt from its own ids and grids and passed in, so the model's shared `rope_deltas` is never used.
- Its KV is then left-padded into the batch's cache (or the batch is left-padded to it), and every
  step feeds one token per row with a 2-D attention mask and per-row positions.
- A row leaves when it stops, reaches its limit, is cancelled or times out; its KV (without
  padding) goes back to the session's store, the others continue unchanged.

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
from engine.kvstore import KVEntry, KVStore
from engine.loader import LoadedModel
from engine.prompt import Prompt, build_prompt, model_inputs_view, pixels_for, rope_positions

__all__ = ["BatchRunner", "INTERNAL_MESSAGE", "OOM_MESSAGE", "Work", "error_for"]

log = logging.getLogger(__name__)

OOM_MESSAGE = "The picture is too large for the GPU's memory right now; please send a smaller or cropped picture."
INTERNAL_MESSAGE = "Something went wrong while answering; please try again."
HALF_BUDGET_NOTE = "The picture was read at reduced resolution because the GPU ran short of memory."


@dataclass(eq=False)
class Work:
    """One request handed to the loop, with the callbacks that reach its caller (thread-safe)."""

    request: GenerationRequest
    control: DecodeControl
    emit: Callable[[str], None]
    done: Callable[[DecodeResult | EngineError, str | None], None]


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
    note: str | None
    generated: list[int] = field(default_factory=list)  # the last one is not yet fed to the model
    first_token_at: float | None = None
    finish: str | None = None

    @property
    def rid(self) -> str:
        return self.work.request.request_id

    @property
    def limits(self) -> GenerationLimits:
        return self.work.request.limits


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
    ) -> None:
        self.loaded = loaded
        self.budget = budget
        self.batch_size = max(1, batch_size)
        self.kv = kv if kv is not None and kv.enabled else None
        self.features = features if features is not None and features.enabled else None
        self.rows: list[_Row] = []
        self._cache: Any | None = None
        self._mask: torch.Tensor | None = None  # (rows, cached length): 0 marks left padding
        self._padded = False  # any 0 in the mask; without padding the model needs no mask at all
        self._stop_ids = stop_token_ids(loaded)
        self._deepstack = loaded.arch.name == "qwen3_vl"
        self.counters = {"prefix_hits": 0, "reused_tokens": 0, "prefilled_tokens": 0, "encoded_images": 0}

    @property
    def sessions(self) -> set[str]:
        return {row.work.request.session_id for row in self.rows}

    # --- the loop -----------------------------------------------------------------------------

    def run(self, new: list[Work], wake: threading.Event, hooks: Callable[[], DecodeHook | None]) -> None:
        """Admit `new`, then decode until a row ends or `wake` asks for a chance to admit more.

        `hooks()` is read before every prefill and step, so a hook set mid-request applies at once.
        """
        with torch.inference_mode():
            for index, work in enumerate(new):
                try:
                    row = self._start(work, hooks())
                    if row is None:
                        continue
                    if row.finish is not None:
                        self._finish(row)
                    else:
                        self._join(row)
                except Exception as exc:
                    # Joining the batch failed (e.g. out of memory growing its cache): the caller fails
                    # the rows already running; the ones not yet in must not wait for their timeout.
                    admitted = {id(row.work) for row in self.rows}
                    error = error_for(exc)
                    for waiting in new[index:]:
                        if id(waiting) not in admitted:
                            waiting.done(error, None)
                    raise
            while self.rows:
                if self._drop_stopped():
                    return
                if not self.rows:
                    return
                if self._step(hooks()) or wake.is_set():
                    return

    def fail_all(self, error: EngineError) -> None:
        for row in self.rows:
            row.work.done(error, None)
        self.rows = []
        self._cache = self._mask = None

    # --- prefill ------------------------------------------------------------------------------

    def _start(self, work: Work, hook: DecodeHook | None) -> _Row | None:
        if work.control.should_stop():
            work.done(DecodeResult(0, 0, "cancelled" if work.control.cancel.is_set() else "timeout", None), None)
            return None
        budget, note = self.budget, None
        for attempt in range(2):
            try:
                return self._prefill(work, budget, note, hook, reuse=attempt == 0)
            except torch.OutOfMemoryError:
                if self.loaded.device.type == "cuda":
                    torch.cuda.empty_cache()
                has_images = any(turn.images for turn in work.request.turns)
                if attempt == 1 or not has_images:
                    log.error("request %s: out of memory, giving up", work.request.request_id)
                    work.done(EngineError(OOM_MESSAGE, detail="CUDA out of memory"), None)
                    return None
                log.warning("request %s: out of memory; retrying at half the pixel budget", work.request.request_id)
                budget, note = budget.halved(), HALF_BUDGET_NOTE
            except Exception as exc:  # one bad request must not take the batch down
                log.exception("request %s failed while reading the prompt", work.request.request_id)
                work.done(EngineError(INTERNAL_MESSAGE, detail=f"{type(exc).__name__}: {exc}"), None)
                return None
        return None

    def _prefill(
        self, work: Work, budget: ImageBudget, note: str | None, hook: DecodeHook | None, reuse: bool
    ) -> _Row:
        request = work.request
        loaded = self.loaded
        session = request.session_id
        epoch = self.kv.epoch(session) if self.kv is not None else 0
        entry = self.kv.take(session) if self.kv is not None and reuse else None

        spans = entry.images if entry is not None else ()
        grids = {key: grid for key, _, _, grid in spans}

        def known_grid(key: Any) -> tuple[int, int, int] | None:
            if key in grids:
                return grids[key]
            return self.features.grid(key) if self.features is not None else None

        prompt = build_prompt(loaded, request.turns, budget, known_grid)
        common = self._common_prefix(entry, prompt) if entry is not None else 0
        if entry is not None and common > 0:
            cache = entry.cache
            if common < len(entry.ids):
                cache.crop(common - len(entry.ids))  # crop takes minus the number of tokens to drop
            self.counters["prefix_hits"] += 1
            self.counters["reused_tokens"] += common
        else:
            common = 0
            cache = DynamicCache(config=loaded.model.config)
        del entry
        positions = rope_positions(loaded, prompt)
        features, pixel_values, hits = self._features(prompt, common, budget)
        if hook is not None:
            view = model_inputs_view(prompt, pixel_values, common)
            view["feature_hits"] = hits
            hook.on_prefill(request.request_id, view)
        device = loaded.device
        suffix = torch.tensor([prompt.ids[common:]], device=device)
        out = loaded.model(
            input_ids=suffix,
            position_ids=positions[:, None, common:].to(device),
            cache=cache,
            use_cache=True,
            logits_to_keep=1,
            mm_encoder_outputs=self._encoder_outputs(features),
        )
        self.counters["prefilled_tokens"] += len(prompt.ids) - common
        row = _Row(
            work=work,
            prompt=prompt,
            cache=out.cache,
            next_pos=int(positions[:, -1].max()) + 1,
            epoch=epoch,
            detok=_Detokenizer(loaded.processor.tokenizer, work.emit),
            note=note,
        )
        if hook is not None:
            hook.on_step([row.rid])
        self._choose([row], out.logits[:, -1, :], hook)
        return row

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
            if (slot.key, slot.start, slot.length) not in cached:
                common = slot.start
                break
        return max(0, min(common, len(prompt.ids) - 1))  # at least one token is read, for its logits

    def _features(
        self, prompt: Prompt, common: int, budget: ImageBudget
    ) -> tuple[list[ImageFeatures], torch.Tensor | None, int]:
        """Features of the pictures after the reused prefix: cached ones, then one encoder call for the rest."""
        needed = [index for index, slot in enumerate(prompt.images) if slot.start >= common]
        found: dict[int, ImageFeatures] = {}
        for index in needed:
            cached = self.features.get(prompt.images[index].key) if self.features is not None else None
            if cached is not None:
                found[index] = cached
        hits = len(found)
        missing = [index for index in needed if index not in found]
        pixel_values = None
        if missing:
            device, dtype = self.loaded.device, self.loaded.dtype
            pixel_values = torch.cat([pixels_for(self.loaded, prompt, i, budget) for i in missing])
            grids = torch.tensor([prompt.images[i].grid for i in missing], device=device)
            encoded = self.loaded.model.model.get_image_features(
                pixel_values.to(device, dtype), grids, return_dict=True
            )
            deep = getattr(encoded, "deepstack_features", None) or []
            for position, index in enumerate(missing):
                features = ImageFeatures(
                    grid=prompt.images[index].grid,
                    # Clones: a split is a view that would keep the whole batch's output alive.
                    embeds=encoded.pooler_output[position].clone(),
                    deepstack=tuple(layer[position].clone() for layer in deep),
                )
                found[index] = features
                if self.features is not None:
                    self.features.put(prompt.images[index].key, features)
            self.counters["encoded_images"] += len(missing)
        return [found[i] for i in needed], pixel_values, hits

    def _encoder_outputs(self, features: list[ImageFeatures]) -> dict[str, Any] | None:
        if not features:
            return None
        embeds = tuple(f.embeds for f in features)
        if self._deepstack:
            from transformers.models.qwen3_vl.modeling_qwen3_vl import BaseModelOutputWithDeepstackFeatures

            layers = len(features[0].deepstack)
            deep = [tuple(f.deepstack[j] for f in features) for j in range(layers)]
            return {"image": BaseModelOutputWithDeepstackFeatures(pooler_output=embeds, deepstack_features=deep)}
        return {"image": BaseModelOutputWithPooling(pooler_output=embeds)}

    # --- batch membership ---------------------------------------------------------------------

    def _join(self, row: _Row) -> None:
        cache, row.cache = row.cache, None
        length = cache.get_seq_length()
        device = self.loaded.device
        if self._cache is None or not self.rows:
            self._cache, self._mask = cache, torch.ones(1, length, dtype=torch.long, device=device)
            self._padded = False
            self.rows = [row]
            return
        assert self._mask is not None
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
        """Remove cancelled and timed-out rows; True if any left."""
        stopped = False
        for row in self.rows:
            control = row.work.control
            if control.should_stop():
                row.finish = "cancelled" if control.cancel.is_set() else "timeout"
                stopped = True
        if stopped:
            self._leave()
        return stopped

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
        row.detok.push(None)
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
        self.kv.put(row.work.request.session_id, KVEntry(ids=ids, cache=cache, images=images, epoch=row.epoch))

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
        self._choose(rows, out.logits[:, -1, :], hook)
        if any(row.finish is not None for row in rows):
            self._leave()
            return True
        return False

    def _choose(self, rows: list[_Row], logits: torch.Tensor, hook: DecodeHook | None) -> None:
        logits = logits.float()
        if hook is not None:
            hook.on_logits([row.rid for row in rows], logits)
        chosen = logits.argmax(dim=-1).tolist()
        for i, row in enumerate(rows):
            if row.limits.temperature > 0:
                chosen[i] = _sample(logits[i], row.limits.temperature, row.limits.top_p)
        now = time.monotonic()
        ignore_eos = hook is not None and hook.ignore_eos
        for row, token in zip(rows, chosen, strict=True):
            row.generated.append(token)
            if row.first_token_at is None:
                row.first_token_at = now
            if token in self._stop_ids and not ignore_eos:
                row.finish = "stop"
                continue
            row.detok.push(token)
            if len(row.generated) >= row.limits.max_new_tokens:
                row.finish = "length"


def _sample(logits: torch.Tensor, temperature: float, top_p: float) -> int:
    probs = torch.softmax(logits / temperature, dim=-1)
    if top_p < 1.0:
        sorted_probs, order = probs.sort(descending=True)
        outside = sorted_probs.cumsum(-1) - sorted_probs > top_p  # keep the smallest set reaching top_p
        sorted_probs[outside] = 0
        return int(order[torch.multinomial(sorted_probs, 1)])
    return int(torch.multinomial(probs, 1))


def _pad_left(tensor: torch.Tensor, count: int) -> torch.Tensor:
    """(batch, heads, seq, dim) with `count` zero positions in front (none if count <= 0)."""
    if count <= 0:
        return tensor
    pad = tensor.new_zeros(tensor.shape[0], tensor.shape[1], count, tensor.shape[3])
    return torch.cat([pad, tensor], dim=2)


def _cache_of(pairs: list[tuple[torch.Tensor, torch.Tensor]]) -> DynamicCache:
    return DynamicCache(ddp_cache_data=pairs)
