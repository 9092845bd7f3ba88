"""Checking screen recordings and GIFs users send, off the event loop, and wording each refusal.

The checks are the engine's own (`engine.videos.sample_video`: the allowed containers, size,
length, a video stream, a bounded decode of the frames the model will see), so a video the bot
accepts is one the engine reads. The decode runs in a worker thread and stops itself at the limits'
`timeout_s`: a hostile file costs one thread for a bounded time and never blocks other answers.
A checked video is kept like a picture (by hash); `bot.prompt` tells the two apart by their bytes.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
from dataclasses import dataclass

from bot.config import Settings
from bot.pictures import CheckedPicture, PictureRejected
from bot.wording import (
    VIDEO_DAMAGED,
    VIDEO_EMPTY,
    VIDEO_NO_PICTURE,
    VIDEO_TOO_BIG,
    VIDEO_TOO_LONG,
    VIDEO_TOO_MANY_PIXELS,
    VIDEO_TOO_SLOW,
    video_refused,
)
from engine.arch import ARCHS
from engine.videos import (
    VideoBudget,
    VideoLimits,
    VideoProblem,
    VideoRejected,
    is_video,
    probe_video,
    sample_video,
)

__all__ = [
    "REFUSAL_TEXTS",
    "CheckedVideo",
    "check_video",
    "duration_label",
    "is_video",
    "video_budget",
    "video_limits",
    "video_pictures",
    "video_seconds",
]

_MIME = {"mp4": "video/mp4", "webm": "video/webm", "gif": "image/gif"}


def _mime_type(data: bytes, container: str) -> str:
    """The type the clip is recorded with (`Store.record_image`): the engine reads MOV as MP4, but a QuickTime
    movie (an iPhone or Mac screen recording, brand "qt  ") is video/quicktime, as the web chat serves it."""
    if container == "mp4" and data[4:12] == b"ftypqt  ":
        return "video/quicktime"
    return _MIME[container]


def video_limits(settings: Settings) -> VideoLimits:
    return VideoLimits(
        max_bytes=settings.max_video_bytes,
        max_seconds=settings.max_video_seconds,
        max_frames=settings.video_max_frames,
        timeout_s=settings.video_timeout_s,
    )


def video_budget(settings: Settings) -> VideoBudget:
    """How the engine reads videos: the limits, and at most half the context's tokens for one video's frames."""
    return VideoBudget(video_limits(settings), min(settings.video_max_tokens, max(16, settings.context_tokens // 2)))


# What each refusal says (`bot.wording`), by the engine's reason.
REFUSAL_TEXTS: dict[VideoProblem, str] = {
    VideoProblem.EMPTY: VIDEO_EMPTY,
    VideoProblem.TOO_MANY_BYTES: VIDEO_TOO_BIG,
    VideoProblem.TOO_LONG: VIDEO_TOO_LONG,
    VideoProblem.TOO_MANY_PIXELS: VIDEO_TOO_MANY_PIXELS,
    VideoProblem.NO_VIDEO: VIDEO_NO_PICTURE,
    VideoProblem.DAMAGED: VIDEO_DAMAGED,
    VideoProblem.TOO_SLOW: VIDEO_TOO_SLOW,
}


def _wording(refused: VideoRejected, name: str | None, limits: VideoLimits) -> str:
    limit = ""
    if refused.problem is VideoProblem.TOO_MANY_BYTES:
        limit = f"{limits.max_bytes / 1024**2:.0f} MB"
    elif refused.problem is VideoProblem.TOO_LONG:
        limit = f"{limits.max_seconds:.0f}"
    return video_refused(REFUSAL_TEXTS[refused.problem], name, limit)


@dataclass(frozen=True)
class CheckedVideo:
    picture: CheckedPicture  # kept and stored like a picture
    seconds: float  # its length, as sampled
    frames: int  # frames the model will see


async def check_video(data: bytes, limits: VideoLimits, *, name: str | None = None) -> CheckedVideo:
    """Decode the frames the model will see (in a worker thread) to prove the video is usable.

    Raises `bot.pictures.PictureRejected` with one line for the user, like a refused picture."""
    try:
        sampled = await asyncio.to_thread(sample_video, data, limits)
    except VideoRejected as refused:
        raise PictureRejected(_wording(refused, name, limits)) from None
    info = sampled.info
    picture = CheckedPicture(hashlib.sha256(data).hexdigest(), data, _mime_type(data, info.container), info.width, info.height)
    return CheckedVideo(picture, info.duration_s, len(sampled.frames))


# Visual tokens per picture side of the architecture whose pictures cost the fewest tokens (Qwen3-VL's 32 px):
# a video's cost counted in such pictures is never less than on the model actually served.
_LARGEST_FACTOR = max(arch.patch_factor for arch in ARCHS.values())


def video_pictures(frames: int, max_tokens: int, max_pixels: int) -> int:
    """The pictures (of `max_pixels` each) a video of `frames` sampled frames may cost at most, in a message's
    pictures budget (`bot.picture_inputs`): the towers read frames in pairs and a pair is sized like one picture
    at most, and the whole video costs at most `max_tokens` (`engine.video_prompt`)."""
    pairs = math.ceil(frames / 2)
    picture_tokens = max(1, max_pixels // (_LARGEST_FACTOR * _LARGEST_FACTOR))
    return max(1, min(pairs, math.ceil(max_tokens / picture_tokens)))


def video_seconds(data: bytes) -> float | None:
    """The clip's length from its container (nothing decoded); None when the header does not say."""
    try:
        seconds = probe_video(data, VideoLimits(max_bytes=len(data) + 1, max_seconds=float("inf"))).duration_s
    except VideoRejected:
        return None
    return seconds or None


def duration_label(seconds: float | None) -> str:
    """"0:07", "1:05"; "unknown length" when the container does not say."""
    if seconds is None:
        return "unknown length"
    whole = round(seconds)
    return f"{whole // 60}:{whole % 60:02d}"
