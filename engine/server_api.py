"""The OpenAI chat-completions wire format: parsing requests into engine values, building replies.

Only what a vision chat needs: text and `image_url` parts (data URIs with base64; the server never
fetches URLs), streaming, `max_tokens`, `temperature`, `top_p`. Everything that is wrong with a
request becomes an `ApiError` with the status and body OpenAI clients expect.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import json
import re
import time
from dataclasses import dataclass
from typing import Any

from PIL import Image, UnidentifiedImageError

from engine.interface import GenerationLimits, PromptImage, PromptTurn

__all__ = [
    "ApiError",
    "ChatCall",
    "chunk",
    "completion",
    "error_body",
    "parse_chat_request",
    "parse_data_uri",
]

_DATA_URI = re.compile(r"^data:(?P<mime>image/[A-Za-z0-9.+-]+)?(?P<params>(;[^;,]*)*?);base64,(?P<data>.*)$", re.S)
_ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}


class ApiError(Exception):
    """A request the server refuses, rendered as `{"error": {"message", "type", "param", "code"}}`."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code

    def body(self) -> dict[str, Any]:
        return error_body(self.message, type=self.type, param=self.param, code=self.code)


def error_body(message: str, *, type: str, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


@dataclass(frozen=True)
class ChatCall:
    """One parsed `POST /v1/chat/completions`."""

    model: str
    turns: tuple[PromptTurn, ...]
    limits: GenerationLimits
    stream: bool
    include_usage: bool
    user: str | None


def parse_data_uri(url: Any, param: str) -> PromptImage:
    """The picture in a `data:image/...;base64,...` URI, checked to be a picture Pillow can open."""
    if not isinstance(url, str) or not url.startswith("data:"):
        raise ApiError(
            400,
            "Only data URIs (data:image/png;base64,...) are accepted as image_url; this server does not fetch URLs.",
            param=param,
            code="invalid_image_url",
        )
    match = _DATA_URI.match(url)
    if match is None:
        raise ApiError(400, "Malformed data URI: expected data:image/<type>;base64,<data>.", param=param, code="invalid_image_url")
    try:
        data = base64.b64decode(match.group("data"), validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(400, "Malformed data URI: the data is not valid base64.", param=param, code="invalid_image_url") from None
    if not data:
        raise ApiError(400, "Malformed data URI: the picture is empty.", param=param, code="invalid_image_url")
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.verify()
    except Image.DecompressionBombError:
        raise ApiError(400, "The picture has too many pixels to decode safely.", param=param, code="image_too_large") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        raise ApiError(400, "The data URI does not hold a picture this server can read.", param=param, code="invalid_image") from None
    return PromptImage(hashlib.sha256(data).hexdigest(), data)


def _content(content: Any, param: str) -> tuple[str, tuple[PromptImage, ...]]:
    if isinstance(content, str):
        return content, ()
    if content is None:
        return "", ()
    if not isinstance(content, list):
        raise ApiError(400, "content must be a string or a list of parts.", param=param)
    texts: list[str] = []
    images: list[PromptImage] = []
    for index, part in enumerate(content):
        where = f"{param}[{index}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text":
            text = part.get("text")
            if not isinstance(text, str):
                raise ApiError(400, "A text part needs a string `text`.", param=f"{where}.text")
            texts.append(text)
        elif kind == "image_url":
            spec = part.get("image_url")
            url = spec.get("url") if isinstance(spec, dict) else spec
            images.append(parse_data_uri(url, f"{where}.image_url.url"))
        else:
            raise ApiError(400, f"Unsupported content part type {kind!r}; use text or image_url.", param=f"{where}.type")
    return "\n".join(texts), tuple(images)


def parse_chat_request(
    raw: bytes,
    *,
    models: tuple[str, ...],
    max_images: int,
    max_new_tokens: int,
    timeout_s: float | None,
) -> ChatCall:
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ApiError(400, f"The request body is not valid JSON: {exc}.", code="invalid_json") from None
    if not isinstance(body, dict):
        raise ApiError(400, "The request body must be a JSON object.", code="invalid_json")
    model = body.get("model") or models[0]
    if model not in models:
        raise ApiError(
            404,
            f"The model `{model}` does not exist on this server; it serves {', '.join(models)}.",
            param="model",
            code="model_not_found",
        )
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise ApiError(400, "`messages` must be a non-empty list.", param="messages")
    if body.get("n", 1) != 1:
        raise ApiError(400, "Only n=1 is supported.", param="n")
    pictures = _count_images(messages)
    if pictures > max_images:
        raise ApiError(
            400,
            f"The request has {pictures} pictures; this server accepts at most {max_images} per request.",
            param="messages",
            code="too_many_images",
        )
    turns: list[PromptTurn] = []
    for index, message in enumerate(messages):
        param = f"messages[{index}]"
        if not isinstance(message, dict) or message.get("role") not in _ROLES:
            raise ApiError(400, "Each message needs a role of system, developer, user or assistant.", param=f"{param}.role")
        text, images = _content(message.get("content"), f"{param}.content")
        turns.append(PromptTurn(_ROLES[message["role"]], text, images))
    max_tokens = body.get("max_completion_tokens") or body.get("max_tokens") or max_new_tokens
    if not isinstance(max_tokens, int) or max_tokens < 1:
        raise ApiError(400, "max_tokens must be a positive integer.", param="max_tokens")
    temperature = body.get("temperature")
    top_p = body.get("top_p")
    for name, value in (("temperature", temperature), ("top_p", top_p)):
        if value is not None and (not isinstance(value, int | float) or value < 0):
            raise ApiError(400, f"{name} must be a non-negative number.", param=name)
    stream_options = body.get("stream_options") or {}
    user = body.get("user")
    return ChatCall(
        model=model,
        turns=tuple(turns),
        limits=GenerationLimits(
            max_new_tokens=min(max_tokens, max_new_tokens),
            temperature=0.0 if temperature is None else float(temperature),
            top_p=1.0 if top_p is None else float(top_p),
            timeout_s=timeout_s,
        ),
        stream=bool(body.get("stream")),
        include_usage=bool(isinstance(stream_options, dict) and stream_options.get("include_usage")),
        user=user if isinstance(user, str) and user else None,
    )


def _count_images(messages: list[Any]) -> int:
    count = 0
    for message in messages:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, list):
            count += sum(1 for part in content if isinstance(part, dict) and part.get("type") == "image_url")
    return count


def usage(prompt_tokens: int, output_tokens: int) -> dict[str, int]:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": output_tokens, "total_tokens": prompt_tokens + output_tokens}


def chunk(
    completion_id: str,
    model: str,
    created: int,
    *,
    delta: dict[str, Any] | None = None,
    finish_reason: str | None = None,
    usage_: dict[str, int] | None = None,
) -> dict[str, Any]:
    """One `chat.completion.chunk`; a usage-only chunk has an empty `choices` list, as OpenAI sends it."""
    choices = [] if delta is None else [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}]
    body: dict[str, Any] = {
        "id": completion_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": choices,
    }
    if usage_ is not None:
        body["usage"] = usage_
    return body


def completion(
    completion_id: str, model: str, text: str, finish_reason: str, prompt_tokens: int, output_tokens: int
) -> dict[str, Any]:
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "logprobs": None,
                "finish_reason": finish_reason,
            }
        ],
        "usage": usage(prompt_tokens, output_tokens),
    }
