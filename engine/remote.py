"""The remote engine: any OpenAI-compatible server (this project's `vlmbot engine serve`, vLLM, SGLang).

The bot keeps sessions and history; each request sends the whole prompt as chat messages, with
pictures resized to the pixel budget here (less upload, and the server's own resize becomes a
no-op) and sent as data URIs: JPEG when the original was a JPEG, PNG otherwise. The resize uses
the served architecture's patch factor (`engine.arch`), learnt once from GET /v1/models: this
project's server names it in each model object; for other servers `VLMBOT_ENGINE_ARCH` decides,
and `auto` judges by the model's name.

A local fair queue (the same `FairQueue` as the in-process engine) bounds the requests in flight to
the server, so users see their queue position; SSE comments `: queued N` and `: started` from this
project's server report the server's own queue and when it starts reading the prompt. Connection failures are retried with backoff until the first
token arrives (the request is idempotent until then); after that a lost connection ends the answer
with an error, since a half answer cannot be resumed. An answer is complete when a choice says its
`finish_reason` or the stream says `[DONE]`: `transformers serve` and some proxies never send `[DONE]`.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import json
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from engine.arch import (
    ADVERTISED_KEY,
    DEFAULT_MAX_PIXELS,
    DEFAULT_MIN_PIXELS,
    ArchSetting,
    ModelArch,
    arch_from_advertised,
    arch_from_name,
    arch_named,
    max_tokens_from_advertised,
)
from engine.images import prepare_image
from engine.interface import (
    EngineBusy,
    EngineError,
    EngineHealth,
    EngineRejected,
    EngineTimeout,
    EngineUnavailable,
    GenerationRequest,
    GenerationStats,
    PromptImage,
    PromptTurn,
    PromptVideo,
    Queued,
    Started,
    StreamEvent,
    TextPiece,
)
from engine.pictures import PictureRejected
from engine.prompt_bound import picture_token_bound, prompt_token_bound
from engine.remote_video import VIDEO_FRAMING_BYTES, video_parts
from engine.scheduler import FairQueue, QueuedJob, QueueFull, publish_positions
from engine.videos import VideoBudget, VideoRejected

__all__ = ["RemoteEngine", "RemoteEngineOptions", "check_health"]

log = logging.getLogger(__name__)

LOST_MID_ANSWER = "The connection to the model server was lost in the middle of the answer; please send /retry."
REJECTED = "The model server could not process this question; please try again, or /clear to start afresh."
_RETRY_STATUSES = {502, 503, 504}


def api_base(url: str) -> str:
    """`http://host:8000`, `.../v1` and `.../v1/` all mean the same OpenAI base URL `.../v1`."""
    url = url.rstrip("/")
    return url if url.endswith("/v1") else url + "/v1"


@dataclass(frozen=True)
class RemoteEngineOptions:
    base_url: str
    api_key: str | None = None
    model: str | None = None  # None: the server's first model from GET /v1/models
    arch: ArchSetting = "auto"  # for a server that does not say; auto = judged by the model's name
    min_pixels: int = DEFAULT_MIN_PIXELS
    max_pixels: int = DEFAULT_MAX_PIXELS
    queue_size: int = 32
    concurrency: int = 8  # requests in flight to the server at once; the rest wait here, in fair order
    connect_attempts: int = 4  # before the first token; waits 0.5, 1, 2 s between them by default
    retry_backoff_s: float = 0.5
    connect_timeout_s: float = 10.0
    jpeg_quality: int = 90
    image_cache_entries: int = 128  # encoded pictures kept: a follow-up re-sends the history's pictures
    video: VideoBudget = VideoBudget()  # how videos are sampled when sent as frames, and their token bound
    video_url: bool = False  # send videos as `video_url` parts (vLLM, `vlmbot engine serve`); else as frames


@dataclass(eq=False)
class _Job(QueuedJob):
    # `out` carries Queued updates and the "start" signal when a place to the server frees up.
    cancelled: bool = False
    cancel_event: asyncio.Event = field(default_factory=asyncio.Event)  # wakes a retry backoff
    response: aiohttp.ClientResponse | None = None


@dataclass
class _Progress:
    """What one streamed reply has said so far."""

    model: str
    complete: bool = False  # the stream said `[DONE]`, or a choice said its `finish_reason`
    finish_reason: str = "stop"
    prompt_tokens: int = 0
    output_tokens: int = 0
    pieces: int = 0
    first_token_at: float | None = None

    def take(self, data: dict[str, Any]) -> list[str]:
        """The text of one `chat.completion.chunk`; raises for an error chunk."""
        if "error" in data or data.get("object") == "error":  # vLLM's older streams: a bare error object
            error = data.get("error", data)
            if isinstance(error, dict) and error.get("code") == "cancelled":
                raise _Retryable("the server cancelled the request (shutting down?)")
            raise _stream_error(error)
        self.model = data.get("model") or self.model
        if data.get("usage"):
            self.prompt_tokens = data["usage"].get("prompt_tokens") or 0
            self.output_tokens = data["usage"].get("completion_tokens") or 0
        texts = []
        for choice in data.get("choices") or ():
            text = (choice.get("delta") or {}).get("content")
            if text:
                if self.first_token_at is None:
                    self.first_token_at = time.monotonic()
                self.pieces += 1
                texts.append(text)
            if choice.get("finish_reason"):
                # A finished choice is a complete answer: transformers serve (and some proxies) end the
                # stream after this chunk (and a usage chunk) without ever sending `[DONE]`.
                self.finish_reason = choice["finish_reason"]
                self.complete = True
        return texts


_GO = "go"
_CANCELLED = "cancelled"


class _Retryable(Exception):
    """A failure before the first token that another attempt may fix."""


class RemoteEngine:
    """Implements `Engine` over HTTP with aiohttp."""

    def __init__(self, options: RemoteEngineOptions) -> None:
        self._options = options
        self._base = api_base(options.base_url)
        self._queue: FairQueue[_Job] = FairQueue(options.queue_size)
        self._queue.on_change(self._publish_positions)
        self._jobs: dict[str, _Job] = {}
        self._session: aiohttp.ClientSession | None = None
        self._model: str | None = options.model or None  # empty setting = ask the server
        self._arch: ModelArch | None = None  # learnt with the model from GET /v1/models
        self._max_tokens: int | None = None  # the server's cap on max_tokens, when it says (this project's does)
        self._quantization = "-"  # as this project's server advertises it; "-" when the server does not say
        self._ok = False
        self._detail = "not started"
        self._images: OrderedDict[tuple[str, int], str] = OrderedDict()
        self._videos: OrderedDict[tuple[str, int], list[dict[str, Any]]] = OrderedDict()

    # --- lifecycle ----------------------------------------------------------------------------

    @property
    def model_name(self) -> str:
        return self._model or "remote model"

    @property
    def arch(self) -> ModelArch | None:
        return self._arch

    async def model_arch(self) -> ModelArch:
        if self._arch is None:
            if self._session is None:
                raise EngineError(REJECTED, detail="remote engine not started")
            try:
                await self._fetch_model()
            except _Retryable as exc:
                self._ok, self._detail = False, str(exc)
                raise EngineUnavailable(detail=str(exc)) from None
        assert self._arch is not None
        return self._arch

    async def start(self) -> None:
        """Open the HTTP session and ask the server for its model; a server that is down is not fatal."""
        headers = {"Authorization": f"Bearer {self._options.api_key}"} if self._options.api_key else {}
        self._session = aiohttp.ClientSession(
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=None, connect=self._options.connect_timeout_s),
        )
        try:
            await self._fetch_model()
        except (_Retryable, EngineError) as exc:
            self._ok, self._detail = False, str(exc)
            log.warning("model server %s is not reachable yet: %s", self._base, exc)

    async def close(self) -> None:
        for job in list(self._jobs.values()):
            await self.cancel(job.request_id)
        if self._session is not None:
            await self._session.close()
            self._session = None

    # --- the Engine interface -----------------------------------------------------------------

    async def generate(self, request: GenerationRequest) -> AsyncGenerator[StreamEvent, None]:
        if self._session is None:
            raise EngineError(REJECTED, detail="remote engine not started")
        job = _Job(request)
        try:
            self._queue.put(job)
        except QueueFull:
            log.warning("local queue full (%d); refusing request %s", len(self._queue), request.request_id)
            raise EngineBusy() from None
        self._jobs[request.request_id] = job
        self._publish_positions()
        self._dispatch()
        timeout = request.limits.timeout_s
        deadline = None if timeout is None else job.submitted_at + timeout
        try:
            while True:  # wait for a slot
                item = await _wait(job.out.get(), deadline)
                if item == _GO:
                    break
                if item == _CANCELLED:
                    yield self._stats(job, "cancelled", 0, 0, None)
                    return
                assert isinstance(item, Queued)
                yield item
            job.started_at = time.monotonic()
            async for event in self._run(job, deadline):
                yield event
        finally:
            self._release(job)

    async def cancel(self, request_id: str) -> bool:
        job = self._jobs.get(request_id)
        if job is None:
            return False
        job.cancelled = True
        job.cancel_event.set()
        if job.started_at is None:
            job.out.put_nowait(_CANCELLED)
        elif job.response is not None:
            job.response.close()  # the server sees the disconnect and stops generating
        self._release(job)
        return True

    def queue_position(self, request_id: str) -> int | None:
        return self._queue.position(request_id)

    async def release_session(self, session_id: str, tenant: str = "") -> None:
        """Ask the server to free the conversation's caches (this project's server does; vLLM and
        SGLang answer 404 and evict by themselves). Best effort: /clear never waits on a dead server.
        `tenant` is not sent: the server keeps caches per API key, and this engine has one."""
        if self._session is None:
            return
        try:
            async with self._session.delete(
                f"{self._base}/vlmbot/sessions/{session_id}", timeout=aiohttp.ClientTimeout(total=5)
            ) as response:
                if response.status not in (204, 404, 405):
                    log.info("releasing session %s on the model server: HTTP %s", session_id, response.status)
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.info("releasing session %s on the model server failed: %s", session_id, exc)

    def health(self) -> EngineHealth:
        return EngineHealth(
            model=self.model_name,
            device=f"remote {self._base}",
            dtype="-",
            attention="-",
            attention_reason="served by the remote server",
            queue_depth=self._queue.waiting,
            running=self._queue.running,
            ok=self._ok,
            detail=self._detail,
            quantization=self._quantization,
        )

    async def count_prompt_tokens(self, turns: Sequence[PromptTurn]) -> int:
        """An upper bound, since the server's tokenizer is not here: `engine.prompt_bound`."""
        video = self._options.video
        per_video = video.max_tokens + video.limits.max_frames * VIDEO_FRAMING_BYTES
        return prompt_token_bound(turns, picture_token_bound(self._options.max_pixels), per_video)

    # --- queue --------------------------------------------------------------------------------

    def _dispatch(self) -> None:
        free = self._options.concurrency - self._queue.running
        for job in self._queue.take(max(free, 0)):
            job.out.put_nowait(_GO)

    def _release(self, job: _Job) -> None:
        if job.finished:
            return
        job.finished = True
        self._jobs.pop(job.request_id, None)
        self._queue.remove(job.request_id)
        self._dispatch()

    def _publish_positions(self) -> None:
        publish_positions(self._queue)

    # --- one request --------------------------------------------------------------------------

    async def _run(self, job: _Job, deadline: float | None) -> AsyncIterator[StreamEvent]:
        """POST with retries until the first token, then stream; ends with `GenerationStats`."""
        body: dict[str, Any] | None = None
        attempt = 0
        while True:
            attempt += 1
            produced = False
            if job.cancelled:
                yield self._stats(job, "cancelled", 0, 0, None)
                return
            try:
                if body is None:
                    body = await self._body(job.request, await self._fetch_model())
                async for event in self._attempt(job, body, deadline):
                    if isinstance(event, TextPiece):
                        produced = True
                    yield event
                self._ok, self._detail = True, ""
                return
            except _Retryable as exc:
                if job.cancelled:
                    yield self._stats(job, "cancelled", 0, 0, None)
                    return
                if produced:
                    self._ok, self._detail = False, str(exc)
                    log.warning("request %s: connection lost mid-answer: %s", job.request_id, exc)
                    raise EngineError(LOST_MID_ANSWER, detail=str(exc)) from None
                delay = self._options.retry_backoff_s * 2 ** (attempt - 1)
                out_of_time = deadline is not None and time.monotonic() + delay > deadline
                if attempt >= self._options.connect_attempts or out_of_time:
                    self._ok, self._detail = False, str(exc)
                    log.error("request %s: model server %s unavailable after %d attempt(s): %s",
                              job.request_id, self._base, attempt, exc)
                    raise EngineUnavailable(detail=str(exc)) from None
                log.warning("request %s: attempt %d failed (%s); retrying in %.1f s", job.request_id, attempt, exc, delay)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(job.cancel_event.wait(), delay)

    async def _attempt(self, job: _Job, body: dict[str, Any], deadline: float | None) -> AsyncIterator[StreamEvent]:
        assert self._session is not None
        progress = _Progress(model=body["model"])
        headers = {"X-Request-Id": job.request_id, "Accept": "text/event-stream"}
        try:
            response = await _wait(self._session.post(f"{self._base}/chat/completions", json=body, headers=headers), deadline)
        except (aiohttp.ClientConnectionError, ConnectionError) as exc:
            raise _Retryable(f"{type(exc).__name__}: {exc}") from None
        job.response = response
        broken = False
        try:
            if not job.cancelled:  # else cancelled while the request was being sent: nothing to read
                if response.status != 200:
                    await self._refuse(response)
                async for kind, value in _sse_events(response, deadline):
                    if kind == "comment":
                        if value.startswith("queued "):
                            yield Queued(int(value.split()[1]))
                        elif value == "started":
                            yield Started()
                    elif value == "[DONE]":
                        progress.complete = True
                        break
                    else:
                        for text in progress.take(_chunk_json(value)):
                            yield TextPiece(text)
                if not progress.complete and not job.cancelled:
                    raise _Retryable("the stream ended before the answer said it was finished")
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, ConnectionError) as exc:
            if not job.cancelled and not progress.complete:  # lost after the finish: the answer is whole
                raise _Retryable(f"{type(exc).__name__}: {exc}") from None
            broken = True
        finally:
            job.response = None
            if progress.complete and not broken:
                response.release()
            else:
                response.close()  # unread stream (caller gone, cancel, error): drop it, so the server stops
        reason = "cancelled" if job.cancelled else ("length" if progress.finish_reason == "length" else "stop")
        yield self._stats(job, reason, progress.prompt_tokens, progress.output_tokens or progress.pieces,
                          progress.first_token_at, progress.model)

    async def _refuse(self, response: aiohttp.ClientResponse) -> None:
        """Raise for a non-200 reply: retry gateway errors, map the rest to user-facing errors."""
        text = await response.text()
        try:
            error = json.loads(text).get("error") or {}
        except (json.JSONDecodeError, AttributeError):
            error = {}
        message = error.get("message") if isinstance(error, dict) else str(error)
        detail = f"HTTP {response.status}: {message or text[:200]}"
        if response.status in _RETRY_STATUSES:
            raise _Retryable(detail)
        if response.status == 429:
            raise EngineBusy()
        if response.status in (401, 403):
            self._ok, self._detail = False, detail
            log.error("model server %s refused the API key: %s", self._base, detail)
            raise EngineUnavailable(detail=detail)
        log.error("model server %s refused a request: %s", self._base, detail)
        raise EngineError(REJECTED, detail=detail)

    def _stats(
        self,
        job: _Job,
        reason: str,
        prompt_tokens: int,
        output_tokens: int,
        first_token_at: float | None,
        model: str | None = None,
    ) -> GenerationStats:
        now = time.monotonic()
        started = job.started_at or now
        return GenerationStats(
            queue_wait_s=started - job.submitted_at,
            time_to_first_token_s=None if first_token_at is None else first_token_at - job.submitted_at,
            total_s=now - job.submitted_at,
            prompt_tokens=prompt_tokens,
            output_tokens=output_tokens,
            finish_reason=reason,  # type: ignore[arg-type]
            model=model or self.model_name,
        )

    # --- the request body ---------------------------------------------------------------------

    async def _fetch_model(self) -> str:
        """The model to request (the configured one, else the server's first) and its architecture,
        from GET /v1/models once; a server without that route is taken at the configured name."""
        if self._model is not None and self._arch is not None:
            return self._model
        assert self._session is not None
        configured = self._options.model or None
        try:
            async with self._session.get(f"{self._base}/models", timeout=aiohttp.ClientTimeout(total=10)) as response:
                listed = await self._model_list(response, lenient=configured is not None)
        except (aiohttp.ClientError, ConnectionError, TimeoutError) as exc:
            raise _Retryable(f"GET {self._base}/models: {type(exc).__name__}: {exc}") from None
        if configured is not None:
            model = configured
            entry = next((m for m in listed if m.get("id") == configured), None)
        elif listed:
            entry = listed[0]
            model = str(entry.get("id"))
        else:
            raise EngineUnavailable(detail=f"{self._base} serves no model")
        self._arch = self._decide_arch(model, entry)
        self._max_tokens = max_tokens_from_advertised(entry.get(ADVERTISED_KEY)) if entry is not None else None
        if self._max_tokens is not None:
            log.info("model server %s answers with at most %d tokens per request", self._base, self._max_tokens)
        self._quantization = advertised_quantization(entry)
        self._model = model
        self._ok, self._detail = True, ""
        return model

    async def _model_list(self, response: aiohttp.ClientResponse, *, lenient: bool) -> list[dict[str, Any]]:
        """The model objects of a /v1/models reply. `lenient` (a model name is configured): a server
        without a usable list is not an error, the model is then all that is known."""
        if response.status == 200:
            try:
                data = (await response.json(content_type=None)).get("data")
            except (json.JSONDecodeError, aiohttp.ContentTypeError, AttributeError):
                data = None
            if isinstance(data, list):
                return [m for m in data if isinstance(m, dict) and m.get("id") is not None]
            if lenient:
                return []
            raise EngineUnavailable(detail=f"GET {self._base}/models: not an OpenAI model list")
        if lenient and response.status not in (401, 403, *_RETRY_STATUSES):
            log.info("GET %s/models: HTTP %s; using the configured model name", self._base, response.status)
            return []
        await self._refuse(response)
        return []  # not reached: _refuse raises

    def _decide_arch(self, model: str, entry: dict[str, Any] | None) -> ModelArch:
        """The server's own word (this project's server), else VLMBOT_ENGINE_ARCH, else the model name."""
        said = arch_from_advertised(entry.get(ADVERTISED_KEY)) if entry is not None else None
        setting = self._options.arch
        if said is not None:
            arch, source = said, "as the server says"
            if setting != "auto" and setting != said.name:
                log.warning("VLMBOT_ENGINE_ARCH=%s, but %s says %s is %s; following the server",
                            setting, self._base, model, said.name)
        elif setting != "auto":
            arch, source = arch_named(setting), "from VLMBOT_ENGINE_ARCH"
        else:
            arch, source = arch_from_name(model), "judged by its name; set VLMBOT_ENGINE_ARCH if wrong"
        log.info("model server %s serves %s: %s (%s), picture sides in multiples of %d",
                 self._base, model, arch.name, source, arch.patch_factor)
        return arch

    async def _body(self, request: GenerationRequest, model: str) -> dict[str, Any]:
        assert self._arch is not None  # learnt with the model
        factor = self._arch.patch_factor
        try:
            messages = [await self._message(turn, factor) for turn in request.turns]
        except PictureRejected as exc:  # the bot checks pictures first: only a bypass gets here
            raise EngineRejected(exc.message, code="invalid_image", detail=exc.detail) from None
        except VideoRejected as exc:
            raise EngineRejected(exc.message, code="invalid_video", detail=exc.detail) from None
        limits = request.limits
        max_tokens = limits.max_new_tokens
        if self._max_tokens is not None and max_tokens > self._max_tokens:
            # The server refuses more than its cap: ask for what it gives rather than fail every question.
            max_tokens = self._max_tokens
        body: dict[str, Any] = {
            "model": model,
            "messages": messages,
            "stream": True,
            "stream_options": {"include_usage": True},
            "max_tokens": max_tokens,
            "temperature": limits.temperature,
            "top_p": limits.top_p,
            "user": request.session_id,  # this project's server queues fairly per session
        }
        # The other fields only when set: a server that does not know vLLM's fields may refuse them.
        extras = {
            "stop": list(limits.stop) or None,
            "seed": limits.seed,
            "presence_penalty": limits.presence_penalty or None,
            "frequency_penalty": limits.frequency_penalty or None,
            "min_tokens": min(limits.min_tokens, max_tokens) or None,
            "ignore_eos": limits.ignore_eos or None,
        }
        body.update({name: value for name, value in extras.items() if value is not None})
        return body

    async def _message(self, turn: PromptTurn, factor: int) -> dict[str, Any]:
        if not turn.images and not turn.videos:
            return {"role": turn.role, "content": turn.text}
        parts: list[dict[str, Any]] = [part for video in turn.videos for part in await self._video(video, factor)]
        parts += [
            {"type": "image_url", "image_url": {"url": await self._data_uri(image, factor)}} for image in turn.images
        ]
        parts.append({"type": "text", "text": turn.text})
        return {"role": turn.role, "content": parts}

    async def _data_uri(self, image: PromptImage, factor: int) -> str:
        key = (image.sha256, factor)
        cached = self._images.get(key)
        if cached is not None:
            self._images.move_to_end(key)
            return cached
        uri = await asyncio.to_thread(self._encode, image.data, factor)
        self._images[key] = uri
        while len(self._images) > self._options.image_cache_entries:
            self._images.popitem(last=False)
        return uri

    async def _video(self, video: PromptVideo, factor: int) -> list[dict[str, Any]]:
        """The video's parts (`engine.remote_video`), kept like encoded pictures for the follow-ups."""
        key = (video.sha256, factor)
        cached = self._videos.get(key)
        if cached is None:
            options = self._options
            cached = await asyncio.to_thread(
                video_parts, video, as_url=options.video_url, factor=factor, max_pixels=options.max_pixels, budget=options.video
            )
            self._videos[key] = cached
            while len(self._videos) > max(1, options.image_cache_entries // 16):
                self._videos.popitem(last=False)
        self._videos.move_to_end(key)
        return cached

    def _encode(self, data: bytes, factor: int) -> str:
        prepared = prepare_image(
            data, factor=factor, min_pixels=self._options.min_pixels, max_pixels=self._options.max_pixels
        )
        out = io.BytesIO()
        if data[:3] == b"\xff\xd8\xff":  # a photo stays a JPEG; screenshots and drawings stay lossless
            prepared.image.save(out, format="JPEG", quality=self._options.jpeg_quality)
            mime = "image/jpeg"
        else:
            prepared.image.save(out, format="PNG")
            mime = "image/png"
        return f"data:{mime};base64,{base64.b64encode(out.getvalue()).decode()}"


def _stream_error(error: Any) -> EngineError:
    if not isinstance(error, dict):
        return EngineError(REJECTED, detail=str(error))
    code = error.get("code")
    detail = f"{error.get('type')}/{code}: {error.get('message')}"
    if code == "queue_full":
        return EngineBusy()
    if code == "timeout":
        return EngineTimeout()
    message = error.get("message") if error.get("type") == "server_error" else None
    return EngineError(message or REJECTED, detail=detail)


async def _wait(awaitable: Any, deadline: float | None) -> Any:
    if deadline is None:
        return await awaitable
    try:
        return await asyncio.wait_for(awaitable, max(deadline - time.monotonic(), 0))
    except TimeoutError:
        raise EngineTimeout() from None


def _chunk_json(value: str) -> dict[str, Any]:
    """One streamed chunk; a server that sends something else is refusing in a way we cannot read."""
    try:
        data = json.loads(value)
    except json.JSONDecodeError:
        raise EngineError(REJECTED, detail=f"the model server streamed a chunk that is not JSON: {value[:200]!r}") from None
    if not isinstance(data, dict):
        raise EngineError(REJECTED, detail=f"the model server streamed a chunk that is not an object: {value[:200]!r}")
    return data


async def _sse_events(response: aiohttp.ClientResponse, deadline: float | None) -> AsyncIterator[tuple[str, str]]:
    """("data", payload) per event and ("comment", text) per comment line, until the stream ends."""
    data: list[str] = []
    while True:
        raw = await _wait(response.content.readline(), deadline)
        if not raw:
            if data:  # the last event, not followed by a blank line before the stream closed
                yield "data", "\n".join(data)
            return
        line = raw.decode("utf-8").rstrip("\r\n")
        if not line:
            if data:
                yield "data", "\n".join(data)
                data = []
        elif line.startswith(":"):
            yield "comment", line[1:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].removeprefix(" "))
        # other fields (event:, id:, retry:) carry nothing for chat completions


async def check_health(url: str, *, timeout_s: float = 5.0) -> tuple[bool, str]:
    """GET `<server>/health` (this project's server and vLLM both serve it): healthy, and what was seen."""
    base = url.rstrip("/").removesuffix("/v1")
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout_s)) as session:
            async with session.get(f"{base}/health") as response:
                text = await response.text()
                return response.status == 200, f"HTTP {response.status} {text[:300]}".strip()
    except (aiohttp.ClientError, ConnectionError, TimeoutError) as exc:
        return False, f"{base}/health: {type(exc).__name__}: {exc}"


def advertised_quantization(entry: dict[str, Any] | None) -> str:
    """The quantization a model object's `vlmbot` key names (this project's server), fit for /status:
    printable ASCII, at most 100 characters; "-" when the server says nothing."""
    said = entry.get(ADVERTISED_KEY) if entry is not None else None
    value = said.get("quantization") if isinstance(said, dict) else None
    if not isinstance(value, str):
        return "-"
    cleaned = "".join(ch for ch in value if " " <= ch <= "~")[:100].strip()
    return cleaned or "-"
