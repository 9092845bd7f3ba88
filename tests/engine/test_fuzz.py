"""Fuzzing the engine server's request parser and the picture check (issue 11): any input is refused
with their own error type or accepted as a valid value, never another exception.

Bounded for CI: each test runs at most 200 examples with a per-example deadline; no example database
is written. The whole module takes a few seconds.
"""

from __future__ import annotations

import base64
import json
import math
from datetime import timedelta
from typing import Any

import torch
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

from engine.images import PreparedImage, prepare_image, smart_resize
from engine.pictures import ALLOWED_FORMATS, PictureInfo, PictureLimits, PictureRejected, check_picture
from engine.pixels import prepare_pixels
from engine.server_api import MAX_TEMPERATURE, ApiError, ChatCall, parse_chat_request
from tests.engine.pictures import EPS, SVG, bomb_header, encoded, noise, thin_png, truncated_jpeg

FUZZ = settings(
    max_examples=200,
    deadline=timedelta(seconds=2),
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
MODELS = ("tiny", "alias")
CAP = 64
LIMITS = PictureLimits(max_bytes=200_000, max_pixels=2_000_000)

SEEDS = [encoded(fmt) for fmt in ALLOWED_FORMATS] + [
    encoded("PNG", (8, 8), "P"),
    encoded("PNG", (8, 8), "LA"),
    encoded("TIFF", (8, 8), "I;16"),
    encoded("GIF", (8, 8), "L"),
    encoded("JPEG", (8, 8), "CMYK"),
    noise((24, 16), "JPEG"),
    truncated_jpeg(),
    thin_png(1, 300),
    bomb_header(3000, 3000),
    EPS,
    SVG,
    encoded("ICO", (16, 16)),
]

# Text, often with a lone surrogate (valid JSON as an escape, invalid Unicode).
texts = st.text(max_size=12) | st.builds(
    "".join, st.lists(st.text(max_size=4) | st.characters(categories=["Cs"]), min_size=1, max_size=4)
)
scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True, allow_infinity=True) | texts
values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(texts, inner, max_size=3), max_leaves=12
)
numbers = st.integers(min_value=-5, max_value=10**6) | st.floats(allow_nan=True, allow_infinity=True) | values


@st.composite
def pictures(draw: st.DrawFn) -> bytes:
    """A real picture of every allowed format (and some refused ones), bytes overwritten and cut at random."""
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for position, value in draw(st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), max_size=6)):
        data[position % len(data)] = value
    if draw(st.booleans()):
        data = data[: draw(st.integers(0, len(data)))]
    return bytes(data)


