"""The one video check and frame sampling (`engine.videos`): what is sampled, and what is refused."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from engine.videos import VideoLimits, VideoProblem, VideoRejected, container_of, frame_count, is_video, probe_video, sample_video
from tests.engine.videos import clip, packet_count, slow_first_frame, sound_only


@pytest.mark.parametrize("container", ["mp4", "webm", "gif"])
def test_frames_are_sampled_evenly_about_two_per_second(container: str) -> None:
    sampled = sample_video(clip(seconds=2.0, container=container))
    assert sampled.times == (0.25, 0.75, 1.25, 1.75) and sampled.info.duration_s == 2.0
    assert len({frame.shape for frame in sampled.frames}) == 1 and sampled.frames[0].shape == (64, 96, 3)
    assert sampled.info.container == container and is_video(clip(seconds=2.0, container=container))


def test_long_clips_get_fewer_frames_per_second_and_an_even_count() -> None:
    limits = VideoLimits(max_frames=32)
    assert [frame_count(s, limits) for s in (0.4, 1.0, 2.6, 10.0, 60.0)] == [2, 2, 6, 20, 32]
    assert frame_count(60.0, VideoLimits(max_frames=9)) == 8


def test_frames_are_scaled_down_as_soon_as_they_are_picked() -> None:
    sampled = sample_video(clip(seconds=1.0, size=(640, 480)), VideoLimits(keep_pixels=160 * 120))
    assert sampled.frames[0].shape == (120, 160, 3)
    assert probe_video(clip(seconds=1.0, size=(640, 480))).width == 640  # the probe reads the header only


@pytest.mark.parametrize(
    ("data", "limits", "problem"),
    [
        (b"", VideoLimits(), VideoProblem.EMPTY),
        (clip(seconds=3.0), VideoLimits(max_seconds=2), VideoProblem.TOO_LONG),
        (clip(seconds=1.0), VideoLimits(max_bytes=100), VideoProblem.TOO_MANY_BYTES),
        (clip(seconds=1.0, size=(96, 64)), VideoLimits(max_pixels=95 * 64), VideoProblem.TOO_MANY_PIXELS),
        (sound_only(), VideoLimits(), VideoProblem.NO_VIDEO),
        (clip(seconds=2.0)[:300], VideoLimits(), VideoProblem.DAMAGED),
        (clip(seconds=2.0), VideoLimits(timeout_s=0.0), VideoProblem.TOO_SLOW),
        # A playlist would make FFmpeg open further URLs: it is never handed to a demuxer at all.
        (b"#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1,\nhttp://127.0.0.1:9/x.ts\n#EXT-X-ENDLIST\n", VideoLimits(), VideoProblem.DAMAGED),
        (b"file:///etc/passwd", VideoLimits(), VideoProblem.DAMAGED),
    ],
    ids=["empty", "too-long", "too-many-bytes", "too-many-pixels", "sound-only", "truncated", "too-slow", "hls", "file-url"],
)
def test_bad_videos_are_refused_with_their_reason(data: bytes, limits: VideoLimits, problem: VideoProblem) -> None:
    with pytest.raises(VideoRejected) as caught:
        sample_video(data, limits)
    assert caught.value.problem is problem and caught.value.message and "\n" not in caught.value.message


def test_a_single_frame_gif_is_a_picture_not_a_video() -> None:
    assert not is_video(clip(seconds=0.1, container="gif"))
    assert not is_video(b"\x89PNG\r\n\x1a\n")


@pytest.mark.parametrize("container", ["mp4", "webm"])
@pytest.mark.parametrize("rotation", [90, -90, 180])
def test_a_clip_with_a_rotation_flag_is_turned_upright(container: str, rotation: int) -> None:
    stored = sample_video(clip(seconds=1.0, container=container))
    data = clip(seconds=1.0, container=container, rotation=rotation)
    turned = sample_video(data)
    # The flag's angle is counter-clockwise, as np.rot90 turns: each frame is the stored one turned.
    assert all(np.array_equal(t, np.rot90(s, rotation // 90)) for t, s in zip(turned.frames, stored.frames, strict=True))
    upright = (96, 64) if rotation == 180 else (64, 96)
    assert (turned.info.width, turned.info.height) == upright and turned.frames[0].shape[:2] == upright[::-1]
    assert (probe_video(data, upright=True).width, probe_video(data, upright=True).height) == upright
    assert probe_video(data).width == 96  # the header alone gives the stored size


def test_an_avif_or_heic_photo_is_a_picture_not_a_video() -> None:
    avif = io.BytesIO()
    Image.new("RGB", (8, 8)).save(avif, format="AVIF")  # starts "....ftypavif" like an MP4 starts "....ftypisom"
    heic = b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + b"\x00" * 32
    for data in (avif.getvalue(), heic):
        assert container_of(data) is None and not is_video(data)
        with pytest.raises(VideoRejected) as caught:
            probe_video(data)
        assert caught.value.problem is VideoProblem.DAMAGED
    assert container_of(clip(seconds=1.0)) == "mp4"


def test_a_first_frame_slow_to_come_is_refused_in_time_when_probed_and_sampled(monkeypatch: pytest.MonkeyPatch) -> None:
    data = clip(seconds=20.0, rate=10)  # 200 packets: 10 s of slow decoding, against a limit of 0.3 s
    total = packet_count(data)
    assert probe_video(data, upright=True).width == 96  # the real decoder: a first frame, at once
    decoded = slow_first_frame(monkeypatch)
    limits = VideoLimits(timeout_s=0.3)
    assert probe_video(data, limits).duration_s == 20.0 and not decoded  # the header alone decodes nothing
    for read in (lambda: probe_video(data, limits, upright=True), lambda: sample_video(data, limits)):
        decoded.clear()
        with pytest.raises(VideoRejected) as caught:
            read()
        assert caught.value.problem is VideoProblem.TOO_SLOW
        assert 0 < len(decoded) < total // 2  # stopped between packets, long before the first frame
