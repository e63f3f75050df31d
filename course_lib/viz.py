"""Figures used across the course notebooks.

All functions return a matplotlib ``Figure`` and never call ``plt.show()``, so they work
headless (tests, CI) and in notebooks alike.
"""

from __future__ import annotations

import numpy as np

from course_lib.errors import CourseError
from course_lib.timeline import CLIP_LEN


class PlotInputError(CourseError, ValueError):
    """Arrays given to a plotting function have the wrong shape or length."""


def _check_strip_inputs(frames: np.ndarray, timestamps: np.ndarray) -> None:
    """Raise :class:`PlotInputError` naming the bad shape."""
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[0] == 0:
        raise PlotInputError(f"frames must have shape (T, H, W, 3) with T > 0, got {frames.shape}")
    if timestamps.shape != (frames.shape[0],):
        raise PlotInputError(
            f"timestamps must have shape ({frames.shape[0]},) to match frames, got {timestamps.shape}"
        )


def _montage(frames: np.ndarray, gap: int) -> np.ndarray:
    """Frames side by side with a white ``gap`` (pixels) between them, as uint8."""
    t, h, w, _ = frames.shape
    out = np.full((h, t * w + (t - 1) * gap, 3), 255, dtype=np.uint8)
    for i, f in enumerate(frames):
        out[:, i * (w + gap) : i * (w + gap) + w] = f
    return out


def _saliency_xy(saliency: np.ndarray, timestamps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Time axis for a saliency curve: per frame if lengths match, else per 2-s clip."""
    s = np.asarray(saliency, dtype=np.float64)
    if s.ndim == 2:  # (clips, annotators) -> mean over annotators
        s = s.mean(axis=1)
    if s.ndim != 1:
        raise PlotInputError(f"saliency must be 1-D (or 2-D clips x annotators), got {s.shape}")
    if s.shape[0] == timestamps.shape[0]:
        return timestamps, s
    return (np.arange(s.shape[0]) + 0.5) * CLIP_LEN, s


def plot_video_strip(
    frames: np.ndarray,
    timestamps: np.ndarray,
    windows: list | None = None,
    saliency: np.ndarray | None = None,
    ax=None,
    max_frames: int = 12,
    title: str | None = None,
    predicted: list | None = None,
):
    """A strip of video frames above a timeline with query windows and saliency.

    Args:
        frames: uint8 (T, H, W, 3) frames.
        timestamps: (T,) frame times in seconds.
        windows: Relevant windows ``[[st, ed], ...]`` in seconds, shaded on the timeline.
        saliency: Optional curve: one value per frame, or one per 2-s clip of the whole
            video starting at clip 0 (a (clips, annotators) array is averaged); it is
            scaled to the timeline's height.
        ax: Axes to draw the strip into (the timeline goes in an inset below it); a new
            figure is made when ``None``.
        max_frames: At most this many evenly spaced frames are shown.
        title: Optional title above the strip.
        predicted: Optional predicted windows ``[[st, ed], ...]`` in seconds, drawn as red bars
            at the top of the timeline (the ground-truth ``windows`` are shaded green).

    Returns:
        The matplotlib ``Figure``.
    """
    import matplotlib.pyplot as plt

    frames, timestamps = np.asarray(frames), np.asarray(timestamps, dtype=np.float64)
    _check_strip_inputs(frames, timestamps)
    if ax is None:
        _, ax = plt.subplots(figsize=(min(1.1 * max_frames, 14), 2.6))
    # 1. the frame strip, evenly subsampled
    keep = np.unique(
        np.linspace(0, len(frames) - 1, min(max_frames, len(frames))).round().astype(int)
    )
    ax.imshow(_montage(frames[keep], gap=max(1, frames.shape[2] // 16)))
    width = frames.shape[2] + max(1, frames.shape[2] // 16)
    ax.set_xticks(np.arange(len(keep)) * width + frames.shape[2] / 2)
    ax.set_xticklabels([f"{timestamps[i]:.0f}s" for i in keep], fontsize=7)
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=9)
    # 2. the timeline below: windows shaded, frame times as ticks, optional saliency
    tl = ax.inset_axes([0.0, -0.55, 1.0, 0.3])
    end = max(
        float(timestamps[-1])
        + float(np.diff(timestamps).mean() if len(timestamps) > 1 else 1.0) / 2,
        1e-6,
    )
    for k, (st, ed) in enumerate(windows or []):
        tl.axvspan(
            st, ed, color="tab:green", alpha=0.35, lw=0, label="ground truth" if k == 0 else None
        )
    for k, (st, ed) in enumerate(predicted or []):
        tl.hlines(1.0, st, ed, color="tab:red", lw=4, label="predicted" if k == 0 else None)
    tl.plot(timestamps[keep], np.zeros(len(keep)), "|", color="k", ms=6)
    if saliency is not None:
        xs, ys = _saliency_xy(saliency, timestamps)
        tl.plot(xs, ys / max(ys.max(), 1e-9), color="tab:orange", lw=1.2, label="saliency")
    tl.set_xlim(0, end)
    tl.set_ylim(-0.1, 1.15)
    if predicted:  # three kinds of marks: say which is which, outside the timeline
        tl.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    tl.set_yticks([])
    tl.set_xlabel("time (s)", fontsize=8)
    tl.tick_params(labelsize=7)
    return ax.figure
