"""`vlmbot engine serve`: an engine behind an OpenAI-compatible HTTP API (aiohttp).

Routes: POST /v1/chat/completions (streaming SSE or not), GET /v1/models[/{id}], GET /health,
GET /metrics. Like vLLM's server, only /v1 needs the API key; /health and /metrics stay open for
orchestrators and scrapers. While a streamed request waits for the model the server sends SSE
comments `: queued N` and, once the model reads the prompt, `: started` (clients ignore comments;
the project's remote engine shows them as the queue position and the "reading" status). A client
that disconnects cancels its request: aiohttp cancels the handler, which closes the engine's stream
and frees the model (while a prompt is read, at the next chunk).

What one API key can do to others: nothing through the engine's caches, which are namespaced by
key (a tenant derived from it: a key cannot reuse, time or release another key's conversation with
the same `user`), and nothing through a malformed or hostile request: every one gets a JSON 4xx in
OpenAI's error shape (`engine.server_api`), pictures are checked before the engine decodes them off
its worker, and prompts over the model's context are refused with 400.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import ipaddress
import json
import logging
import signal
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from engine.arch import ADVERTISED_KEY, MAX_TOKENS_KEY, ModelArch
from engine.interface import (
    Engine,
    EngineBusy,
    EngineError,
    EngineRejected,
    EngineTimeout,
    GenerationRequest,
    GenerationStats,
    Queued,
    Started,
    StreamEvent,
    TextPiece,
)
from engine.pictures import PictureLimits
from engine.server_api import (
    ApiError,
    ChatCall,
    chunk,
    completion,
    error_body,
    parse_chat_request,
    usage,
)
from engine.server_metrics import CONTENT_TYPE, EngineMetrics

__all__ = ["EngineServerOptions", "RunningServer", "create_app", "running_engine_server", "serve_forever"]

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class EngineServerOptions:
    host: str = "127.0.0.1"
    port: int = 8000
    api_keys: tuple[str, ...] = ()  # empty: no authentication
    served_model_names: tuple[str, ...] = ()  # names accepted besides the engine's own model name
    max_images: int = 16  # pictures per request, history included (vLLM: --limit-mm-per-prompt)
    max_new_tokens: int = 1024  # cap on a request's max_tokens, and its default
    request_timeout_s: float | None = 300.0
    max_request_bytes: int = 64 * 1024**2  # base64 pictures are large
    max_image_bytes: int = 20 * 1024**2  # one picture, decoded from base64
    max_image_pixels: int = 64_000_000  # one picture's width x height as stored
    shutdown_timeout_s: float = 10.0


_ENGINE = web.AppKey("engine", Engine)
_OPTIONS = web.AppKey("options", EngineServerOptions)
_METRICS = web.AppKey("metrics", EngineMetrics)
_TENANT = web.RequestKey("tenant", str)  # the namespace of the caller's API key


def tenant_of(key: str) -> str:
    """The cache namespace of an API key: a digest, so caches and logs never carry the key itself.

    Clients that share a key share a namespace: give each client its own key."""
    return "key-" + hashlib.sha256(key.encode()).hexdigest()[:24]


@dataclass(frozen=True)
class RunningServer:
    host: str
    port: int

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"


def _models(app: web.Application) -> tuple[str, ...]:
    names = (app[_ENGINE].model_name, *app[_OPTIONS].served_model_names)
    return tuple(dict.fromkeys(names))


def _json_error(error: ApiError) -> web.Response:
    return web.json_response(error.body(), status=error.status)


# --- middleware ---------------------------------------------------------------------------------


def _authenticate(request: web.Request) -> str | None:
    """The caller's tenant ("" without keys configured), or None when the key is missing or wrong."""
    keys = request.app[_OPTIONS].api_keys
    if not keys:
        return ""
    header = request.headers.get("Authorization", "")
    given = header[7:].strip().encode("utf-8", "surrogateescape") if header[:7].lower() == "bearer " else b""
    matched = None
    for key in keys:  # every key compared, in constant time each
        if hmac.compare_digest(given, key.encode()):
            matched = key
    return None if matched is None else tenant_of(matched)


