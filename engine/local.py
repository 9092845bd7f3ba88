"""The in-process engine: one worker thread owns the model, a fair bounded queue feeds it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from engine.decode import DecodeControl, DecodeResult, ImageBudget, build_inputs, run_generate
from engine.interface import (
    EngineBusy,
    EngineError,
    EngineHealth,
    EngineTimeout,
    GenerationRequest,
    GenerationStats,
    Queued,
    StreamEvent,
    TextPiece,
)
from engine.loader import LoadedModel, load_model
from engine.scheduler import FairQueue, QueueFull

__all__ = ["LocalEngine", "LocalEngineOptions"]

log = logging.getLogger(__name__)

OOM_MESSAGE = "The picture is too large for the GPU's memory right now; please send a smaller or cropped picture."
INTERNAL_MESSAGE = "Something went wrong while answering; please try again."


@dataclass(frozen=True)
class LocalEngineOptions:
    model_path: Path
    device: str = "auto"
    attention: str = "auto"
    min_pixels: int = 4 * 28 * 28
    max_pixels: int = 1280 * 28 * 28
    jpeg_draft: bool = True
    queue_size: int = 32


@dataclass(eq=False)
class _Job:
    request: GenerationRequest
    out: asyncio.Queue[StreamEvent | BaseException]
    control: DecodeControl
    submitted_at: float
    started_at: float | None = None
    last_position: int | None = None
    finished: bool = False

    @property
    def request_id(self) -> str:
        return self.request.request_id

    @property
    def session_id(self) -> str:
        return self.request.session_id


class LocalEngine:
    """Transformers generate on a local Qwen2.5-VL / Qwen3-VL checkpoint. Implements `Engine`."""

    def __init__(self, options: LocalEngineOptions) -> None:
        self._options = options
        self._queue: FairQueue[_Job] = FairQueue(options.queue_size)
        self._queue.on_change(self._publish_positions)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vlmbot-gpu")
        self._loaded: LoadedModel | None = None
        self._worker: asyncio.Task[None] | None = None
        self._jobs: dict[str, _Job] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        # Seam for tests and benchmarks: wraps the model's generate call.
        self.generate_hook: Callable[..., Any] | None = None

    # --- lifecycle ----------------------------------------------------------------------------

    @property
    def model_name(self) -> str:
        return self._options.model_path.name

    @property
    def arch(self) -> str | None:
        """"qwen2_5_vl" or "qwen3_vl" once loaded: grounding answers differ in coordinate system."""
        return self._loaded.arch if self._loaded else None

    @property
    def loaded(self) -> LoadedModel:
        if self._loaded is None:
            raise RuntimeError("engine not started")
        return self._loaded

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        options = self._options
        self._loaded = await self._loop.run_in_executor(
            self._executor,
            lambda: load_model(options.model_path, device_setting=options.device, attention=options.attention),
        )
        self._worker = asyncio.create_task(self._work(), name="vlmbot-engine-worker")

    async def close(self) -> None:
        for job in list(self._jobs.values()):
            job.control.cancel.set()
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
            self._worker = None
        await asyncio.get_running_loop().run_in_executor(None, self._executor.shutdown)

    # --- the Engine interface -----------------------------------------------------------------

    async def generate(self, request: GenerationRequest) -> AsyncIterator[StreamEvent]:
        if self._worker is None:
            raise EngineError(INTERNAL_MESSAGE, detail="engine not started")
        now = time.monotonic()
        timeout = request.limits.timeout_s
        job = _Job(
            request=request,
            out=asyncio.Queue(),
            control=DecodeControl(deadline=None if timeout is None else now + timeout),
            submitted_at=now,
        )
        try:
            self._queue.put(job)
        except QueueFull:
            log.warning("queue full (%d); refusing request %s", len(self._queue), request.request_id)
            raise EngineBusy() from None
        self._jobs[request.request_id] = job
        self._publish_positions()
        completed = False
        try:
            while True:
                remaining = None if job.control.deadline is None else job.control.deadline - time.monotonic()
                try:
                    event = await asyncio.wait_for(job.out.get(), timeout=None if remaining is None else max(remaining, 0) + 1.0)
                except TimeoutError:
                    log.warning("request %s timed out after %.0f s", request.request_id, timeout)
                    raise EngineTimeout() from None
                if isinstance(event, BaseException):
                    raise event
                yield event
                if isinstance(event, GenerationStats):
                    completed = True
                    return
        finally:
            if not completed:  # the caller went away, timed out or failed: stop the model's work too
                job.control.cancel.set()
            self._release(job)

    async def cancel(self, request_id: str) -> bool:
        job = self._jobs.get(request_id)
        if job is None:
            return False
        if job.started_at is None:
            # Still waiting: answer the caller now, nothing reaches the worker.
            job.out.put_nowait(self._stats(job, DecodeResult(0, 0, "cancelled", None)))
        job.control.cancel.set()
        self._release(job)
        return True

    def queue_position(self, request_id: str) -> int | None:
        return self._queue.position(request_id)

    async def release_session(self, session_id: str) -> None:
        """Nothing is cached per session yet; kept for the interface (prefix caches use it)."""
        return None

    def health(self) -> EngineHealth:
        loaded = self._loaded
        return EngineHealth(
            model=self.model_name,
            device=str(loaded.device) if loaded else "not loaded",
            dtype=str(loaded.dtype).removeprefix("torch.") if loaded else "-",
            attention=loaded.attention if loaded else "-",
            attention_reason=loaded.attention_reason if loaded else "-",
            queue_depth=self._queue.waiting,
            running=self._queue.running,
            ok=loaded is not None and self._worker is not None and not self._worker.done(),
        )

    # --- internals ----------------------------------------------------------------------------

    def _release(self, job: _Job) -> None:
        if job.finished:
            return
        job.finished = True
        self._jobs.pop(job.request_id, None)
        self._queue.remove(job.request_id)

    def _publish_positions(self) -> None:
        for index, job in enumerate(self._queue.waiting_entries()):
            position = index + 1
            if job.last_position != position:
                job.last_position = position
                job.out.put_nowait(Queued(position))

    def _stats(self, job: _Job, result: DecodeResult, note: str | None = None) -> GenerationStats:
        now = time.monotonic()
        started = job.started_at or now
        return GenerationStats(
            queue_wait_s=started - job.submitted_at,
            time_to_first_token_s=None if result.first_token_at is None else result.first_token_at - job.submitted_at,
            total_s=now - job.submitted_at,
            prompt_tokens=result.prompt_tokens,
            output_tokens=result.output_tokens,
            finish_reason=result.finish_reason if result.finish_reason in ("stop", "cancelled") else "length",
            model=self.model_name,
            note=note,
        )

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._queue.wait_for_work()
            for job in self._queue.take(1):
                if job.finished or job.control.cancel.is_set():
                    self._queue.finish(job.request_id)
                    continue
                job.started_at = time.monotonic()
                try:
                    outcome = await loop.run_in_executor(self._executor, self._run_job, job)
                except Exception as exc:  # the worker must survive anything a request does
                    log.exception("request %s failed", job.request_id)
                    outcome = EngineError(INTERNAL_MESSAGE, detail=f"{type(exc).__name__}: {exc}")
                finally:
                    self._queue.finish(job.request_id)
                job.out.put_nowait(outcome)

    def _run_job(self, job: _Job) -> GenerationStats | EngineError:
        """Worker thread: generate, retrying once at half the pixel budget after a CUDA OOM."""
        loaded = self.loaded
        loop = self._loop
        assert loop is not None

        def emit(text: str) -> None:
            loop.call_soon_threadsafe(job.out.put_nowait, TextPiece(text))

        budget = ImageBudget(self._options.min_pixels, self._options.max_pixels, self._options.jpeg_draft)
        note = None
        for attempt in range(2):
            try:
                result = run_generate(
                    loaded,
                    build_inputs(loaded, job.request.turns, budget),
                    job.request.limits,
                    job.control,
                    emit,
                    self.generate_hook,
                )
                break
            except torch.OutOfMemoryError:
                if loaded.device.type == "cuda":
                    torch.cuda.empty_cache()
                has_images = any(turn.images for turn in job.request.turns)
                if attempt == 1 or not has_images:
                    log.error("request %s: out of memory, giving up", job.request_id)
                    return EngineError(OOM_MESSAGE, detail="CUDA out of memory")
                log.warning("request %s: out of memory; retrying at half the pixel budget", job.request_id)
                budget = budget.halved()
                note = "The picture was read at reduced resolution because the GPU ran short of memory."
        if result.finish_reason == "timeout":
            return EngineTimeout()
        return self._stats(job, result, note)
