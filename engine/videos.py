"""Reading screen recordings and GIFs: the one check and frame sampling every video passes (bot, engine, API server).

A video is accepted when it is at most `max_bytes` long, its container is one of the allowed ones
(MP4/MOV, WebM/Matroska, GIF: recognised by their first bytes, and FFmpeg is told which demuxer to
use, so playlist formats such as HLS, which open further URLs, never see the bytes), it has a video
stream of at most `max_pixels` per frame and lasts at most `max_seconds`.

Frames are sampled evenly in time, about `fps` per second and at most `max_frames` (an even number:
the Qwen vision towers read frames in pairs), each the decoded frame nearest its time, scaled down
to at most `keep_pixels` as soon as it is picked: a 60-second 4K clip never holds more than
`max_frames` small pictures. A phone clip stored sideways with a rotation flag (the display matrix,
which FFmpeg attaches to every decoded frame) is turned upright, and `VideoInfo` gives its upright
size. Decoding is bounded: at most `max_seconds x 240` frames are decoded, packet by packet, and a
decode that runs past `timeout_s` stops before its next packet (`_frames`: a hostile file, even one
whose first frame takes many packets or a slow one, cannot hold a worker thread), on one codec
thread, under the process's cap on concurrent decodes (`engine.pictures.decode_slot`). The first
frame decoded for a prompt's count (`probe_video(upright=True)`) is under the same limit.

Every refusal is a `VideoRejected` with a closed `VideoProblem`; its `message` is one sentence for
an API client. Torch-free: the bot and the API server import it.
"""

from __future__ import annotations

import io
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum

import av
import numpy as np
from PIL import Image

from engine.pictures import decode_slot

__all__ = [
    "DEFAULT_VIDEO_BUDGET",
    "DEFAULT_VIDEO_LIMITS",
    "SampledVideo",
    "VideoBudget",
    "VideoInfo",
    "VideoLimits",
    "VideoProblem",
    "VideoRejected",
    "container_of",
    "frame_count",
    "is_video",
    "kept_size",
    "probe_video",
    "sample_video",
]

MAX_DECODED_FPS = 240  # frames decoded per second of video at most, whatever the file claims


class VideoProblem(StrEnum):
    EMPTY = "empty"  # no bytes, or a video stream without a single frame
    TOO_MANY_BYTES = "too_many_bytes"
    TOO_LONG = "too_long"
    TOO_MANY_PIXELS = "too_many_pixels"
    NO_VIDEO = "no_video"  # a container with sound only
    DAMAGED = "damaged"  # not an allowed container, or data that does not decode
    TOO_SLOW = "too_slow"  # decoding ran past the time limit


@dataclass(frozen=True)
class VideoLimits:
    max_bytes: int = 50 * 1024**2
    max_seconds: float = 60.0
    max_pixels: int = 3840 * 2160  # per frame, as stored
    fps: float = 2.0  # frames sampled per second of video
    max_frames: int = 32  # sampled frames at most (fewer per second for long clips)
    keep_pixels: int = 1280 * 28 * 28  # a picked frame is scaled down to at most this many pixels
    timeout_s: float = 20.0


DEFAULT_VIDEO_LIMITS = VideoLimits()


@dataclass(frozen=True)
class VideoBudget:
    """How a video is read: the sampling limits, and the visual tokens all its frames may cost together
    (each frame's pixel size is chosen to fit: `engine.video_prompt`)."""

    limits: VideoLimits = DEFAULT_VIDEO_LIMITS
    max_tokens: int = 2560

    @property
    def tag(self) -> str:
        """What changes the frames and their size, for cache keys."""
        limits = self.limits
        return f"fps={limits.fps:g} frames={limits.max_frames} keep={limits.keep_pixels} tokens={self.max_tokens}"


DEFAULT_VIDEO_BUDGET = VideoBudget()


@dataclass(frozen=True)
class VideoInfo:
    container: str  # "mp4", "webm", "gif"
    width: int  # as shown: upright when the clip has a rotation flag (`probe_video(upright=True)`, `sample_video`)
    height: int
    duration_s: float


