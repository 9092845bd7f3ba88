"""The OpenAI chat-completions wire format: parsing requests into engine values, building replies.

Only what a vision chat needs: text, `image_url` and `video_url` parts (data URIs with base64; the
server never fetches URLs; a video counts against the request's pictures), streaming,
`max_tokens`/`max_completion_tokens`, `temperature`, `top_p`, `stop`, `seed`, the presence and
frequency penalties, vLLM's `min_tokens` and `ignore_eos`, `user`. A field the server cannot
honour (tools, structured output, logprobs, logit_bias, several choices, audio) is
refused with a 400 naming it, never silently ignored; the README's table lists every field.
Everything that is wrong with a request becomes an `ApiError` with the status and body OpenAI
clients expect, and nothing else escapes `parse_chat_request`, whatever the bytes (a fuzz test
holds it to that): no NaN/Infinity literals, no nesting deep enough to exhaust the parser's stack,
no lone surrogates in text, finite sampling parameters in range, `max_tokens` within the server's
cap (refused above it, not cut). Pictures get the shared checks of `engine.pictures` on their
header (size, format allowlist, pixels, aspect) here; the engine decodes them later, off its worker.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import re
import time
from dataclasses import dataclass
from typing import Any, NoReturn

from engine.interface import GenerationLimits, PromptImage, PromptTurn, PromptVideo
from engine.pictures import (
    DEFAULT_LIMITS,
    PictureLimits,
    PictureProblem,
    PictureRejected,
    open_picture,
)
from engine.videos import DEFAULT_VIDEO_LIMITS, VideoLimits, VideoProblem, VideoRejected, probe_video

__all__ = [
    "MAX_PENALTY",
    "MAX_STOPS",
    "MAX_TEMPERATURE",
    "MAX_USER_CHARS",
    "ApiError",
    "ChatCall",
    "chunk",
    "completion",
    "error_body",
    "parse_chat_request",
    "parse_data_uri",
]

_VIDEO_URI = re.compile(r"^data:(video/[A-Za-z0-9.+-]+|image/gif)(;[^;,]*)*?;base64,(?P<data>.*)$", re.DOTALL)
_DATA_URI = re.compile(r"^data:(?P<mime>image/[A-Za-z0-9.+-]+)?(?P<params>(;[^;,]*)*?);base64,(?P<data>.*)$", re.DOTALL)
_ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}
MAX_TEMPERATURE = 2.0  # OpenAI's range is [0, 2]
MAX_USER_CHARS = 256  # `user` names a conversation; it is a cache key, not a place for data
MAX_STOPS = 4  # OpenAI's limit on `stop`
MAX_STOP_CHARS = 256  # one stop string; the stream holds back up to this many characters
MAX_PENALTY = 2.0  # OpenAI's range for presence_penalty and frequency_penalty is [-2, 2]
_SEED_RANGE = (-(2**63), 2**64 - 1)  # what fits a 64-bit generator seed, signed or not

# Fields the server cannot honour: refused, so a client never takes plain text for what it asked.
_REFUSED = {
    "tools": "Tool calling is not supported by this server.",
    "tool_choice": "Tool calling is not supported by this server.",
    "functions": "Function calling is not supported by this server.",
    "function_call": "Function calling is not supported by this server.",
    "audio": "Audio output is not supported by this server.",
    "prediction": "Predicted outputs are not supported by this server.",
    "web_search_options": "Web search is not supported by this server.",
    "moderation": "Moderation is not done by this server.",
}
# vLLM's own sampling fields that this server does not honour: refused unless at their neutral value.
_REFUSED_UNLESS_NEUTRAL: dict[str, tuple[Any, ...]] = {
    "top_k": (None, 0, -1),
    "min_p": (None, 0, 0.0),
    "repetition_penalty": (None, 1, 1.0),
    "stop_token_ids": (None, []),
    "bad_words": (None, []),
    "best_of": (None, 1),
    "use_beam_search": (None, False),
    "prompt_logprobs": (None,),
    "guided_json": (None,),
    "guided_regex": (None,),
    "guided_choice": (None,),
    "guided_grammar": (None,),
    "structured_outputs": (None,),
    "echo": (None, False),
    "chat_template": (None,),
}


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
    image_params: tuple[str, ...] = ()  # where each picture was in the request, in prompt order


def _refuse_constant(name: str) -> NoReturn:
    raise ApiError(400, f"The request body contains {name}, which is not valid JSON; send finite numbers.", code="invalid_json")


def _load(raw: bytes) -> Any:
    try:
        return json.loads(raw, parse_constant=_refuse_constant)
    except RecursionError:
        raise ApiError(400, "The request body is nested too deeply.", code="invalid_json") from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, an integer of more than 4300 digits
        raise ApiError(400, f"The request body is not valid JSON: {_first_line(exc)}.", code="invalid_json") from None


def _first_line(exc: BaseException) -> str:
    return (str(exc).splitlines() or [type(exc).__name__])[0][:200]


def _text(value: Any, param: str) -> str:
    """A string that can be encoded as UTF-8 (a JSON escape can smuggle in a lone surrogate)."""
    if not isinstance(value, str):
        raise ApiError(400, f"`{param}` must be a string.", param=param)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ApiError(400, f"`{param}` contains a lone surrogate (invalid Unicode).", param=param) from None
    return value


def _number(body: dict[str, Any], name: str) -> float | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ApiError(400, f"`{name}` must be a number.", param=name)
    try:
        number = float(value)
    except OverflowError:  # an integer beyond float range
        number = math.inf
    if not math.isfinite(number):
        raise ApiError(400, f"`{name}` must be a finite number.", param=name)
    return number


def _in_range(body: dict[str, Any], name: str, low: float, high: float, default: float) -> float:
    value = _number(body, name)
    if value is None:
        return default
    if not low <= value <= high:
        raise ApiError(400, f"`{name}` must be between {low:g} and {high:g}.", param=name, code="invalid_value")
    return value


def _integer(body: dict[str, Any], name: str, low: int, high: int) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ApiError(400, f"`{name}` must be an integer from {low} to {high}.", param=name, code="invalid_value")
    return value


def _stops(body: dict[str, Any]) -> tuple[str, ...]:
    value = body.get("stop")
    if value is None:
        return ()
    many = isinstance(value, list)
    stops = value if many else [value]
    if len(stops) > MAX_STOPS:
        raise ApiError(400, f"`stop` has {len(stops)} strings; at most {MAX_STOPS} are allowed.", param="stop")
    found = []
    for index, stop in enumerate(stops):
        param = f"stop[{index}]" if many else "stop"
        text = _text(stop, param)
        if not text or len(text) > MAX_STOP_CHARS:
            raise ApiError(400, f"`{param}` must be 1 to {MAX_STOP_CHARS} characters long.", param=param)
        found.append(text)
    return tuple(dict.fromkeys(found))


def _flag(body: dict[str, Any], name: str) -> bool:
    value = body.get(name)
    if value is not None and not isinstance(value, bool):
        raise ApiError(400, f"`{name}` must be true or false.", param=name)
    return bool(value)


def _refuse_unsupported(body: dict[str, Any]) -> None:
    """A 400 naming the first field this server cannot honour (see `_REFUSED` and the README's table)."""
    for name, message in _REFUSED.items():
        if body.get(name) not in (None, [], {}) and not (name == "tool_choice" and body[name] == "none"):
            raise ApiError(400, message, param=name, code="unsupported_parameter")
    response_format = body.get("response_format")
    if response_format is not None and response_format != {"type": "text"}:
        raise ApiError(
            400, 'Only response_format {"type": "text"} is supported; this server has no structured output.',
            param="response_format", code="unsupported_parameter",
        )
    if body.get("logprobs") not in (None, False):
        raise ApiError(400, "This server does not return logprobs.", param="logprobs", code="unsupported_parameter")
    if body.get("top_logprobs") not in (None, 0):
        raise ApiError(400, "This server does not return logprobs.", param="top_logprobs", code="unsupported_parameter")
    if body.get("logit_bias") not in (None, {}):
        raise ApiError(400, "logit_bias is not supported by this server.", param="logit_bias", code="unsupported_parameter")
    for name, neutral in _REFUSED_UNLESS_NEUTRAL.items():
        value = body.get(name)
        if not any(value == ok and type(value) is type(ok) for ok in neutral) and value is not None:
            raise ApiError(400, f"`{name}` is not supported by this server.", param=name, code="unsupported_parameter")
    modalities = body.get("modalities")
    if modalities is not None and modalities != ["text"]:
        raise ApiError(400, 'Only modalities ["text"] is supported.', param="modalities", code="unsupported_parameter")


def _max_tokens(body: dict[str, Any], cap: int) -> int:
    name = "max_completion_tokens" if body.get("max_completion_tokens") is not None else "max_tokens"
    value = body.get(name)
    if value is None:
        return cap
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ApiError(400, f"`{name}` must be a positive integer.", param=name, code="invalid_value")
    if value > cap:
        raise ApiError(
            400, f"`{name}` is {value}; this server answers with at most {cap} tokens.", param=name, code="invalid_value"
        )
    return value


def parse_data_uri(url: Any, param: str, limits: PictureLimits = DEFAULT_LIMITS) -> PromptImage:
    """The picture in a `data:image/...;base64,...` URI, its header checked (nothing is decoded here)."""
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
    except ValueError:  # binascii.Error, and non-ASCII text (UnicodeEncodeError)
        raise ApiError(400, "Malformed data URI: the data is not valid base64.", param=param, code="invalid_image_url") from None
    if not data:
        raise ApiError(400, "Malformed data URI: the picture is empty.", param=param, code="invalid_image_url")
    try:
        with open_picture(data, limits):
            pass
    except PictureRejected as exc:
        too_large = exc.problem in (PictureProblem.TOO_MANY_BYTES, PictureProblem.TOO_MANY_PIXELS)
        raise ApiError(400, exc.message, param=param, code="image_too_large" if too_large else "invalid_image") from None
    return PromptImage(hashlib.sha256(data).hexdigest(), data)


def parse_video_uri(url: Any, param: str, limits: VideoLimits = DEFAULT_VIDEO_LIMITS) -> PromptVideo:
    """The clip in a `data:video/...;base64,...` URI (or a GIF's `data:image/gif`), its container checked
    (nothing is decoded here: the engine decodes it when it prepares the request)."""
    match = _VIDEO_URI.match(url) if isinstance(url, str) else None
    if match is None:
        raise ApiError(
            400,
            "Only data URIs (data:video/mp4;base64,...) are accepted as video_url; this server does not fetch URLs.",
            param=param,
            code="invalid_video_url",
        )
    try:
        data = base64.b64decode(match.group("data"), validate=True)
    except ValueError:
        raise ApiError(400, "Malformed data URI: the data is not valid base64.", param=param, code="invalid_video_url") from None
    try:
        probe_video(data, limits)
    except VideoRejected as exc:
        too_large = exc.problem in (VideoProblem.TOO_MANY_BYTES, VideoProblem.TOO_LONG)
        raise ApiError(400, exc.message, param=param, code="video_too_large" if too_large else "invalid_video") from None
    return PromptVideo(hashlib.sha256(data).hexdigest(), data)


def _content(
    content: Any, param: str, limits: PictureLimits, image_params: list[str], videos: list[PromptVideo] | None = None
) -> tuple[str, tuple[PromptImage, ...]]:
    """The text and pictures of a message; its videos (`video_url` parts) go to `videos`."""
    if isinstance(content, str):
        return _text(content, param), ()
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
            texts.append(_text(part.get("text"), f"{where}.text"))
        elif kind == "image_url":
            spec = part.get("image_url")
            url = spec.get("url") if isinstance(spec, dict) else spec
            images.append(parse_data_uri(url, f"{where}.image_url.url", limits))
            image_params.append(f"{where}.image_url.url")
        elif kind == "video_url" and videos is not None:
            spec = part.get("video_url")
            url = spec.get("url") if isinstance(spec, dict) else spec
            videos.append(parse_video_uri(url, f"{where}.video_url.url"))
        else:
            shown = kind if isinstance(kind, str) and len(kind) <= 40 else type(kind).__name__
            raise ApiError(
                400, f"Unsupported content part type {shown!r}; use text, image_url or video_url.", param=f"{where}.type"
            )
    return "\n".join(texts), tuple(images)


def parse_chat_request(
    raw: bytes,
    *,
    models: tuple[str, ...],
    max_images: int,
    max_new_tokens: int,
    timeout_s: float | None,
    picture_limits: PictureLimits = DEFAULT_LIMITS,
) -> ChatCall:
    """The request in `raw`, or `ApiError`; nothing else is raised, whatever `raw` holds."""
    body = _load(raw)
    if not isinstance(body, dict):
        raise ApiError(400, "The request body must be a JSON object.", code="invalid_json")
    model = body.get("model")
    if model is None or model == "":
        model = models[0]
    model = _text(model, "model")
    if model not in models:
        shown = model if len(model) <= 100 else model[:100] + "..."
        raise ApiError(
            404,
            f"The model `{shown}` does not exist on this server; it serves {', '.join(models)}.",
            param="model",
            code="model_not_found",
        )
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise ApiError(400, "`messages` must be a non-empty list.", param="messages")
    n = body.get("n")
    if n is not None and (isinstance(n, bool) or n != 1):
        raise ApiError(400, "Only n=1 is supported.", param="n", code="unsupported_parameter")
    _refuse_unsupported(body)
    pictures = _count_images(messages)
    if pictures > max_images:
        raise ApiError(
            400,
            f"The request has {pictures} pictures; this server accepts at most {max_images} per request.",
            param="messages",
            code="too_many_images",
        )
    max_tokens = _max_tokens(body, max_new_tokens)
    temperature = _number(body, "temperature")
    if temperature is not None and not 0 <= temperature <= MAX_TEMPERATURE:
        raise ApiError(400, f"`temperature` must be between 0 and {MAX_TEMPERATURE:g}.", param="temperature")
    top_p = _number(body, "top_p")
    if top_p is not None and not 0 < top_p <= 1:
        raise ApiError(400, "`top_p` must be greater than 0 and at most 1.", param="top_p")
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise ApiError(400, "`stream` must be true or false.", param="stream")
    stream_options = body.get("stream_options")
    if stream_options is not None:
        if not isinstance(stream_options, dict):
            raise ApiError(400, "`stream_options` must be an object.", param="stream_options")
        if not stream:
            raise ApiError(400, "`stream_options` is only allowed with stream=true.", param="stream_options")
        if not isinstance(stream_options.get("include_usage", False), bool):
            raise ApiError(
                400, "`stream_options.include_usage` must be true or false.", param="stream_options.include_usage"
            )
    stop = _stops(body)
    seed = _integer(body, "seed", *_SEED_RANGE)
    presence = _in_range(body, "presence_penalty", -MAX_PENALTY, MAX_PENALTY, 0.0)
    frequency = _in_range(body, "frequency_penalty", -MAX_PENALTY, MAX_PENALTY, 0.0)
    ignore_eos = _flag(body, "ignore_eos")
    min_tokens = _integer(body, "min_tokens", 0, max_tokens)
    user = body.get("user")
    if user is not None:
        user = _text(user, "user")
        if len(user) > MAX_USER_CHARS:
            raise ApiError(400, f"`user` is longer than {MAX_USER_CHARS} characters.", param="user")
    turns: list[PromptTurn] = []
    image_params: list[str] = []
    for index, message in enumerate(messages):
        param = f"messages[{index}]"
        role = message.get("role") if isinstance(message, dict) else None
        if not isinstance(role, str) or role not in _ROLES:
            raise ApiError(400, "Each message needs a role of system, developer, user or assistant.", param=f"{param}.role")
        videos: list[PromptVideo] = []
        text, images = _content(message.get("content"), f"{param}.content", picture_limits, image_params, videos)
        turns.append(PromptTurn(_ROLES[role], text, images, tuple(videos)))  # type: ignore[arg-type]
    return ChatCall(
        model=model,
        turns=tuple(turns),
        limits=GenerationLimits(
            max_new_tokens=max_tokens,
            temperature=0.0 if temperature is None else temperature,
            top_p=1.0 if top_p is None else top_p,
            timeout_s=timeout_s,
            stop=stop,
            seed=seed,
            presence_penalty=presence,
            frequency_penalty=frequency,
            min_tokens=min_tokens or 0,
            ignore_eos=ignore_eos,
        ),
        stream=bool(stream),
        include_usage=bool(stream_options and stream_options.get("include_usage") is True),
        user=user or None,
        image_params=tuple(image_params),
    )


def _count_images(messages: list[Any]) -> int:
    count = 0
    for message in messages:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, list):
            count += sum(1 for part in content if isinstance(part, dict) and part.get("type") in ("image_url", "video_url"))
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
