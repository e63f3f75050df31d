"""Tests for course_lib.video: round trips, resampling, VFR, odd sizes and every bad input."""

import os
import warnings
from fractions import Fraction

import av
import numpy as np
import pytest

from course_lib.errors import VideoReadError
from course_lib.video import VideoInfo, iter_frames, probe, read_frames, write_video


def synthetic_frames(n: int, height: int = 64, width: int = 64) -> np.ndarray:
    """A moving gradient with a white square sliding right: (n, H, W, 3) uint8."""
    y, x = np.mgrid[0:height, 0:width]
    frames = np.zeros((n, height, width, 3), np.uint8)
    for t in range(n):
        frames[t, ..., 0] = (x * 255 // max(width - 1, 1) + 8 * t) % 256
        frames[t, ..., 1] = y * 255 // max(height - 1, 1)
        frames[t, ..., 2] = (40 + 8 * t) % 256
        left = (4 + 2 * t) % max(width - 16, 1)
        frames[t, 10:22, left : left + 12] = 255
    return frames


@pytest.fixture(scope="module")
def clip_2s(tmp_path_factory):
    """2 s at 10 fps, 64x64, written once for the module."""
    frames = synthetic_frames(20)
    path = write_video(tmp_path_factory.mktemp("v") / "clip.mp4", frames, fps=10)
    return path, frames


def test_round_trip_same_fps(clip_2s):
    path, frames = clip_2s
    got, times = read_frames(path, fps=10)
    assert got.shape == frames.shape and got.dtype == np.uint8
    np.testing.assert_allclose(times, np.arange(20) / 10)
    assert np.abs(got.astype(float) - frames).mean() < 8


@pytest.mark.parametrize("fps, expected", [(5, 10), (2, 4), (0.5, 1), (3, 6), (20, 40)])
def test_resampled_frame_count(clip_2s, fps, expected):
    path, frames = clip_2s
    got, times = read_frames(path, fps=fps)
    assert len(got) == len(times) == expected
    np.testing.assert_allclose(times, np.arange(expected) / fps)
    # each sample is the last source frame at or before its time
    src = np.floor(times * 10 + 1e-6).astype(int)
    assert np.abs(got.astype(float) - frames[src]).mean() < 8


@pytest.mark.parametrize("fps, expected", [(2, 4), (0.5, 1), (4, 8)])
def test_centred_sampling_with_offset(clip_2s, fps, expected):
    path, frames = clip_2s
    got, times = read_frames(path, fps=fps, offset=0.5 / fps)
    # targets (k + 0.5) / fps: the centre of every 1/fps interval of the 2-s video
    np.testing.assert_allclose(times, (np.arange(expected) + 0.5) / fps)
    src = np.floor(times * 10 + 1e-6).astype(int)
    assert np.abs(got.astype(float) - frames[src]).mean() < 8


def test_video_shorter_than_offset_gives_its_last_frame(tmp_path):
    frames = synthetic_frames(3)
    path = write_video(tmp_path / "short.mp4", frames, fps=10)  # 0.3 s
    got, times = read_frames(path, fps=0.5, offset=1.0)
    assert len(got) == 1 and times[0] == 1.0
    assert np.abs(got[0].astype(float) - frames[-1]).mean() < 8


@pytest.mark.parametrize("offset", [-0.1, 0.5, float("nan")])
def test_bad_offset(clip_2s, offset):
    with pytest.raises(ValueError, match="offset"):
        read_frames(clip_2s[0], fps=2, offset=offset)


def test_probe(clip_2s):
    info = probe(clip_2s[0])
    assert isinstance(info, VideoInfo)
    assert (info.width, info.height, info.n_frames, info.codec) == (64, 64, 20, "h264")
    assert info.fps == pytest.approx(10) and info.duration == pytest.approx(2.0, abs=0.05)


def test_iter_frames_streams(clip_2s):
    gen = iter_frames(clip_2s[0], fps=10)
    t0, f0 = next(gen)
    assert t0 == 0.0 and f0.shape == (64, 64, 3)
    gen.close()  # abandoning the generator closes the container without error


def test_iter_frames_checks_at_call(tmp_path, clip_2s):
    with pytest.raises(VideoReadError, match="gone.mp4"):
        iter_frames(tmp_path / "gone.mp4", fps=1)  # no next() needed
    with pytest.raises(ValueError, match="max_side"):
        iter_frames(clip_2s[0], fps=1, max_side=0)


def test_low_fps_video_round_trip(tmp_path):
    frames = synthetic_frames(4)
    path = write_video(tmp_path / "slow.mp4", frames, fps=0.5)
    got, times = read_frames(path, fps=0.5)
    np.testing.assert_allclose(times, [0, 2, 4, 6])
    assert np.abs(got.astype(float) - frames).mean() < 8


def test_odd_size_is_padded(tmp_path):
    frames = synthetic_frames(10, height=47, width=63)
    path = write_video(tmp_path / "odd.mkv", frames, fps=10)
    got, _ = read_frames(path, fps=10)
    assert got.shape == (10, 48, 64, 3)  # padded to even, original pixels top-left
    assert np.abs(got[:, :47, :63].astype(float) - frames).mean() < 8


def test_huge_resolution_is_downscaled(tmp_path):
    frames = np.random.default_rng(0).integers(0, 256, (2, 200, 3000, 3), dtype=np.uint8)
    path = write_video(tmp_path / "wide.mp4", frames, fps=10, crf=30)
    got, _ = read_frames(path, fps=10, max_side=1024)
    assert got.shape == (2, 68, 1024, 3)  # aspect kept: 200 * 1024 / 3000 = 68.3
    assert probe(path).width == 3000


def test_variable_frame_rate(tmp_path):
    """Frames at irregular times: each sample shows the last frame with pts <= t."""
    pts_ms = [0, 100, 150, 600, 700, 1000, 1010, 1500]
    path = tmp_path / "vfr.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width = stream.height = 32
        stream.pix_fmt = "yuv420p"
        stream.codec_context.time_base = Fraction(1, 1000)
        for i, ms in enumerate(pts_ms):
            img = np.full((32, 32, 3), 30 * i, np.uint8)
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts, frame.time_base = ms, Fraction(1, 1000)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    got, times = read_frames(path, fps=10)
    np.testing.assert_allclose(times[:16], np.arange(16) / 10)
    expected = [np.searchsorted(pts_ms, t * 1000 + 1e-6, side="right") - 1 for t in times]
    levels = got[:, 16, 16, 1].astype(int)
    assert np.all(np.abs(levels - 30 * np.array(expected)) <= 6), (levels, expected)


def test_write_is_atomic_on_bad_frame(tmp_path):
    path = tmp_path / "keep.mp4"
    write_video(path, synthetic_frames(3), fps=10)
    before = path.read_bytes()
    bad = list(synthetic_frames(3)) + [np.zeros((8, 8, 3), np.uint8)]  # wrong shape mid-way
    with pytest.raises(ValueError, match="frame 3"):
        write_video(path, bad, fps=10)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.mp4"]


@pytest.mark.parametrize(
    "frames", [np.zeros((0, 8, 8, 3), np.uint8), np.zeros((2, 8, 8), np.uint8)]
)
def test_write_rejects_bad_frames(tmp_path, frames):
    with pytest.raises(ValueError):
        write_video(tmp_path / "x.mp4", frames, fps=10)


# ------------------------------------------------------------------ bad inputs
def _audio_only(path):
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=16000, layout="mono")
        for i in range(10):
            frame = av.AudioFrame.from_ndarray(
                np.zeros((1, 1024), np.float32), format="fltp", layout="mono"
            )
            frame.sample_rate, frame.pts = 16000, i * 1024
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


