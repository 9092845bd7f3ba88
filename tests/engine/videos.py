"""Short clips made with PyAV for the tests: solid colours and moving bars, as MP4, MOV, WebM and GIF."""

from __future__ import annotations

import hashlib
import io
import time
from typing import Any

import av
import numpy as np
from PIL import Image

from engine.interface import PromptVideo

COLOURS = [(220, 40, 40), (40, 200, 60), (40, 80, 220), (230, 200, 40), (200, 60, 200), (60, 200, 200)]


def frame(index: int, size: tuple[int, int]) -> np.ndarray:
    """A frame whose patches differ: a colour per second and a bar that moves (solid frames would give
    every visual token the same features)."""
    width, height = size
    rng = np.random.default_rng(index)
    pixels = rng.integers(0, 60, (height, width, 3), dtype=np.uint8)
    pixels += np.array(COLOURS[index % len(COLOURS)], dtype=np.uint8) // 2
    bar = (index * 7) % max(1, width - 8)
    pixels[:, bar : bar + 8] = 255
    return pixels


def clip(
    seconds: float = 2.0, rate: int = 10, size: tuple[int, int] = (96, 64), container: str = "mp4", rotation: int = 0
) -> bytes:
    """An MP4 or QuickTime MOV (MPEG-4 part 2), WebM (VP8) or GIF of `seconds` seconds; `rotation` writes a display
    matrix (degrees counter-clockwise, as a phone flags a clip it stored sideways)."""
    frames = [frame(i, size) for i in range(round(seconds * rate))]
    if container == "gif":
        pictures = [Image.fromarray(f) for f in frames]
        out = io.BytesIO()
        pictures[0].save(out, format="GIF", save_all=True, append_images=pictures[1:], duration=1000 // rate, loop=0)
        return out.getvalue()
    codec = {"mp4": "mpeg4", "mov": "mpeg4", "webm": "libvpx"}[container]
    out = io.BytesIO()
    with av.open(out, "w", format=container) as muxer:
        stream = muxer.add_stream(codec, rate=rate)
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
        if rotation:
            stream.set_display_rotation(rotation)
        for pixels in frames:
            muxer.mux(stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")))
        muxer.mux(stream.encode())
    return out.getvalue()


def sound_only(seconds: float = 1.0) -> bytes:
    """An MP4 with an AAC track and no video."""
    out = io.BytesIO()
    with av.open(out, "w", format="mp4") as muxer:
        stream = muxer.add_stream("aac", rate=16000)
        for _ in range(round(seconds * 16000 / 1024)):
            chunk = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            chunk.sample_rate = 16000
            muxer.mux(stream.encode(chunk))
        muxer.mux(stream.encode())
    return out.getvalue()


def prompt_video(data: bytes) -> PromptVideo:
    return PromptVideo(hashlib.sha256(data).hexdigest(), data)


def slow_first_frame(monkeypatch: Any, delay_s: float = 0.05) -> list[int]:
    """Replays a hostile clip whose first frame is slow to come: from now on every packet of every video takes
    `delay_s` to decode and gives no frame (as a stream of undecodable packets before its first picture does).
    Returns the list that grows by one per packet decoded, to show the decode stopped early."""
    import engine.videos

    decoded: list[int] = []

    def slow(packet: Any) -> list[Any]:
        decoded.append(packet.size)
        time.sleep(delay_s)
        return []

    monkeypatch.setattr(engine.videos, "_decode_packet", slow)
    return decoded


def packet_count(data: bytes) -> int:
    """Packets of the clip's video stream (the flushing one included), as `engine.videos` decodes them."""
    with av.open(io.BytesIO(data)) as container:
        return sum(1 for _ in container.demux(container.streams.video[0]))
