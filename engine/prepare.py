"""Getting a request ready before it is queued, so the GPU worker only runs the model.

Every picture the engine has to read is checked (`engine.pictures`: size, format allowlist, pixels,
aspect), decoded, turned upright, resized to the pixel budget and normalised; then the prompt is
tokenized, its M-RoPE positions computed and its length checked against the model's context. All of
it runs in a small pool of threads (`workers`), which also caps how many pictures are decoded at
once, and a request joins the queue only when it is ready. A picture is refused with
`EngineRejected`, before the worker ever sees the request.

A picture is not decoded again when its features are already known: held from the feature cache
(taken now, so an eviction while the request waits changes nothing), or inside the session's cached
conversation (its grid is in the KV entry). A video is decoded and sampled here too (`engine.video_prompt`),
unless its plan is remembered and every frame pair's features are at hand the same way. Only if that entry is gone by the time the request
starts does the worker prepare the picture itself (`BatchRunner.counters["worker_prepared_images"]`).
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from engine import prompt as prompts
from engine.decode import ImageBudget
from engine.features import FeatureCache, ImageFeatures, ImageKey
from engine.interface import EngineRejected, GenerationRequest, PromptImage
from engine.loader import LoadedModel
from engine.pictures import PictureLimits, PictureProblem, PictureRejected
from engine.prompt import Grid, Prompt
from engine.video_prompt import VideoPlan, slot_key
from engine.videos import VideoProblem, VideoRejected

__all__ = ["Preparer", "context_limit"]

log = logging.getLogger(__name__)

_TOO_LARGE = {PictureProblem.TOO_MANY_BYTES, PictureProblem.TOO_MANY_PIXELS}
_PLANS = 1024  # videos whose plan (grids, times) is remembered


def context_limit(loaded: LoadedModel) -> int | None:
    """The model's context length in tokens, from its configuration."""
    value = getattr(loaded.model.config.get_text_config(), "max_position_embeddings", None)
    return int(value) if isinstance(value, int) and value > 0 else None


def rejected_video(exc: VideoRejected) -> EngineRejected:
    code = "video_too_large" if exc.problem in (VideoProblem.TOO_LONG, VideoProblem.TOO_MANY_BYTES) else "invalid_video"
    return EngineRejected(exc.message, code=code, detail=exc.detail or exc.message)


def rejected_picture(exc: PictureRejected, index: int, count: int) -> EngineRejected:
    where = f"Picture {index + 1} of {count}" if count > 1 else "The picture"
    message = exc.message.replace("The picture", where, 1) if exc.message.startswith("The picture") else f"{where}: {exc.message}"
    code = "image_too_large" if exc.problem in _TOO_LARGE else "invalid_image"
    return EngineRejected(message, code=code, image_index=index, detail=exc.detail or exc.message)