def _zero_frames(path):
    container = av.open(str(path), "w")
    stream = container.add_stream("libx264", rate=10)
    stream.width = stream.height = 64
    stream.pix_fmt = "yuv420p"
    container.start_encoding()  # header written, no frame ever encoded
    container.close()


def _text_file(path):
    path.write_text("this is not a video\n" * 50)


def _empty_file(path):
    path.write_bytes(b"")


def _random_bytes(path):
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())


def _video_track_without_frames(path):
    """A valid mkv whose video stream has no packets (only the audio track has data)."""
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=10)
        video.width = video.height = 64
        video.pix_fmt = "yuv420p"
        audio = container.add_stream("aac", rate=16000, layout="mono")
        for i in range(5):
            frame = av.AudioFrame.from_ndarray(
                np.zeros((1, 1024), np.float32), format="fltp", layout="mono"
            )
            frame.sample_rate, frame.pts = 16000, i * 1024
            container.mux(audio.encode(frame))
        container.mux(audio.encode(None))


@pytest.mark.parametrize(
    "make, name, header_ok",
    [
        (_audio_only, "audio.mp4", False),
        (_audio_only, "audio.mkv", False),
        (_zero_frames, "zero.mp4", False),
        (_zero_frames, "zero.mkv", False),
        (_video_track_without_frames, "noframes.mkv", True),
        (_text_file, "notes.mp4", False),
        (_empty_file, "empty.mp4", False),
        (_random_bytes, "noise.mp4", False),
    ],
)
def test_bad_files_raise_video_read_error(tmp_path, make, name, header_ok):
    path = tmp_path / name
    make(path)
    with pytest.raises(VideoReadError, match=name):
        read_frames(path, fps=2)
    if header_ok:  # the header is fine, so probe works; only decoding finds nothing
        assert probe(path).width == 64
    else:
        with pytest.raises(VideoReadError, match=name):
            probe(path)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(VideoReadError, match="nope.mp4"):
        read_frames(tmp_path / "nope.mp4", fps=1)
    with pytest.raises(VideoReadError, match="not found"):
        probe(tmp_path / "nope.mp4")
    with pytest.raises(VideoReadError, match=str(tmp_path)):
        read_frames(tmp_path, fps=1)


