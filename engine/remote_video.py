"""A video for a remote OpenAI-compatible server: a `video_url` data URI, or its frames as pictures.

vLLM (and `vlmbot engine serve`) read `video_url` parts and sample the clip themselves; other
servers get the frames this engine would sample (`engine.videos`: about 2 per second, at most
`max_frames`), each after its time as text ("<1.5 seconds>"), each sized so all of them together
cost at most the video's token budget as pictures (a picture is not merged in time, so a frame
costs what a pair of frames costs as video). Torch-free: a bot talking to a server never imports torch.
"""

from __future__ import annotations

import base64
import io
from typing import Any

from PIL import Image

from engine.images import smart_resize
from engine.interface import PromptVideo
from engine.videos import VideoBudget, container_of, sample_video

__all__ = ["VIDEO_FRAMING_BYTES", "video_parts"]

_MIME = {"mp4": "video/mp4", "webm": "video/webm", "gif": "image/gif"}
VIDEO_FRAMING_BYTES = 64  # a frame's time label and picture tokens, as bytes of the prompt bound


def video_parts(video: PromptVideo, *, as_url: bool, factor: int, max_pixels: int, budget: VideoBudget) -> list[dict[str, Any]]:
    """The content parts standing for the video. Slow for frames (a decode): call it from a worker thread.

    Raises `engine.videos.VideoRejected`."""
    if as_url:
        mime = _MIME.get(container_of(video.data) or "", "video/mp4")
        return [{"type": "video_url", "video_url": {"url": f"data:{mime};base64,{base64.b64encode(video.data).decode()}"}}]
    sampled = sample_video(video.data, budget.limits)
    count = len(sampled.frames)
    per_frame = max(4 * factor * factor, min(max_pixels, budget.max_tokens // count * factor * factor))
    parts: list[dict[str, Any]] = []
    for time_s, frame in zip(sampled.times, sampled.frames, strict=True):
        height, width = frame.shape[:2]
        h, w = smart_resize(height, width, factor, min(4 * factor * factor, per_frame), per_frame)
        out = io.BytesIO()
        Image.fromarray(frame).resize((w, h), Image.Resampling.BICUBIC).save(out, format="JPEG", quality=90)
        uri = f"data:image/jpeg;base64,{base64.b64encode(out.getvalue()).decode()}"
        parts += [{"type": "text", "text": f"<{time_s:.1f} seconds>"}, {"type": "image_url", "image_url": {"url": uri}}]
    return parts