@dataclass(frozen=True)
class SampledVideo:
    info: VideoInfo
    frames: tuple[np.ndarray, ...]  # RGB, height x width x 3, all the same size
    times: tuple[float, ...]  # seconds from the start, the time each frame stands for

    @property
    def seconds_per_frame(self) -> float:
        return self.info.duration_s / len(self.frames)


class VideoRejected(ValueError):
    """A video refused; `message` is one sentence for an API client, the fields are for other wordings."""

    def __init__(self, problem: VideoProblem, message: str, *, seconds: float | None = None, detail: str = "") -> None:
        super().__init__(message)
        self.problem = problem
        self.message = message
        self.seconds = seconds
        self.detail = detail


# Brands of the ISO file format that mean a still picture (HEIF, AVIF) or an image sequence, not a clip:
# an AVIF or HEIC photo also starts with "ftyp" and is left to the picture checks.
_PICTURE_BRANDS = frozenset({b"avif", b"avis", b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"heif", b"mif1", b"msf1"})


def _brands(data: bytes) -> set[bytes]:
    """The major and compatible brands of an "ftyp" box at the start of the bytes."""
    size = min(int.from_bytes(data[:4], "big"), len(data), 256)
    compatible = data[16:size] if size >= 16 else b""
    return {data[8:12]} | {compatible[i : i + 4] for i in range(0, len(compatible) - 3, 4)}


# First bytes -> (our name, FFmpeg demuxer). MP4 and MOV carry "ftyp" (or an early "moov"/"mdat"
# box) at offset 4; WebM and Matroska start with the EBML magic; GIF with its signature.
def container_of(data: bytes) -> str | None:
    """"mp4", "webm" or "gif" when the bytes start like one of the allowed containers, else None."""
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if data[:4] == b"\x1a\x45\xdf\xa3":
        return "webm"
    if data[4:8] == b"ftyp" and _brands(data) & _PICTURE_BRANDS:
        return None
    if data[4:8] in (b"ftyp", b"moov", b"mdat", b"wide", b"free"):
        return "mp4"
    return None


_DEMUXER = {"mp4": "mov", "webm": "matroska", "gif": "gif"}


def is_video(data: bytes) -> bool:
    """Whether the bytes are a video for the model: an MP4/MOV/WebM file, or a GIF of more than one frame."""
    kind = container_of(data)
    if kind is None:
        return False
    if kind != "gif":
        return True
    try:
        with Image.open(io.BytesIO(data), formats=("GIF",)) as image:
            return bool(getattr(image, "is_animated", False))
    except Exception:  # a damaged GIF: the picture checks word it
        return False


def _open(data: bytes, limits: VideoLimits) -> tuple[av.container.InputContainer, str]:
    if not data:
        raise VideoRejected(VideoProblem.EMPTY, "The video is empty.")
    if len(data) > limits.max_bytes:
        mb = f"{len(data) / 1024**2:.0f} MB, over the {limits.max_bytes / 1024**2:.0f} MB limit"
        raise VideoRejected(VideoProblem.TOO_MANY_BYTES, f"The video is {mb}.")
    kind = container_of(data)
    if kind is None:
        raise VideoRejected(VideoProblem.DAMAGED, "The data is not a video in an accepted format (MP4, MOV, WebM or GIF).")
    try:
        container = av.open(io.BytesIO(data), mode="r", format=_DEMUXER[kind])
    except Exception as exc:  # PyAV raises its own error types, and ValueError/OSError on odd input
        raise VideoRejected(
            VideoProblem.DAMAGED, "The video is damaged or incomplete.", detail=f"{type(exc).__name__}: {exc}"
        ) from None
    return container, kind