@pytest.mark.parametrize("fps", [0, -1, float("nan"), float("inf")])
def test_bad_fps(clip_2s, fps):
    with pytest.raises(ValueError, match="fps"):
        read_frames(clip_2s[0], fps=fps)


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory):
    """10 s at 25 fps (250 frames)."""
    path = tmp_path_factory.mktemp("long") / "long.mp4"
    return write_video(path, synthetic_frames(250, 32, 32), fps=25)


def test_truncated_file_keeps_decodable_prefix(tmp_path, long_clip):
    data = long_clip.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: int(len(data) * 0.8)])
    with pytest.warns(RuntimeWarning, match="cut.mp4"):
        frames, times = read_frames(cut, fps=25)
    assert 0 < len(frames) < 250
    np.testing.assert_allclose(times, np.arange(len(frames)) / 25)


@pytest.mark.parametrize("fraction", [0.01, 0.05])
def test_truncated_to_nothing_raises(tmp_path, long_clip, fraction):
    cut = tmp_path / "stub.mp4"
    cut.write_bytes(long_clip.read_bytes()[: int(long_clip.stat().st_size * fraction)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        with pytest.raises(VideoReadError, match="stub.mp4"):
            read_frames(cut, fps=5)


def test_corrupt_middle_recovers(tmp_path, long_clip):
    data = bytearray(long_clip.read_bytes())
    mid = len(data) // 2
    data[mid : mid + 300] = np.random.default_rng(1).integers(0, 256, 300, dtype=np.uint8).tobytes()
    bad = tmp_path / "corrupt.mp4"
    bad.write_bytes(bytes(data))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        frames, _ = read_frames(bad, fps=5)
    assert len(frames) >= 25  # most of the video still decodes


def test_timeout(long_clip):
    with pytest.raises(VideoReadError, match="timeout") as info:
        read_frames(long_clip, fps=25, timeout_s=1e-5)
    assert "long.mp4" in str(info.value)


def test_slow_consumer_does_not_count_against_timeout(long_clip, monkeypatch):
    import course_lib.video as video

    clock = [0.0]
    monkeypatch.setattr(video.time, "monotonic", lambda: clock[0])
    n = 0
    for _ in iter_frames(long_clip, fps=5, timeout_s=1.0):
        clock[0] += 100.0  # the consumer takes "100 s" per frame
        n += 1
    assert n == 50


def test_no_temp_files_left(tmp_path):
    write_video(tmp_path / "a.mp4", synthetic_frames(2), fps=10)
    assert [p.name for p in tmp_path.iterdir()] == ["a.mp4"]
    assert os.path.getsize(tmp_path / "a.mp4") > 0