class Preparer:
    def __init__(
        self,
        loaded: LoadedModel,
        budget: ImageBudget,
        limits: PictureLimits,
        *,
        workers: int,
        context_tokens: int | None,
    ) -> None:
        self._loaded = loaded
        self._budget = budget
        self._limits = limits
        self._pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="vlmbot-prepare")
        self.context_tokens = context_tokens
        self._plans: OrderedDict[ImageKey, VideoPlan] = OrderedDict()  # videos seen: their frames' grids and times

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    async def prepare(
        self,
        request: GenerationRequest,
        *,
        cached_grids: dict[Any, Grid],
        features: FeatureCache | None,
    ) -> Prompt:
        """The request's prompt with pixels of the pictures to encode; raises `EngineRejected`.

        `cached_grids`: the pictures in the session's KV entry (ImageKey -> grid)."""
        loop = asyncio.get_running_loop()
        sources = [image for turn in request.turns for image in turn.images]
        grids: dict[ImageKey, Grid] = dict(cached_grids)
        held: dict[ImageKey, ImageFeatures] = {}
        todo: dict[ImageKey, tuple[int, PromptImage]] = {}
        for index, image in enumerate(sources):
            key = prompts.image_key(self._loaded, image, self._budget, request.tenant)
            if key in grids or key in todo:
                continue
            found = features.get(key) if features is not None else None
            if found is not None:
                held[key], grids[key] = found, found.grid
            else:
                todo[key] = (index, image)
        pixels = await self._pictures(loop, todo, len(sources))
        grids.update({key: grid for key, (_, grid) in pixels.items()})
        self._held_video_features(request, grids, held, features)
        try:
            prompt = await loop.run_in_executor(self._pool, self._build, request, grids, dict(self._plans))
        except VideoRejected as exc:
            raise rejected_video(exc) from None
        for key, plan in prompt.videos.items():
            self._remember(key, plan)
        for index, slot in enumerate(prompt.images):
            if slot.key in pixels:
                prompt.pixels[index] = pixels[slot.key][0]
            elif slot.key in held and index not in prompt.pixels:
                prompt.features[index] = held[slot.key]
        self._check_length(request, prompt)
        return prompt

    def _held_video_features(
        self, request: GenerationRequest, grids: dict[ImageKey, Grid], held: dict[ImageKey, ImageFeatures], features: FeatureCache | None
    ) -> None:
        """A video whose every frame pair's features are cached (or in the session's KV) is not decoded again."""
        for video in (video for turn in request.turns for video in turn.videos):
            base = prompts.video_key(self._loaded, video, self._budget, request.tenant)
            plan = self._plans.get(base)
            if plan is None or features is None:
                continue
            for index, grid in enumerate(plan.grids):
                key = slot_key(base, index)
                if key in grids:
                    continue
                found = features.get(key)
                if found is None:
                    break
                held[key], grids[key] = found, grid

    def _remember(self, key: ImageKey, plan: VideoPlan) -> None:
        self._plans[key] = plan
        self._plans.move_to_end(key)
        while len(self._plans) > _PLANS:
            self._plans.popitem(last=False)

    async def _pictures(
        self, loop: asyncio.AbstractEventLoop, todo: dict[ImageKey, tuple[int, PromptImage]], count: int
    ) -> dict[ImageKey, tuple[Any, Grid]]:
        """Prepare the pictures in the pool, in parallel; the first refusal cancels the rest."""
        if not todo:
            return {}
        futures: dict[asyncio.Future[Any], tuple[ImageKey, int]] = {
            loop.run_in_executor(
                self._pool, prompts.prepare_picture, self._loaded, image, self._budget, self._limits
            ): (key, index)
            for key, (index, image) in todo.items()
        }
        try:
            done, _ = await asyncio.wait(futures, return_when=asyncio.FIRST_EXCEPTION)
            failed = sorted(
                (futures[f][1], f.exception()) for f in done if f.exception() is not None
            )
            if failed:
                index, exc = failed[0]
                if isinstance(exc, PictureRejected):
                    raise rejected_picture(exc, index, count) from None
                raise exc  # type: ignore[misc]
            return {futures[f][0]: f.result() for f in done}
        finally:
            for future in futures:  # a caller that went away, or a refusal: the rest need not run
                future.cancel()

    def _build(self, request: GenerationRequest, grids: dict[ImageKey, Grid], plans: dict[ImageKey, VideoPlan]) -> Prompt:
        """Tokenize (every grid is known by now, so nothing is decoded here) and compute positions."""
        prompt = prompts.build_prompt(
            self._loaded, request.turns, self._budget, grids.get, limits=self._limits, tenant=request.tenant,
            known_video=plans.get,
        )
        prompt.positions = prompts.rope_positions(self._loaded, prompt)
        return prompt

    def _check_length(self, request: GenerationRequest, prompt: Prompt) -> None:
        limit = self.context_tokens
        wanted = len(prompt.ids) + max(1, request.limits.max_new_tokens)
        if limit is not None and wanted > limit:
            raise EngineRejected(
                f"The model's context is {limit} tokens, and this request needs {wanted} "
                f"({len(prompt.ids)} for the conversation, {request.limits.max_new_tokens} for the answer); "
                "shorten the conversation or ask for a shorter answer.",
                code="context_length_exceeded",
            )
