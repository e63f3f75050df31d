"""A motion stream next to CLIP: what moves in each 2-second clip.

One CLIP feature per clip says which objects and which scene are on screen, but not what they
*do*: toy queries ask for actions ("the green cross spins") of objects that stay on screen for the
whole video, so the plain clip feature barely separates a moment's clips from the rest of its
video. QVHighlights models read a motion stream (SlowFast) next to CLIP for the same reason
(Moment-DETR, QD-DETR and COREBA concatenate both into ``d_v``). This module computes a motion
stream from the pixels of ``k`` frames per clip (no model to download), in two parts:

* the **moving-pixel view**: the clip's middle frame with every pixel blanked whose colour changes
  by at most ``threshold`` between consecutive frames, encoded by the same CLIP image tower
  (:func:`moving_pixels`), so it names *which* object moves in CLIP's text space;
* a **motion descriptor** (:func:`motion_descriptor`): for each cell of a ``grid x grid`` split of
  the frame, how much changes, the colour of what changes, how that colour changes, and where the
  changing pixels go (a crude optical-flow summary), so a trained model can tell moving left
  from growing or changing colour.

The descriptor is not in CLIP's text space, so only a *trained* model can use it; the chapter-3
training-free baseline compares queries with the plain CLIP clip features only.
"""

from __future__ import annotations

import numpy as np

from course_lib.clip.features import FeatureCache, assign_clips
from course_lib.clip.frames import count_clips
from course_lib.timeline import CLIP_LEN

#: Default pixel change (0-255, any channel) that counts as motion.
MOTION_THRESHOLD = 24
#: Default frames per clip of the motion stream.
MOTION_FRAMES_PER_CLIP = 4
#: Descriptor entries per grid cell: energy, colour (3), colour change (3), shift (2).
DESCRIPTOR_PER_CELL = 9
#: Scale of the energy entry (a changed fraction of a few percent -> order 0.1, like the others).
_ENERGY_SCALE = 4.0


def _changed(clip_frames: np.ndarray, threshold: int) -> np.ndarray:
    """(k-1, H, W) bool: pixels whose largest channel change between frames j, j+1 > threshold."""
    steps = np.abs(np.diff(clip_frames.astype(np.int16), axis=0))
    return steps.max(axis=-1) > threshold


def _check_clip(clip_frames: np.ndarray) -> None:
    """Raise ValueError unless ``clip_frames`` is (k >= 2, H, W, 3) uint8."""
    if clip_frames.ndim != 4 or clip_frames.shape[-1] != 3 or len(clip_frames) < 2:
        raise ValueError(
            f"clip_frames must be (k >= 2, H, W, 3) frames of one clip, got {clip_frames.shape}"
        )
    if clip_frames.dtype != np.uint8:
        raise ValueError(f"clip_frames must be uint8, got {clip_frames.dtype}")