def data_uri(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode()


urls = st.one_of(
    pictures().map(data_uri),
    st.binary(max_size=64).map(data_uri),
    st.sampled_from(["data:image/png;base64,!!", "data:,x", "https://example.com/a.png", "data:image/png;base64,"]),
    values,
)
parts = st.one_of(
    st.fixed_dictionaries({"type": st.just("text"), "text": texts}),
    st.fixed_dictionaries({"type": st.just("image_url"), "image_url": st.fixed_dictionaries({"url": urls}) | urls}),
    st.fixed_dictionaries({"type": values, "text": values, "image_url": values}),
    values,
)
# Mostly well-formed requests with one or two bad fields, so that accepted ones are common too.
messages = st.fixed_dictionaries(
    {
        "role": st.sampled_from(["system", "developer", "user", "assistant"]) | st.sampled_from(["tool"]) | values,
        "content": texts | st.lists(parts, max_size=3) | st.none() | values,
    }
)
requests = st.fixed_dictionaries(
    {"messages": st.lists(messages, min_size=1, max_size=3) | values},
    optional={
        "model": st.sampled_from([*MODELS, "other"]) | values,
        "temperature": st.floats(0, MAX_TEMPERATURE) | numbers,
        "top_p": st.floats(0, 1) | numbers,
        "max_tokens": st.integers(1, CAP) | numbers,
        "max_completion_tokens": st.integers(1, CAP) | numbers,
        "n": st.just(1) | numbers,
        "stream": st.booleans() | values,
        "stream_options": st.fixed_dictionaries({"include_usage": st.booleans() | values}) | values,
        "user": texts | values,
    },
)


def parse(raw: bytes) -> ChatCall | None:
    try:
        return parse_chat_request(raw, models=MODELS, max_images=4, max_new_tokens=CAP, timeout_s=30.0, picture_limits=LIMITS)
    except ApiError as exc:
        assert 400 <= exc.status < 500 and exc.message and set(exc.body()["error"]) == {"message", "type", "param", "code"}
        json.dumps(exc.body())  # what the server sends must serialise
        return None


def assert_valid(call: ChatCall) -> None:
    limits = call.limits
    assert math.isfinite(limits.temperature) and 0 <= limits.temperature <= MAX_TEMPERATURE
    assert math.isfinite(limits.top_p) and 0 < limits.top_p <= 1
    assert isinstance(limits.max_new_tokens, int) and 1 <= limits.max_new_tokens <= CAP
    assert call.model in MODELS and call.turns
    for turn in call.turns:
        assert turn.role in ("system", "user", "assistant")
        turn.text.encode("utf-8")  # no lone surrogates get through
    assert len(call.image_params) == sum(len(turn.images) for turn in call.turns) <= 4
    if call.user is not None:
        call.user.encode("utf-8")


@FUZZ
@given(requests)
def test_chat_requests_parse_or_are_refused(body: dict[str, Any]) -> None:
    raw = json.dumps(body, allow_nan=True, ensure_ascii=True).encode()  # NaN and Infinity literals included
    call = parse(raw)
    event("accepted" if call is not None else "refused")
    if call is not None:
        assert_valid(call)


@FUZZ
@given(st.binary(max_size=300) | values.map(lambda v: json.dumps(v, allow_nan=True).encode()))
def test_any_bytes_parse_or_are_refused(raw: bytes) -> None:
    call = parse(raw)
    if call is not None:
        assert_valid(call)


@FUZZ
@given(st.integers(1, 200_000), st.integers(1, 200_000))
def test_deep_or_wide_json_is_refused_cleanly(depth: int, width: int) -> None:
    raw = b'{"messages": ' + b"[" * depth + b"]" * depth + b', "user": "' + b"u" * (width % 1000) + b'"}'
    assert parse(raw) is None


@FUZZ
@given(pictures() | st.binary(max_size=400))
def test_picture_check_accepts_or_refuses(data: bytes) -> None:
    try:
        info = check_picture(data, LIMITS)
    except PictureRejected as exc:
        assert exc.message and "\n" not in exc.message
    else:
        assert isinstance(info, PictureInfo) and info.format in (*ALLOWED_FORMATS, "MPO")
        assert info.width * info.height <= LIMITS.max_pixels
    try:
        prepared = prepare_image(data, factor=28, min_pixels=4 * 28 * 28, max_pixels=64 * 28 * 28, limits=LIMITS)
    except PictureRejected:
        return
    assert isinstance(prepared, PreparedImage) and prepared.image.mode == "RGB"
    width, height = prepared.image.size
    assert width % 28 == 0 and height % 28 == 0 and width * height <= 64 * 28 * 28
    # The local engine's path: the same checks passed, the same size.
    pixels = prepare_pixels(data, factor=28, min_pixels=4 * 28 * 28, max_pixels=64 * 28 * 28, limits=LIMITS).pixels
    assert pixels.dtype == torch.uint8 and pixels.shape == (3, height, width)


@FUZZ
@given(st.integers(1, 100_000), st.integers(1, 100_000), st.sampled_from([28, 32]), st.integers(4, 5000))
def test_resize_fits_the_budget_for_every_allowed_aspect(height: int, width: int, factor: int, tokens: int) -> None:
    assume(max(height, width) / min(height, width) <= LIMITS.max_aspect)  # else refused before any resize
    max_pixels = tokens * factor * factor
    h, w = smart_resize(height, width, factor, 4 * factor * factor, max_pixels)
    assert h % factor == 0 and w % factor == 0 and h >= factor and w >= factor
    assert h * w <= max_pixels
