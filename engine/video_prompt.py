"""A video as the model's input: its frames' pixel size, its visual-token slots and its timing.

The frames (`engine.videos.sample_video`: about 2 per second, evenly spaced) are resized so the
whole video costs at most `VideoBudget.max_tokens` visual tokens: the Qwen towers read frames in
pairs (temporal patch 2), and a pair of frames of P pixels costs P / factor^2 tokens, so each frame
gets at most max_tokens / pairs x factor^2 pixels (and never more than a picture's budget).

The two families place time differently, as their processors do:
- Qwen2.5-VL: one run of `<|video_pad|>` tokens for the grid (pairs, h, w); M-RoPE's time axis
  advances `tokens_per_second x seconds_per_grid` per pair (`second_per_grid_ts`).
- Qwen3-VL: one run per pair, each after its time as text ("<0.5 seconds>") and inside its own
  vision start/end tokens; `get_rope_index` treats each run as a (1, h, w) grid.
Either way a video is a list of slots (one, or one per pair) that the decoding loop treats like
pictures: encoded by the vision tower (which attends within each frame pair, so a pair's features
do not depend on the other pairs), cached by `ImageKey` (the video's hash, its sampling and the slot
number), fed to the model as `video` encoder outputs. The plan (grids, times) follows from the
container's duration and frame size (upright: the first frame is decoded for its rotation flag), so a
prompt is counted without sampling the clip.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
from PIL import Image

from engine.arch import ArchName
from engine.features import ImageKey
from engine.images import smart_resize
from engine.interface import PromptVideo
from engine.loader import LoadedModel
from engine.videos import SampledVideo, VideoBudget, VideoInfo, frame_count, kept_size, probe_video, sample_video

__all__ = [
    "PreparedVideo",
    "VideoPlan",
    "plan_from_info",
    "prepare_video",
    "reference_video",
    "slot_key",
    "video_key",
    "video_pieces",
]

Grid = tuple[int, int, int]


@dataclass(frozen=True)
class VideoPlan:
    grids: tuple[Grid, ...]  # one per slot
    labels: tuple[str, ...]  # text before each slot ("" on Qwen2.5-VL)
    seconds_per_grid: float  # time from one frame pair to the next
    duration_s: float


@dataclass(frozen=True)
class PreparedVideo:
    plan: VideoPlan
    pixels: tuple[torch.Tensor, ...]  # one per slot, in the model's dtype


def video_key(loaded: LoadedModel, video: PromptVideo, min_pixels: int, max_pixels: int, budget: VideoBudget, tenant: str) -> ImageKey:
    return ImageKey(video.sha256, loaded.patch_factor, min_pixels, max_pixels, False, tenant, f"video {budget.tag}")


def slot_key(key: ImageKey, index: int) -> ImageKey:
    return replace(key, part=f"{key.part} pair={index}")


def _per_pair(loaded: LoadedModel) -> bool:
    return loaded.arch.name == ArchName.QWEN3_VL


def _frame_size(width: int, height: int, frames: int, factor: int, max_pixels: int, budget: VideoBudget) -> tuple[int, int]:
    """(height, width) of every frame as the model reads it."""
    pairs = math.ceil(frames / 2)
    per_frame = min(max_pixels, budget.max_tokens // pairs * factor * factor)
    per_frame = max(per_frame, 4 * factor * factor)
    return smart_resize(height, width, factor, min(4 * factor * factor, per_frame), per_frame)


def _plan(loaded: LoadedModel, grid: Grid, times: list[float], seconds_per_frame: float, duration: float) -> VideoPlan:
    pairs, h, w = grid
    if not _per_pair(loaded):
        return VideoPlan((grid,), ("",), 2 * seconds_per_frame, duration)
    if len(times) % 2:
        times = [*times, times[-1]]
    labels = tuple(f"<{(times[2 * i] + times[2 * i + 1]) / 2:.1f} seconds>" for i in range(pairs))
    return VideoPlan(tuple((1, h, w) for _ in range(pairs)), labels, 2 * seconds_per_frame, duration)


def plan_from_info(loaded: LoadedModel, info: VideoInfo, max_pixels: int, budget: VideoBudget) -> VideoPlan | None:
    """The plan from the container's facts alone; None when its duration is unknown (decode to know)."""
    if info.duration_s <= 0:
        return None
    count = frame_count(info.duration_s, budget.limits)
    width, height = kept_size(info.width, info.height, budget.limits.keep_pixels)
    factor, patch = loaded.patch_factor, loaded.patch_factor // loaded.arch.merge_size
    h, w = _frame_size(width, height, count, factor, max_pixels, budget)
    times = [(i + 0.5) * info.duration_s / count for i in range(count)]
    return _plan(loaded, (count // 2, h // patch, w // patch), times, info.duration_s / count, info.duration_s)


def probe_plan(loaded: LoadedModel, video: PromptVideo, max_pixels: int, budget: VideoBudget) -> VideoPlan:
    """The plan, from the container's header when it says how long the clip is, else by decoding it."""
    plan = plan_from_info(loaded, probe_video(video.data, budget.limits, upright=True), max_pixels, budget)
    return plan if plan is not None else prepare_video(loaded, video, max_pixels, budget).plan


def _resized(sampled: SampledVideo, loaded: LoadedModel, max_pixels: int, budget: VideoBudget) -> np.ndarray:
    height, width = sampled.frames[0].shape[:2]
    h, w = _frame_size(width, height, len(sampled.frames), loaded.patch_factor, max_pixels, budget)
    return np.stack([np.asarray(Image.fromarray(f).resize((w, h), Image.Resampling.BICUBIC)) for f in sampled.frames])


def prepare_video(loaded: LoadedModel, video: PromptVideo, max_pixels: int, budget: VideoBudget) -> PreparedVideo:
    """Decode, sample, resize and normalise one video: its plan and each slot's pixel values.

    Raises `engine.videos.VideoRejected`."""
    sampled = sample_video(video.data, budget.limits)
    frames = _resized(sampled, loaded, max_pixels, budget)
    out = loaded.processor.video_processor(
        videos=[frames], do_sample_frames=False, do_resize=False, cap_pixels_per_frame=False, return_tensors="pt"
    )
    grid: Grid = tuple(int(x) for x in out["video_grid_thw"][0].tolist())  # type: ignore[assignment]
    pixels = out["pixel_values_videos"].to(loaded.dtype)
    plan = _plan(loaded, grid, list(sampled.times), sampled.seconds_per_frame, sampled.info.duration_s)
    if len(plan.grids) == 1:
        return PreparedVideo(plan, (pixels,))
    rows = grid[1] * grid[2]
    return PreparedVideo(plan, tuple(pixels[i * rows : (i + 1) * rows] for i in range(grid[0])))


def video_pieces(loaded: LoadedModel, plan: VideoPlan) -> list[str | int]:
    """What replaces the chat template's `<|video_pad|>`: text, and slot numbers where visual tokens go."""
    if not _per_pair(loaded):
        return [0]
    processor = loaded.processor
    pieces: list[str | int] = []
    for index, label in enumerate(plan.labels):
        pieces += [label + processor.vision_start_token, index, processor.vision_end_token]
    return pieces


def reference_video(loaded: LoadedModel, video: PromptVideo, max_pixels: int, budget: VideoBudget) -> tuple[np.ndarray, Any]:
    """The frames and metadata to give the HF processor itself (a full recompute's input, in tests and bench)."""
    from transformers.video_utils import VideoMetadata

    sampled = sample_video(video.data, budget.limits)
    frames = _resized(sampled, loaded, max_pixels, budget)
    spf = sampled.seconds_per_frame
    metadata = VideoMetadata(
        total_num_frames=len(frames),
        fps=1 / spf,
        frames_indices=[t / spf for t in sampled.times],  # type: ignore[misc]  # times, not whole frames
        duration=sampled.info.duration_s,
        width=frames.shape[2],
        height=frames.shape[1],
    )
    return frames, metadata