def moving_pixels(clip_frames: np.ndarray, threshold: int = MOTION_THRESHOLD) -> np.ndarray:
    """The middle frame of a clip with its static pixels set to black.

    Args:
        clip_frames: (k, H, W, 3) uint8 frames of one clip in time order, ``k >= 2``.
        threshold: a pixel is kept when some channel changes by more than this (0-255)
            between two consecutive frames.

    Returns:
        (H, W, 3) uint8 image.
    """
    _check_clip(clip_frames)
    # 1. where anything changes between consecutive frames
    moving = _changed(clip_frames, threshold).any(axis=0)
    # 2. keep the middle frame there
    middle = clip_frames[len(clip_frames) // 2]
    return (middle * moving[..., None]).astype(np.uint8)


def _centroid(mask: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray | None:
    """Mean (row, col) of the True pixels of ``mask`` (None when there are none)."""
    if not mask.any():
        return None
    return np.array([rows[mask].mean(), cols[mask].mean()])


def motion_descriptor(
    clip_frames: np.ndarray, threshold: int = MOTION_THRESHOLD, grid: int = 3
) -> np.ndarray:
    """What changes where in one clip: :data:`DESCRIPTOR_PER_CELL` numbers per grid cell.

    Per cell of a ``grid x grid`` split of the frame (row-major), from the pixels that change
    between consecutive frames (``changed``, as :func:`moving_pixels`):

    1. energy: the fraction of (pixel, frame pair) that change, times 4;
    2. colour: the mean RGB (0-1) of the changing pixels in the middle frame;
    3. colour change: their mean RGB in the last frame minus the first;
    4. shift: the centroid of the pixels changing between the last two frames minus that of the
       first two, in cell sides (row, col): a moving object's edges go where it goes.

    A cell where nothing changes gets zeros.

    Args:
        clip_frames: (k, H, W, 3) uint8 frames of one clip in time order, ``k >= 2``.
        threshold: pixel change (0-255) that counts.
        grid: cells per side (the toy world places objects on a 3x3 grid).

    Returns:
        float32 ``(grid * grid * 9,)``.
    """
    _check_clip(clip_frames)
    height, width = clip_frames.shape[1:3]
    frames = clip_frames.astype(np.float32) / 255.0
    changed = _changed(clip_frames, threshold)
    middle, delta = frames[len(frames) // 2], frames[-1] - frames[0]
    # pixel coordinates in cell sides, so shifts are comparable across frame sizes
    rows, cols = np.mgrid[0:height, 0:width].astype(np.float32)
    rows, cols = rows * grid / height, cols * grid / width
    row_edges = np.round(np.linspace(0, height, grid + 1)).astype(int)
    col_edges = np.round(np.linspace(0, width, grid + 1)).astype(int)
    cells = []
    for r in range(grid):
        for c in range(grid):
            window = (slice(row_edges[r], row_edges[r + 1]), slice(col_edges[c], col_edges[c + 1]))
            cell_changed = changed[:, window[0], window[1]]
            ever = cell_changed.any(axis=0)
            entry = np.zeros(DESCRIPTOR_PER_CELL, dtype=np.float32)
            entry[0] = _ENERGY_SCALE * cell_changed.mean()
            if ever.any():
                entry[1:4] = middle[window][ever].mean(axis=0)
                entry[4:7] = delta[window][ever].mean(axis=0)
            first = _centroid(cell_changed[0], rows[window], cols[window])
            last = _centroid(cell_changed[-1], rows[window], cols[window])
            if first is not None and last is not None:
                entry[7:9] = last - first
            cells.append(entry)
    return np.concatenate(cells)


class MotionFeatureCache(FeatureCache):
    """On-disk motion-stream features per video: ``[CLIP(moving pixels), motion descriptor]``.

    Same layout and keying as :class:`~course_lib.clip.features.FeatureCache` (fp16 ``.npz`` per
    video, atomic writes); the stream, threshold and grid are part of the cache key.

    Args:
        encoder: the ClipEncoder that encodes the moving-pixel views.
        root: base directory; default ``cache_dir("clip_features")``.
        clip_len: clip length in seconds.
        frames_per_clip: frames per clip (>= 2; motion needs consecutive frames).
        threshold: pixel change (0-255) that counts as motion.
        grid: descriptor cells per side.

    ``get(vid)`` returns float32 ``(T, D + grid * grid * 9)``; a clip with fewer than two
    decoded frames gets zeros.
    """

    def __init__(
        self,
        encoder,
        root=None,
        clip_len: float = CLIP_LEN,
        frames_per_clip: int = MOTION_FRAMES_PER_CLIP,
        threshold: int = MOTION_THRESHOLD,
        grid: int = 3,
    ) -> None:
        if frames_per_clip < 2:
            raise ValueError(f"the motion stream needs frames_per_clip >= 2, got {frames_per_clip}")
        self.threshold, self.grid = int(threshold), int(grid)
        super().__init__(encoder, root=root, clip_len=clip_len, frames_per_clip=frames_per_clip)

    def stream_settings(self) -> dict:
        """What this stream adds to the cache key."""
        return {"stream": "motion", "threshold": self.threshold, "grid": self.grid}

    @property
    def width(self) -> int:
        """Feature width ``D + grid * grid * 9``."""
        return int(self.encoder.embed_dim) + self.grid * self.grid * DESCRIPTOR_PER_CELL

    def encode(self, frames: np.ndarray, timestamps: np.ndarray, duration: float) -> np.ndarray:
        """Motion-stream features of sampled frames (see the class docstring)."""
        if len(frames) != len(timestamps):
            raise ValueError(f"{len(frames)} frames but {len(timestamps)} timestamps")
        n = count_clips(duration, self.clip_len)
        index = assign_clips(timestamps, duration, self.clip_len)
        out = np.zeros((n, self.width), dtype=np.float32)
        # 1. clips with at least two frames (the others keep zeros)
        clips = [i for i in range(n) if (index == i).sum() >= 2]
        if not clips:
            return out
        # 2. their moving-pixel views through CLIP and their descriptors
        views = np.stack([moving_pixels(frames[index == i], self.threshold) for i in clips])
        dim = int(self.encoder.embed_dim)
        out[clips, :dim] = self.encoder.encode_frames(views).cpu().numpy()
        for i in clips:
            out[i, dim:] = motion_descriptor(frames[index == i], self.threshold, self.grid)
        return out
