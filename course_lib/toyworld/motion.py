"""Motion: where every object is, how big, how turned, what colour and how visible, over time.

Each action adds a change that ramps from 0 (before the action) to its full size (after it)
with the action's progress ``u = clip((t - start) / (end - start), 0, 1)``. One object does one
thing at a time, so summing the ramps of its events gives its state at any time, for a whole
array of timestamps at once.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from course_lib.toyworld.script import GRID, VideoSpec, video_spec
from course_lib.toyworld.spec import COLOUR_AFTER_CHANGE, COLOUR_RGB, COLOURS, ToyWorldError

#: Object diameter at scale 1, as a fraction of the frame side (about 17 px at 64 x 64).
BASE_DIAMETER = 0.26
#: Scale factor of one ``grow`` (``shrink`` divides by it).
GROW_FACTOR = 1.3
#: Height of a bounce, as a fraction of the frame side.
BOUNCE_HEIGHT = 0.16
_MOVE_STEP = GRID[1] - GRID[0]
_DELTAS = {"move_left": (-1, 0), "move_right": (1, 0), "move_up": (0, -1), "move_down": (0, 1)}


@dataclasses.dataclass(frozen=True)
class Tracks:
    """Per-object states at a set of timestamps; arrays are indexed ``[object, time]``.

    Attributes:
        times: Timestamps in seconds, shape (T,).
        x, y: Centre as a fraction of the frame side (y grows downwards), shape (N, T).
        scale: Size multiplier (1 = :data:`BASE_DIAMETER`), shape (N, T).
        angle: Rotation in degrees, shape (N, T).
        rgb: Colour (float, 0-255), shape (N, T, 3).
        colour_idx: Index into :data:`~course_lib.toyworld.spec.COLOURS` of the colour name
            a viewer would give (switches half-way through a colour change), shape (N, T).
        alpha: Opacity 0-1, shape (N, T).
    """

    times: np.ndarray
    x: np.ndarray
    y: np.ndarray
    scale: np.ndarray
    angle: np.ndarray
    rgb: np.ndarray
    colour_idx: np.ndarray
    alpha: np.ndarray


def _smooth(u: np.ndarray) -> np.ndarray:
    """Smoothstep easing 3u^2 - 2u^3 (starts and stops gently)."""
    return u * u * (3.0 - 2.0 * u)


def _apply_event(state: dict, e, t: np.ndarray) -> None:
    """Add the ramp of one event to an object's state arrays (in place)."""
    u = np.clip((t - e.nominal_start) / (e.nominal_end - e.nominal_start), 0.0, 1.0)
    if e.action in _DELTAS:
        dx, dy = _DELTAS[e.action]
        state["x"] += dx * _MOVE_STEP * _smooth(u)
        state["y"] += dy * _MOVE_STEP * _smooth(u)
    elif e.action == "bounce":
        state["y"] -= BOUNCE_HEIGHT * np.abs(np.sin(2.0 * np.pi * u))
    elif e.action in ("grow", "shrink"):
        state["log_scale"] += (1.0 if e.action == "grow" else -1.0) * np.log(GROW_FACTOR) * u
    elif e.action == "spin":
        state["angle"] += 360.0 * u
    elif e.action in ("appear", "disappear"):
        state["alpha"] += (1.0 if e.action == "appear" else -1.0) * u
    elif e.action == "change_colour":
        new = COLOUR_AFTER_CHANGE[e.colour]
        diff = np.subtract(COLOUR_RGB[new], COLOUR_RGB[e.colour], dtype=np.float64)
        state["rgb"] += u[:, None] * diff
        state["cidx"][u >= 0.5] = COLOURS.index(new)


def object_alpha(spec: VideoSpec, k: int, times: np.ndarray) -> np.ndarray:
    """Opacity (0-1) of object ``k`` at the given timestamps (cheaper than all tracks).

    Args:
        spec: The video's script.
        k: Object index.
        times: Timestamps in seconds, shape (T,).

    Returns:
        float64 array (T,).
    """
    t = np.asarray(times, dtype=np.float64).reshape(-1)
    alpha = np.full(t.shape, 0.0 if spec.objects[k].hidden else 1.0)
    for e in spec.events:
        if e.obj == k and e.action in ("appear", "disappear"):
            u = np.clip((t - e.nominal_start) / (e.nominal_end - e.nominal_start), 0.0, 1.0)
            alpha += u if e.action == "appear" else -u
    return np.clip(alpha, 0.0, 1.0)


def _stack(rows: list[dict], key: str, n_times: int) -> np.ndarray:
    """Stack one state array of every object into shape (N, T)."""
    return np.stack([r[key] for r in rows]) if rows else np.zeros((0, n_times))


def object_tracks(spec: VideoSpec, times: np.ndarray) -> Tracks:
    """States of all objects of a video at the given timestamps.

    Args:
        spec: The video's script.
        times: Timestamps in seconds, shape (T,).

    Returns:
        The :class:`Tracks` (arrays of shape (N, T) or (N, T, 3)).
    """
    t = np.asarray(times, dtype=np.float64).reshape(-1)
    rows = []
    for k, obj in enumerate(spec.objects):
        state = {
            "x": np.full(t.shape, GRID[obj.col]),
            "y": np.full(t.shape, GRID[obj.row]),
            "log_scale": np.zeros(t.shape),
            "angle": np.zeros(t.shape),
            "alpha": np.full(t.shape, 0.0 if obj.hidden else 1.0),
            "rgb": np.tile(np.asarray(COLOUR_RGB[obj.colour], dtype=np.float64), (t.size, 1)),
            "cidx": np.full(t.shape, COLOURS.index(obj.colour)),
        }
        for e in spec.events:
            if e.obj == k:
                _apply_event(state, e, t)
        rows.append(state)
    return Tracks(
        times=t,
        x=_stack(rows, "x", t.size),
        y=_stack(rows, "y", t.size),
        scale=np.exp(_stack(rows, "log_scale", t.size)),
        angle=_stack(rows, "angle", t.size),
        rgb=np.stack([r["rgb"] for r in rows]),
        colour_idx=_stack(rows, "cidx", t.size).astype(np.int64),
        alpha=np.clip(_stack(rows, "alpha", t.size), 0.0, 1.0),
    )


def check_time(spec: VideoSpec, t: float) -> float:
    """Return ``t`` as a float if it lies in ``[0, duration]``, else raise naming it."""
    if not isinstance(t, (int, float, np.floating, np.integer)) or not 0 <= t <= spec.duration:
        raise ToyWorldError(
            f"time {t!r} is outside video {spec.vid!r} (duration {spec.duration:g} s)"
        )
    return float(t)


def visible_objects(vid: str, t: float) -> list[tuple[str, str]]:
    """The (colour, shape) of every object a viewer sees at time ``t``.

    An object counts as visible when it is at least half opaque; during a colour change its
    colour is the old one for the first half and the new one after.

    Args:
        vid: A toy-world video id.
        t: Time in seconds, ``0 <= t <= duration``.

    Returns:
        (colour, shape) pairs in drawing order.
    """
    spec = video_spec(vid)
    tr = object_tracks(spec, np.array([check_time(spec, t)]))
    return [
        (COLOURS[int(tr.colour_idx[k, 0])], obj.shape)
        for k, obj in enumerate(spec.objects)
        if tr.alpha[k, 0] >= 0.5
    ]
