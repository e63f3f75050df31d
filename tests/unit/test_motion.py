"""Tests of course_lib.clip.motion: moving pixels, the motion descriptor, the motion-stream cache."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from course_lib.clip import ClipEncoder, FeatureCache
from course_lib.clip.motion import (
    DESCRIPTOR_PER_CELL,
    MotionFeatureCache,
    motion_descriptor,
    moving_pixels,
)

torch.set_num_threads(2)
RED, BLUE = (255, 0, 0), (0, 0, 255)


@pytest.fixture(scope="module")
def tiny() -> ClipEncoder:
    return ClipEncoder.tiny(device="cpu", progress=False)


def _square_clip(cols: list[int], colours: list[tuple], row: int = 26, size: int = 8) -> np.ndarray:
    """Frames (k, 60, 60, 3) of a grey scene with a square at column ``cols[j]`` in frame j."""
    frames = np.full((len(cols), 60, 60, 3), 100, dtype=np.uint8)
    for j, (col, colour) in enumerate(zip(cols, colours)):
        frames[j, row : row + size, col : col + size] = colour
    return frames


def _cell(descriptor: np.ndarray, r: int, c: int, grid: int = 3) -> np.ndarray:
    return descriptor.reshape(grid * grid, DESCRIPTOR_PER_CELL)[r * grid + c]


def test_moving_pixels_keeps_only_what_changes():
    frames = np.full((3, 16, 16, 3), 128, dtype=np.uint8)  # a static grey scene
    frames[1, 4:6, 4:6] = RED  # an object shows up in the middle frame ...
    frames[2, 10, 10] = 148  # ... and one pixel changes by only 20
    image = moving_pixels(frames, threshold=100)
    changed = np.zeros((16, 16), bool)
    changed[4:6, 4:6] = True
    np.testing.assert_array_equal(image[changed], frames[1][changed])  # middle frame kept
    assert not image[~changed].any()  # static and barely changing pixels are black
    assert not moving_pixels(frames[:1].repeat(2, axis=0), threshold=0).any()


@pytest.mark.parametrize(
    "bad", [np.zeros((1, 8, 8, 3), np.uint8), np.zeros((2, 8, 8), np.uint8), np.zeros((2, 8, 8, 3))]
)
def test_motion_functions_name_a_bad_clip(bad):
    with pytest.raises(ValueError, match="clip_frames"):
        moving_pixels(bad)
    with pytest.raises(ValueError, match="clip_frames"):
        motion_descriptor(bad)


def test_descriptor_of_a_static_clip_is_zero():
    frames = _square_clip([26] * 4, [RED] * 4)
    descriptor = motion_descriptor(frames)
    assert descriptor.shape == (9 * DESCRIPTOR_PER_CELL,) and descriptor.dtype == np.float32
    assert not descriptor.any()


@pytest.mark.parametrize("direction", [1, -1])
def test_descriptor_sees_where_and_which_way_a_square_moves(direction):
    cols = [26 + direction * 2 * j for j in range(4)]  # stays inside the middle cell
    descriptor = motion_descriptor(_square_clip(cols, [RED] * 4))
    middle = _cell(descriptor, 1, 1)
    assert middle[0] > 0  # energy
    red, green, blue = middle[1:4]  # changing pixels: the red square and the grey it uncovers
    assert red > green + 0.3 and red > blue + 0.3
    assert np.sign(middle[8]) == direction and abs(middle[7]) < 1e-6  # column shift, no row shift
    others = descriptor.reshape(9, DESCRIPTOR_PER_CELL)[[0, 1, 2, 3, 5, 6, 7, 8]]
    assert not others.any()  # nothing moves elsewhere


def test_descriptor_sees_a_colour_change():
    descriptor = motion_descriptor(_square_clip([26] * 4, [RED, RED, BLUE, BLUE]))
    middle = _cell(descriptor, 1, 1)
    assert middle[4] < -0.9 and middle[6] > 0.9 and abs(middle[5]) < 1e-6  # red down, blue up
    np.testing.assert_allclose(middle[7:9], 0.0)  # it does not move


def test_motion_cache_features_round_trip_and_key(tiny, tmp_path):
    from course_lib import toyworld as tw

    vid = tw.make_vid("val", "m", 0, 0)
    cache = MotionFeatureCache(tiny, root=tmp_path, frames_per_clip=3)
    first = cache.get(vid)
    n_clips = int(np.ceil(tw.video_spec(vid).duration / 2))
    assert (
        first.shape
        == (n_clips, tiny.embed_dim + 9 * DESCRIPTOR_PER_CELL)
        == (
            n_clips,
            cache.width,
        )
    )
    assert np.isfinite(first).all()
    np.testing.assert_array_equal(cache.get(vid), first)  # served from disk, same values
    # never shares a file with plain features or with other motion settings
    assert cache.path(vid) != FeatureCache(tiny, root=tmp_path, frames_per_clip=3).path(vid)
    assert cache.path(vid) != MotionFeatureCache(tiny, root=tmp_path, threshold=10).path(vid)
    # the descriptor part equals the function on the same frames
    from course_lib.clip.frames import toy_frame_source

    frames, _, _ = toy_frame_source(frames_per_clip=3)(vid)
    expected = motion_descriptor(frames[:3])
    np.testing.assert_allclose(first[0, tiny.embed_dim :], expected, atol=2e-3)


def test_motion_cache_gives_zeros_to_clips_with_one_frame(tiny, tmp_path):
    # 5 s at 2 frames per clip -> clips 0, 1 get two frames each, the partial clip 2 gets two
    # as well; drop the last frame so clip 2 has one frame only
    times = np.array([0.5, 1.5, 2.5, 3.5, 4.25])
    frames = _square_clip([10, 14, 18, 22, 26], [RED] * 5)
    cache = MotionFeatureCache(tiny, root=tmp_path, frames_per_clip=2)
    feats = cache.encode(frames, times, 5.0)
    assert feats.shape == (3, cache.width)
    assert feats[:2].any(axis=1).all() and not feats[2].any()
    with pytest.raises(ValueError, match="frames_per_clip >= 2"):
        MotionFeatureCache(tiny, frames_per_clip=1)
    with pytest.raises(ValueError, match="timestamps"):
        cache.encode(frames, times[:3], 5.0)