@web.middleware
async def _errors_and_auth(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    if request.path.startswith("/v1/"):
        tenant = _authenticate(request)
        if tenant is None:
            request.app[_METRICS].failed("invalid_api_key")
            return _json_error(ApiError(401, "Missing or invalid API key (Authorization: Bearer ...).", code="invalid_api_key"))
        request[_TENANT] = tenant
    try:
        return await handler(request)
    except ApiError as exc:
        request.app[_METRICS].failed(exc.code or exc.type)
        log.info("request refused (%d %s): %s", exc.status, exc.code, exc.message)
        return _json_error(exc)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        # Unknown paths, wrong methods, oversized bodies: JSON like every other error of this server.
        return _json_error(ApiError(exc.status, exc.reason, code=exc.reason.lower().replace(" ", "_")))
    except Exception:  # a bug, not the client's fault: still an answer in the API's shape, and a log entry
        log.exception("%s %s failed", request.method, request.path)
        request.app[_METRICS].failed("internal_error")
        return _json_error(ApiError(500, "The server failed to handle the request.", type="server_error", code="internal_error"))


# --- handlers -----------------------------------------------------------------------------------


async def _health(request: web.Request) -> web.Response:
    health = request.app[_ENGINE].health()
    body = {
        "status": "ok" if health.ok else "unavailable",
        "model": health.model,
        "device": health.device,
        "dtype": health.dtype,
        "attention": health.attention,
        "quantization": health.quantization,
        "queue_depth": health.queue_depth,
        "running": health.running,
        "detail": health.detail,
    }
    return web.json_response(body, status=200 if health.ok else 503)


def _model_object(name: str, created: int, arch: ModelArch | None, max_tokens: int, quantization: str) -> dict[str, Any]:
    """An OpenAI model object; its extra `vlmbot` key tells the bot's remote engine the architecture
    (patch factor, grounding coordinates) whatever the model's name, the most tokens one answer may
    ask for (`max_tokens` above it is refused), and which weights are quantized. OpenAI clients ignore it."""
    body: dict[str, Any] = {"id": name, "object": "model", "created": created, "owned_by": "vlmbot"}
    advertised: dict[str, Any] = arch.advertised() if arch is not None else {}
    body[ADVERTISED_KEY] = {**advertised, MAX_TOKENS_KEY: max_tokens, "quantization": quantization}
    return body


async def _list_models(request: web.Request) -> web.Response:
    created = int(time.time())
    engine = request.app[_ENGINE]
    arch, cap, quantization = engine.arch, request.app[_OPTIONS].max_new_tokens, engine.health().quantization
    data = [_model_object(name, created, arch, cap, quantization) for name in _models(request.app)]
    return web.json_response({"object": "list", "data": data})


async def _get_model(request: web.Request) -> web.Response:
    name = request.match_info["model"]
    if name not in _models(request.app):
        shown = name if len(name) <= 100 else name[:100] + "..."
        raise ApiError(404, f"The model `{shown}` does not exist on this server.", param="model", code="model_not_found")
    engine = request.app[_ENGINE]
    arch, cap, quantization = engine.arch, request.app[_OPTIONS].max_new_tokens, engine.health().quantization
    return web.json_response(_model_object(name, int(time.time()), arch, cap, quantization))


async def _release_session(request: web.Request) -> web.Response:
    """vlmbot's own extension: a bot's /clear frees what the engine holds for that conversation.

    Only the caller's own: the session is looked up in the namespace of the caller's key."""
    await request.app[_ENGINE].release_session(request.match_info["session"], tenant=request[_TENANT])
    return web.Response(status=204)


async def _metrics(request: web.Request) -> web.Response:
    body = await asyncio.to_thread(request.app[_METRICS].render)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})


