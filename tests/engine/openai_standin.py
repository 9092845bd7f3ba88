"""A stand-in OpenAI-compatible model server (as vLLM streams it) that records requests and fails on demand."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass
class Received:
    headers: Any  # case-insensitive (CIMultiDict)
    body: dict[str, Any]


@dataclass
class OpenAIStandIn:
    model: str = "Qwen3-VL-8B-Instruct"
    pieces: tuple[str, ...] = ("The ", "printer ", "is ", "out of toner.")
    statuses: list[int] = field(default_factory=list)  # replies before streaming: e.g. [503, 503] then 200
    drop_after: int | None = None  # close the connection after this many pieces (once)
    error_chunk: dict[str, Any] | None = None  # sent after the pieces instead of finishing
    send_done: bool = True  # False: end like transformers serve, right after the finish (and usage) chunk
    send_usage: bool = True
    cut_before_finish: bool = False  # end the stream cleanly after the pieces, with no finish_reason
    models_status: int = 200  # e.g. 404: a server without GET /v1/models
    received: list[Received] = field(default_factory=list)
    _runner: web.AppRunner | None = None
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    async def start(self) -> str:
        app = web.Application(client_max_size=64 * 1024**2)
        app.router.add_get("/v1/models", self._models)
        app.router.add_post("/v1/chat/completions", self._chat)
        self._runner = web.AppRunner(app, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def __aenter__(self) -> OpenAIStandIn:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def _models(self, request: web.Request) -> web.Response:
        if self.models_status != 200:
            return web.json_response({"error": {"message": "Not Found"}}, status=self.models_status)
        return web.json_response({"object": "list", "data": [{"id": self.model, "object": "model", "owned_by": "vllm"}]})

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.received.append(Received(request.headers.copy(), body))
        if self.statuses:
            status = self.statuses.pop(0)
            error = {"message": f"stand-in status {status}", "type": "server_error", "param": None, "code": status}
            return web.json_response({"error": error}, status=status)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)

        async def send(data: dict[str, Any]) -> None:
            await response.write(f"data: {json.dumps(data)}\n\n".encode())

        base = {"id": "chatcmpl-standin", "object": "chat.completion.chunk", "created": 0, "model": self.model}
        await send({**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]})
        for index, piece in enumerate(self.pieces):
            if self.drop_after is not None and index == self.drop_after:
                self.drop_after = None
                await asyncio.sleep(0.2)  # let the client read what was sent: aiohttp drops buffered data on error
                assert request.transport is not None
                request.transport.close()
                return response
            await send({**base, "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]})
        if self.error_chunk is not None:
            await send(self.error_chunk)
            await response.write(b"data: [DONE]\n\n")
            return response
        if self.cut_before_finish:
            return response
        await send({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
        if self.send_usage:
            usage = {"prompt_tokens": 321, "completion_tokens": len(self.pieces), "total_tokens": 321 + len(self.pieces)}
            await send({**base, "choices": [], "usage": usage})
        if self.send_done:
            await response.write(b"data: [DONE]\n\n")
        return response
