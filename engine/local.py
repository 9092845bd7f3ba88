"""The in-process engine: one worker thread owns the model, a fair bounded queue feeds it.

A request takes its place in the queue at once (so it has a position, and counts against the
capacity) and is prepared off the worker meanwhile (`engine.prepare`: pictures checked, decoded,
resized and normalised in a small pool, prompt tokenized and checked against the context length);
a picture or prompt the engine refuses fails with `EngineRejected` before the worker sees it. The
worker admits prepared requests (round-robin across sessions, one running request per session, a
session's requests in the order they came) whenever the decoding loop yields at a step boundary:
after a row ends, or when a request becomes ready or a cancel arrives. See `engine.batch` for the
loop itself. Caches are per (tenant, session): see `engine.interface`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import AsyncGenerator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import torch

from engine.admission import AdmissionLedger, MemoryShape, cuda_budgets
from engine.arch import DEFAULT_MAX_PIXELS, DEFAULT_MIN_PIXELS, ModelArch
from engine.batch import INTERNAL_MESSAGE, BatchRunner, Work, error_for
from engine.counting import PromptCounter
from engine.decode import DecodeControl, DecodeResult, ImageBudget
from engine.features import FeatureCache, FeatureCacheStats
from engine.hooks import DecodeHook
from engine.interface import (
    EngineBusy,
    EngineError,
    EngineHealth,
    EngineTimeout,
    GenerationRequest,
    GenerationStats,
    PromptTurn,
    Started,
    StreamEvent,
    TextPiece,
)
from engine.kvstore import KVStore, KVStoreStats
from engine.loader import LoadedModel, load_model
from engine.pictures import PictureLimits
from engine.prepare import Preparer, context_limit, rejected_video
from engine.prompt import Prompt
from engine.scheduler import FairQueue, QueuedJob, QueueFull, publish_positions
from engine.videos import VideoBudget, VideoRejected

__all__ = ["DEFAULT_KV_CACHE_BYTES", "CacheStats", "LocalEngine", "LocalEngineOptions"]

DEFAULT_KV_CACHE_BYTES = 4 * 1024**3

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LocalEngineOptions:
    model_path: Path
    device: str = "auto"
    attention: str = "auto"
    quantization: str = "none"  # VLMBOT_QUANTIZATION: none, int8, nf4 (see engine.quantization)
    min_pixels: int = DEFAULT_MIN_PIXELS
    max_pixels: int = DEFAULT_MAX_PIXELS
    jpeg_draft: bool = True
    queue_size: int = 32
    batch_size: int = 8  # requests decoded together; 1 disables batching
    prefix_cache: bool = True  # keep each session's KV cache between turns
    # Budget of the per-session KV store (idle sessions); None: on CUDA half of what the weights leave
    # free (engine.admission.cuda_budgets), on the CPU DEFAULT_KV_CACHE_BYTES.
    kv_cache_bytes: int | None = DEFAULT_KV_CACHE_BYTES
    gpu_memory_fraction: float = 0.9  # share of the GPU the engine plans for (engine.admission)
    admission_bytes: int | None = None  # running requests' KV + activations; None: from the GPU, or no limit on CPU
    kv_idle_s: float | None = 1800.0  # a session's KV cache is dropped after this long unused
    feature_cache_bytes: int = 1024**3  # budget of the vision-feature cache; 0 disables it
    max_image_bytes: int = 20 * 1024**2  # pictures larger than this are refused
    max_image_pixels: int = 64_000_000  # width x height as stored: refused above, before decoding
    prepare_workers: int = 2  # threads preparing pictures and prompts; also caps concurrent decodes
    prefill_chunk_tokens: int = 2048  # most prompt tokens read per turn of the loop (fewer while answers run)
    read_in_pieces: bool = False  # while answers run, read newcomers in pieces of about a step (engine.read_pieces)
    context_tokens: int | None = None  # prompt + answer limit; None: the model's own context length
    video: VideoBudget = VideoBudget()  # videos: most bytes and seconds, frames sampled, visual tokens of one


@dataclass(frozen=True)
class CacheStats:
    kv: KVStoreStats
    features: FeatureCacheStats
    prefix_hits: int
    reused_tokens: int
    prefilled_tokens: int
    encoded_images: int
    prefill_chunks: int = 0
    batched_prefills: int = 0  # forwards that read several prompts together
    worker_prepared_images: int = 0  # pictures the worker decoded itself (a cached one evicted meanwhile)


@dataclass(eq=False)
class _Job(QueuedJob):
    control: DecodeControl = field(default_factory=DecodeControl)
    prompt: Prompt | None = None  # set once prepared: only then may the worker take it
    preparing: asyncio.Task[Prompt] | None = None  # while its pictures and prompt are prepared

    def ready(self) -> bool:
        return self.prompt is not None


class LocalEngine:
    """Transformers on a local Qwen2.5-VL / Qwen3-VL checkpoint. Implements `Engine`."""

    def __init__(self, options: LocalEngineOptions) -> None:
        self._options = options
        self._queue: FairQueue[_Job] = FairQueue(options.queue_size)
        self._queue.on_change(self._publish_positions)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vlmbot-gpu")
        self._loaded: LoadedModel | None = None
        self._worker: asyncio.Task[None] | None = None
        self._jobs: dict[str, _Job] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake = threading.Event()  # asks the decoding loop to yield at the next step boundary
        kv_bytes = DEFAULT_KV_CACHE_BYTES if options.kv_cache_bytes is None else options.kv_cache_bytes
        self._kv = KVStore(kv_bytes if options.prefix_cache else 0, options.kv_idle_s)
        self._ledger: AdmissionLedger | None = None  # set once the model is loaded
        self._features = FeatureCache(options.feature_cache_bytes)
        self._runner: BatchRunner | None = None
        self._counter: PromptCounter | None = None
        self._preparer: Preparer | None = None
        # Seam for tests and benchmarks: observes (and may slow, fail or steer) the decoding loop.
        self.generate_hook: DecodeHook | None = None

    # --- lifecycle ----------------------------------------------------------------------------

    @property
    def model_name(self) -> str:
        return self._options.model_path.name

    @property
    def arch(self) -> ModelArch | None:
        """Read from the checkpoint's config when the model loads; None before `start`."""
        return self._loaded.arch if self._loaded else None

    async def model_arch(self) -> ModelArch:
        if self._loaded is None:
            raise EngineError(INTERNAL_MESSAGE, detail="engine not started")
        return self._loaded.arch

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
            lambda: load_model(
                options.model_path,
                device_setting=options.device,
                attention=options.attention,
                quantization=options.quantization,
            ),
        )
        self._plan_memory(self._loaded)
        self._runner = BatchRunner(
            self._loaded, self._budget(), options.batch_size, self._kv, self._features, options.prefill_chunk_tokens
        )
        self._runner.read_in_pieces = options.read_in_pieces
        self._preparer = Preparer(
            self._loaded,
            self._budget(),
            PictureLimits(max_bytes=options.max_image_bytes, max_pixels=options.max_image_pixels),
            workers=options.prepare_workers,
            context_tokens=options.context_tokens or context_limit(self._loaded),
        )
        self._counter = PromptCounter(self._loaded, self._budget())
        self._worker = asyncio.create_task(self._work(), name="vlmbot-engine-worker")

    def _plan_memory(self, loaded: LoadedModel) -> None:
        """The admission budget and, when unset on CUDA, the KV store's budget (engine.admission)."""
        options = self._options
        shape = MemoryShape.of(loaded.model.config, loaded.dtype)
        budget = options.admission_bytes
        if loaded.device.type == "cuda":
            total = torch.cuda.get_device_properties(loaded.device).total_memory
            weights = int(loaded.model.get_memory_footprint())
            store, left = cuda_budgets(total, options.gpu_memory_fraction, weights, options.kv_cache_bytes)
            if options.kv_cache_bytes is None and options.prefix_cache:
                self._kv = KVStore(store, options.kv_idle_s)
            budget = left if budget is None else budget
            log.info(
                "GPU memory: %d MiB, weights %d MiB, KV store %d MiB, running requests %d MiB",
                total >> 20, weights >> 20, store >> 20, budget >> 20,
            )
        self._ledger = AdmissionLedger(shape, budget, options.prefill_chunk_tokens)

    async def close(self) -> None:
        for job in list(self._jobs.values()):
            if job.started_at is None:  # waiting or being prepared: its caller hears "cancelled" now
                await self.cancel(job.request_id)
            job.control.cancel.set()
        self._wake.set()
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
            self._worker = None
        loop = asyncio.get_running_loop()
        if self._preparer is not None:
            await loop.run_in_executor(None, self._preparer.close)
            self._preparer = None
        await loop.run_in_executor(None, self._executor.shutdown)

    # --- the Engine interface -----------------------------------------------------------------

    async def generate(self, request: GenerationRequest) -> AsyncGenerator[StreamEvent, None]:
        if self._worker is None or self._preparer is None:
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
            job.prompt = await self._prepare(job)
            if job.prompt is not None:  # None: cancelled while it was prepared
                self._queue.wake()  # the worker may take it now
                self._wake.set()
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
            if job.preparing is not None:
                job.preparing.cancel()
        job.control.cancel.set()
        self._release(job)
        return True

    def queue_position(self, request_id: str) -> int | None:
        return self._queue.position(request_id)

    async def release_session(self, session_id: str, tenant: str = "") -> None:
        """Drop the session's KV cache (and keep a running request from putting its cache back)."""
        if self._kv.release((tenant, session_id)):
            log.debug("released the KV cache of session %s", session_id)

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
            quantization=loaded.quantization.description if loaded else "-",
        )

    async def count_prompt_tokens(self, turns: Sequence[PromptTurn]) -> int:
        """Exact: the same token ids the decoding loop builds (`engine.counting.PromptCounter`)."""
        if self._counter is None:
            raise EngineError(INTERNAL_MESSAGE, detail="engine not started")
        try:
            return await asyncio.to_thread(self._counter.count, turns)
        except VideoRejected as exc:
            raise rejected_video(exc) from None

    def cache_stats(self) -> CacheStats:
        """Sizes and hit counts of the KV store and the feature cache (not part of `Engine`)."""
        counters = self._runner.counters if self._runner is not None else {}
        return CacheStats(
            kv=self._kv.stats(),
            features=self._features.stats(),
            prefix_hits=counters.get("prefix_hits", 0),
            reused_tokens=counters.get("reused_tokens", 0),
            prefilled_tokens=counters.get("prefilled_tokens", 0),
            encoded_images=counters.get("encoded_images", 0),
            prefill_chunks=counters.get("prefill_chunks", 0),
            batched_prefills=counters.get("batched_prefills", 0),
            worker_prepared_images=counters.get("worker_prepared_images", 0),
        )

    # --- internals ----------------------------------------------------------------------------

    def _budget(self) -> ImageBudget:
        options = self._options
        return ImageBudget(options.min_pixels, options.max_pixels, options.jpeg_draft, options.video)

    async def _prepare(self, job: _Job) -> Prompt | None:
        """The request's prompt, prepared off the worker within the request's deadline; None if cancelled meanwhile."""
        assert self._preparer is not None
        request = job.request
        task = job.preparing = asyncio.create_task(
            self._preparer.prepare(
                request,
                cached_grids=self._kv.grids(request.session_key) if self._kv.enabled else {},
                features=self._features if self._features.enabled else None,
            ),
            name=f"vlmbot-prepare-{request.request_id}",
        )
        deadline = job.control.deadline
        try:
            return await asyncio.wait_for(task, None if deadline is None else max(0.0, deadline - time.monotonic()))
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if job.finished and not (current is not None and current.cancelling()):
                return None  # `cancel()` stopped it; the caller itself goes on
            raise
        except TimeoutError:
            log.warning("request %s timed out while its pictures were prepared", request.request_id)
            raise EngineTimeout() from None
        except EngineError:
            raise
        except Exception as exc:  # a failure preparing one request is that request's alone
            log.exception("request %s could not be prepared", request.request_id)
            raise EngineError(INTERNAL_MESSAGE, detail=f"{type(exc).__name__}: {exc}") from exc
        finally:
            task.cancel()  # done already, or its caller went away
            job.preparing = None

    def _release(self, job: _Job) -> None:
        if job.finished:
            return
        job.finished = True
        self._jobs.pop(job.request_id, None)
        self._queue.remove(job.request_id)
        self._wake.set()

    def _publish_positions(self) -> None:
        publish_positions(self._queue)

    def _stats(self, job: _Job, result: DecodeResult, note: str | None = None) -> GenerationStats:
        now = time.monotonic()
        started = job.started_at or now
        return GenerationStats(
            queue_wait_s=started - job.submitted_at,
            time_to_first_token_s=None if result.first_token_at is None else result.first_token_at - job.submitted_at,
            total_s=now - job.submitted_at,
            prompt_tokens=result.prompt_tokens,
            output_tokens=result.output_tokens,
            finish_reason="stop" if result.finish_reason == "stop" else "cancelled" if result.finish_reason == "cancelled" else "length",
            model=self.model_name,
            note=note,
        )

    def _admit(self, job: _Job) -> bool:
        """Memory-aware admission: reserve the job's estimated bytes if they fit (engine.admission)."""
        ledger = self._ledger
        assert ledger is not None and job.prompt is not None
        need = ledger.estimate(job.prompt, job.request.limits.max_new_tokens)
        if not ledger.fits(need):
            log.debug("request %s waits: needs %d bytes, %d of %s reserved", job.request_id, need, ledger.reserved, ledger.budget)
            return False
        ledger.admit(job.request_id, need)
        return True

    def _ledger_release(self, job: _Job) -> None:
        if self._ledger is not None:
            self._ledger.release(job.request_id)

    def _complete(self, job: _Job, outcome: DecodeResult | EngineError, note: str | None) -> None:
        """On the event loop: a request left the decoding loop."""
        self._queue.finish(job.request_id)
        self._ledger_release(job)
        if isinstance(outcome, DecodeResult):
            timed_out = outcome.finish_reason == "timeout"
            job.out.put_nowait(EngineTimeout() if timed_out else self._stats(job, outcome, note))
        else:
            job.out.put_nowait(outcome)

    def _decode_hook(self) -> DecodeHook | None:
        return self.generate_hook

    def _work_for(self, job: _Job) -> Work:
        loop = self._loop
        assert loop is not None
        assert job.prompt is not None
        return Work(
            request=job.request,
            prompt=job.prompt,
            control=job.control,
            emit=lambda text: loop.call_soon_threadsafe(job.out.put_nowait, TextPiece(text)),
            done=lambda outcome, note: loop.call_soon_threadsafe(self._complete, job, outcome, note),
        )

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        runner = self._runner
        assert runner is not None
        idle_s = self._options.kv_idle_s
        # While idle, look for expired session caches now and then so their memory does not wait for traffic.
        tick = None if idle_s is None else max(0.05, min(60.0, idle_s / 4))
        while True:
            if not runner.active:
                try:
                    await asyncio.wait_for(self._queue.wait_for_work(ready=_Job.ready), timeout=tick)
                except TimeoutError:
                    self._kv.expire()
                    continue
            self._wake.clear()
            free = runner.batch_size - runner.active
            busy = runner.sessions
            # One running request per session: its KV cache is the session's.
            queue = self._queue

            blocked = False  # once one does not fit, none behind it overtakes it

            def accept(job: _Job) -> bool:
                nonlocal blocked
                if not job.ready() or job.session_key in busy or queue.is_running_session(job.session_key):
                    return False
                if blocked or not self._admit(job):
                    blocked = True
                    return False
                return True

            new = queue.take(free, accept=accept) if free > 0 else []
            works = []
            for job in new:
                if job.finished or job.control.cancel.is_set():
                    self._queue.finish(job.request_id)
                    self._ledger_release(job)
                    continue
                job.started_at = time.monotonic()
                job.out.put_nowait(Started())
                works.append(self._work_for(job))
            if not works and not runner.active:
                # Waiting requests all belong to a session whose last request is still being wrapped
                # up on the event loop: let that happen first.
                await asyncio.sleep(0.005)
                continue
            try:
                await loop.run_in_executor(self._executor, runner.run, works, self._wake, self._decode_hook)
            except Exception as exc:  # the worker must survive anything a request does
                log.exception("decoding step failed; failing the %d requests in the batch", runner.active)
                if isinstance(exc, torch.OutOfMemoryError) and self.loaded.device.type == "cuda":
                    torch.cuda.empty_cache()
                runner.fail_all(error_for(exc))