def _engine_error(exc: EngineError, call: ChatCall | None = None) -> ApiError:
    if isinstance(exc, EngineRejected):
        param = "messages"
        if call is not None and exc.image_index is not None and exc.image_index < len(call.image_params):
            param = call.image_params[exc.image_index]
        return ApiError(400, exc.user_message, param=param, code=exc.code)
    if isinstance(exc, EngineBusy):
        return ApiError(429, exc.user_message, type="server_busy", code="queue_full")
    if isinstance(exc, EngineTimeout):
        return ApiError(504, exc.user_message, type="timeout", code="timeout")
    return ApiError(500, exc.user_message, type="server_error", code="engine_error")


async def _chat(request: web.Request) -> web.StreamResponse:
    app = request.app
    options = app[_OPTIONS]
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise ApiError(
            413, f"The request is larger than {options.max_request_bytes // 1024**2} MB; send smaller pictures.",
            code="request_too_large",
        ) from None
    call = await asyncio.to_thread(  # base64 and picture checks of several MB: off the event loop
        parse_chat_request,
        raw,
        models=_models(app),
        max_images=options.max_images,
        max_new_tokens=options.max_new_tokens,
        timeout_s=options.request_timeout_s,
        picture_limits=PictureLimits(max_bytes=options.max_image_bytes, max_pixels=options.max_image_pixels),
    )
    # Our own id: a client's X-Request-Id (repeated on its retries, or shared by two clients) is only logged.
    request_id = f"chatcmpl-{uuid.uuid4().hex}"
    if client_id := request.headers.get("X-Request-Id"):
        log.info("request %s is the client's %s", request_id, client_id[:100])
    tenant = request[_TENANT]
    generation = GenerationRequest(
        request_id=request_id, session_id=call.user or request_id, turns=call.turns, limits=call.limits, tenant=tenant
    )
    engine = app[_ENGINE]
    stream = engine.generate(generation)
    try:
        try:
            first = await anext(stream)
        except EngineError as exc:
            raise _engine_error(exc, call) from None
        log.info("request %s: %d message(s), %d picture(s), stream=%s", request_id, len(call.turns),
                 sum(len(t.images) for t in call.turns), call.stream)
        if call.stream:
            return await _stream_reply(request, call, request_id, first, stream)
        return await _whole_reply(request, call, request_id, first, stream)
    except asyncio.CancelledError:
        app[_METRICS].requests.labels("cancelled").inc()
        log.info("request %s: the client went away; cancelled", request_id)
        raise
    finally:
        await stream.aclose()
        if not call.user:  # no conversation to continue: what the engine keeps for it is of no use
            await engine.release_session(generation.session_id, tenant=tenant)


async def _whole_reply(
    request: web.Request, call: ChatCall, request_id: str, first: StreamEvent, stream: AsyncIterator[StreamEvent]
) -> web.Response:
    metrics = request.app[_METRICS]
    parts: list[str] = []
    event = first
    try:
        while not isinstance(event, GenerationStats):
            if isinstance(event, TextPiece):
                parts.append(event.text)
            event = await anext(stream)
    except EngineError as exc:
        raise _engine_error(exc) from None
    if event.finish_reason == "cancelled":
        raise ApiError(503, "The request was cancelled by the server.", type="server_error", code="cancelled")
    metrics.finished(event)
    body = completion(request_id, call.model, "".join(parts), event.finish_reason, event.prompt_tokens, event.output_tokens)
    return web.json_response(body, headers={"X-Request-Id": request_id})