def _duration(container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> float | None:
    if stream.duration is not None and stream.time_base is not None and stream.duration > 0:
        return float(stream.duration * stream.time_base)
    if container.duration is not None and container.duration > 0:
        return container.duration / 1_000_000
    return None


def _video_stream(container: av.container.InputContainer, limits: VideoLimits) -> tuple[av.video.stream.VideoStream, float | None]:
    if not container.streams.video:
        raise VideoRejected(VideoProblem.NO_VIDEO, "The file has no video, only sound.")
    stream = container.streams.video[0]
    width, height = stream.codec_context.width or 0, stream.codec_context.height or 0
    if width * height > limits.max_pixels:
        raise VideoRejected(
            VideoProblem.TOO_MANY_PIXELS, f"The video is {width}x{height} pixels, over the limit of {limits.max_pixels:,}."
        )
    duration = _duration(container, stream)
    if duration is not None and duration > limits.max_seconds + 0.5:
        raise VideoRejected(
            VideoProblem.TOO_LONG,
            f"The video is {duration:.0f} seconds long; at most {limits.max_seconds:.0f} seconds are accepted.",
            seconds=duration,
        )
    return stream, duration


def _quarter_turns(frame: av.VideoFrame) -> int:
    """Counter-clockwise quarter turns that show the frame upright (its display matrix's rotation, as
    FFmpeg attaches it to each decoded frame; a flip, which phones do not write, is ignored)."""
    return round(frame.rotation / 90) % 4


def _upright(width: int, height: int, turns: int) -> tuple[int, int]:
    return (height, width) if turns % 2 else (width, height)


def _decode_packet(packet: av.Packet) -> list[av.VideoFrame]:
    """The frames one packet gives (the last, empty packet `demux` yields flushes the decoder)."""
    return packet.decode()  # type: ignore[return-value]  # a video stream's packets give video frames


def _frames(container: av.container.InputContainer, stream: av.video.stream.VideoStream, began: float, timeout_s: float) -> Iterator[av.VideoFrame]:
    """The stream's frames, as `container.decode` gives them, but decoded one packet at a time with the clock
    read before each: past `timeout_s` from `began` it raises TOO_SLOW. (`container.decode` loops over the
    packets inside PyAV: a file whose first frame needs thousands of packets would never come back to us.)"""
    for packet in container.demux(stream):
        if time.monotonic() - began > timeout_s:
            raise VideoRejected(VideoProblem.TOO_SLOW, "The video took too long to decode.")
        yield from _decode_packet(packet)


def probe_video(data: bytes, limits: VideoLimits = DEFAULT_VIDEO_LIMITS, *, upright: bool = False) -> VideoInfo:
    """The container's facts: cheap, for a prompt's label. The header alone gives the stored size; with
    `upright` the first frame is decoded for its rotation flag (within `limits.timeout_s`), so the size is
    the one `sample_video` gives (a prompt counted from it matches the frames). Raises `VideoRejected`."""
    began = time.monotonic()
    container, kind = _open(data, limits)
    with container:
        stream, duration = _video_stream(container, limits)
        width, height = stream.codec_context.width, stream.codec_context.height
        if upright:
            with decode_slot():
                stream.codec_context.thread_count = 1
                try:
                    first = next(_frames(container, stream, began, limits.timeout_s), None)
                except VideoRejected:
                    raise
                except (MemoryError, RecursionError):
                    raise
                except Exception as exc:  # FFmpeg reports damage as InvalidDataError, EOFError, ValueError...
                    raise VideoRejected(
                        VideoProblem.DAMAGED, "The video is damaged or incomplete.", detail=f"{type(exc).__name__}: {exc}"
                    ) from None
            if first is None:
                raise VideoRejected(VideoProblem.EMPTY, "The video has no frames.")
            width, height = _upright(width, height, _quarter_turns(first))
        return VideoInfo(kind, width, height, duration or 0.0)


def frame_count(duration_s: float, limits: VideoLimits) -> int:
    """Frames sampled from a clip this long: about `fps` per second, at least 2, at most `max_frames`, even."""
    most = max(2, limits.max_frames - limits.max_frames % 2)
    count = min(most, max(2, math.ceil(duration_s * limits.fps)))
    return count + count % 2  # `most` is even: an odd count is below it


def _targets(duration_s: float, limits: VideoLimits) -> list[float]:
    """The times frames are sampled at: the middles of equal slices of the clip."""
    count = frame_count(duration_s, limits)
    return [(i + 0.5) * duration_s / count for i in range(count)]


def kept_size(width: int, height: int, keep_pixels: int) -> tuple[int, int]:
    """(width, height) of a sampled frame: the source scaled down to at most `keep_pixels`."""
    scale = min(1.0, math.sqrt(keep_pixels / max(1, width * height)))
    return max(2, round(width * scale)), max(2, round(height * scale))


def _keep(frame: av.VideoFrame, keep_pixels: int, turns: int) -> np.ndarray:
    w, h = kept_size(frame.width, frame.height, keep_pixels)
    pixels = frame.to_ndarray(width=w, height=h, format="rgb24")
    return np.ascontiguousarray(np.rot90(pixels, turns)) if turns else pixels


def sample_video(data: bytes, limits: VideoLimits = DEFAULT_VIDEO_LIMITS) -> SampledVideo:
    """Check and decode the video; its sampled frames with their times. Slow: call it from a worker thread.

    Raises `VideoRejected`."""
    began = time.monotonic()
    container, kind = _open(data, limits)
    with container, decode_slot():
        stream, duration = _video_stream(container, limits)
        stream.codec_context.thread_count = 1
        rate = float(stream.average_rate) if stream.average_rate else 25.0
        # Unknown duration (some GIFs and WebMs): candidates every 1/fps, thinned once the end is known.
        step = 1 / limits.fps
        targets = _targets(duration, limits) if duration else None
        picked: list[tuple[float, np.ndarray]] = []
        previous: tuple[float, av.VideoFrame] | None = None
        decoded, last_time = 0, 0.0
        turns = 0  # the first frame's rotation flag, kept for every frame (all the same size)
        budget = max(2, int(limits.max_seconds * MAX_DECODED_FPS))

        def wanted(index: int) -> float:
            return targets[index] if targets is not None else index * step

        try:
            for frame in _frames(container, stream, began, limits.timeout_s):
                decoded += 1
                if decoded == 1:
                    turns = _quarter_turns(frame)
                if decoded > budget:
                    raise VideoRejected(VideoProblem.TOO_LONG, "The video has more frames than a clip that long can have.")
                ft = float(frame.time) if frame.time is not None else (decoded - 1) / rate
                last_time = max(last_time, ft)
                if ft > limits.max_seconds + 0.5:
                    raise VideoRejected(
                        VideoProblem.TOO_LONG,
                        f"The video is longer than {limits.max_seconds:.0f} seconds.",
                        seconds=ft,
                    )
                while (targets is None or len(picked) < len(targets)) and ft >= wanted(len(picked)):
                    target = wanted(len(picked))
                    if previous is not None and target - previous[0] < ft - target:
                        picked.append((target, _keep(previous[1], limits.keep_pixels, turns)))
                    else:
                        picked.append((target, _keep(frame, limits.keep_pixels, turns)))
                previous = (ft, frame)
        except VideoRejected:
            raise
        except (MemoryError, RecursionError):
            raise
        except Exception as exc:  # FFmpeg reports damage as InvalidDataError, EOFError, ValueError...
            if previous is None:
                raise VideoRejected(
                    VideoProblem.DAMAGED, "The video is damaged or incomplete.", detail=f"{type(exc).__name__}: {exc}"
                ) from None
            # A clip cut short still shows what it shows: sample what was decoded.
        if previous is None:
            raise VideoRejected(VideoProblem.EMPTY, "The video has no frames.")
        end = duration if duration else last_time + 1 / rate
        if targets is None:
            targets = _targets(end, limits)
            # Nearest candidate (taken every 1/fps) for each target.
            candidates = picked or [(previous[0], _keep(previous[1], limits.keep_pixels, turns))]
            picked = [min(candidates, key=lambda c: abs(c[0] - t)) for t in targets]
            picked = [(t, frame) for t, (_, frame) in zip(targets, picked, strict=True)]
        while len(picked) < len(targets):  # targets past the last frame: the last frame stands for them
            picked.append((targets[len(picked)], _keep(previous[1], limits.keep_pixels, turns)))
        width, height = _upright(stream.codec_context.width, stream.codec_context.height, turns)
        frames = [frame for _, frame in picked]
        size = frames[0].shape[:2]
        frames = [f if f.shape[:2] == size else np.asarray(Image.fromarray(f).resize((size[1], size[0]))) for f in frames]
        return SampledVideo(VideoInfo(kind, width, height, end), tuple(frames), tuple(t for t, _ in picked))