async def _stream_reply(
    request: web.Request, call: ChatCall, request_id: str, first: StreamEvent, stream: AsyncIterator[StreamEvent]
) -> web.StreamResponse:
    metrics = request.app[_METRICS]
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",  # nginx: do not buffer the stream
            "X-Request-Id": request_id,
        }
    )
    await response.prepare(request)
    created = int(time.time())

    async def send(body: dict[str, Any]) -> None:
        await response.write(b"data: " + json.dumps(body, ensure_ascii=False).encode() + b"\n\n")

    event = first
    try:
        await send(chunk(request_id, call.model, created, delta={"role": "assistant", "content": ""}))
        while True:
            if isinstance(event, Queued):
                await response.write(f": queued {event.position}\n\n".encode())
            elif isinstance(event, Started):
                await response.write(b": started\n\n")
            elif isinstance(event, TextPiece):
                await send(chunk(request_id, call.model, created, delta={"content": event.text}))
            elif isinstance(event, GenerationStats):
                if event.finish_reason == "cancelled":
                    metrics.failed("cancelled")
                    await send(error_body("The request was cancelled by the server.", type="server_error", code="cancelled"))
                else:
                    metrics.finished(event)
                    await send(chunk(request_id, call.model, created, delta={}, finish_reason=event.finish_reason))
                    if call.include_usage:
                        await send(chunk(request_id, call.model, created, usage_=usage(event.prompt_tokens, event.output_tokens)))
                break
            event = await anext(stream)
    except EngineError as exc:
        error = _engine_error(exc)
        metrics.failed(error.code or error.type)
        log.warning("request %s failed mid-stream: %s", request_id, exc)
        with contextlib.suppress(ConnectionResetError):
            await send(error.body())
            await _finish(response)
        return response
    except ConnectionResetError:  # the client closed the stream between two writes
        metrics.requests.labels("cancelled").inc()
        log.info("request %s: the client went away; cancelled", request_id)
        return response
    with contextlib.suppress(ConnectionResetError):
        await _finish(response)
    return response


async def _finish(response: web.StreamResponse) -> None:
    await response.write(b"data: [DONE]\n\n")
    await response.write_eof()


# --- app and lifecycle --------------------------------------------------------------------------


def create_app(engine: Engine, options: EngineServerOptions) -> web.Application:
    """The aiohttp application; the caller owns the engine (started before, closed after)."""
    app = web.Application(middlewares=[_errors_and_auth], client_max_size=options.max_request_bytes)
    app[_ENGINE] = engine
    app[_OPTIONS] = options
    app[_METRICS] = EngineMetrics(engine.health)
    app.router.add_post("/v1/chat/completions", _chat)
    app.router.add_get("/v1/models", _list_models)
    app.router.add_get("/v1/models/{model:.+}", _get_model)  # ids may hold slashes (org/name)
    app.router.add_delete("/v1/vlmbot/sessions/{session}", _release_session)
    app.router.add_get("/health", _health)
    app.router.add_get("/metrics", _metrics)
    return app


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


@asynccontextmanager
async def running_engine_server(engine: Engine, options: EngineServerOptions) -> AsyncIterator[RunningServer]:
    """Serve `engine` until the block exits; port 0 picks a free port (see the yielded value)."""
    if not options.api_keys and not _is_loopback(options.host):
        log.warning("the engine server listens on %s without API keys; set VLMBOT_SERVER_API_KEYS", options.host)
    runner = web.AppRunner(
        create_app(engine, options),
        handler_cancellation=True,  # a client that goes away cancels its request
        shutdown_timeout=options.shutdown_timeout_s,
        access_log=None,
    )
    await runner.setup()
    try:
        site = web.TCPSite(runner, options.host, options.port)
        await site.start()
        port = runner.addresses[0][1] if runner.addresses else options.port
        log.info("engine server for %s listening on http://%s:%d/v1", engine.model_name, options.host, port)
        yield RunningServer(options.host, port)
    finally:
        await runner.cleanup()


async def serve_forever(engine: Engine, options: EngineServerOptions) -> int:
    """Start the engine, serve until SIGINT/SIGTERM, then stop serving and close the engine."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(signum, stop.set)
    await engine.start()
    try:
        health = engine.health()
        log.info("model %s on %s (%s), attention %s (%s), quantization %s", health.model, health.device,
                 health.dtype, health.attention, health.attention_reason, health.quantization)
        async with running_engine_server(engine, options):
            await stop.wait()
            log.info("shutting down")
    finally:
        await engine.close()
    return 0
