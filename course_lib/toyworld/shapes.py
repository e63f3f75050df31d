"""Shape masks: anti-aliased alpha masks for each shape, size and rotation, cached.

A mask is computed once per (shape, diameter in pixels, 10-degree rotation bin) by
supersampling the shape's inside test, so rendering a frame only blends small cached arrays.
"""

from __future__ import annotations

import functools

import numpy as np

from course_lib.toyworld.spec import SHAPES, ToyWorldError

#: Rotations are rounded to multiples of this many degrees.
ANGLE_STEP = 10
_SUPERSAMPLE = 4


def _polygon(radii: list[float], angles_deg: list[float]) -> np.ndarray:
    """Vertices (V, 2) of a polygon given polar coordinates (y up)."""
    a = np.deg2rad(np.asarray(angles_deg, dtype=np.float64))
    r = np.asarray(radii, dtype=np.float64)
    return np.stack([r * np.cos(a), r * np.sin(a)], axis=1)


def _inside_polygon(u: np.ndarray, v: np.ndarray, poly: np.ndarray) -> np.ndarray:
    """Even-odd rule point-in-polygon test, vectorised over points."""
    inside = np.zeros(u.shape, dtype=bool)
    for (x1, y1), (x2, y2) in zip(poly, np.roll(poly, -1, axis=0), strict=True):
        crosses = (y1 > v) != (y2 > v)
        x_cross = x1 + (v - y1) * (x2 - x1) / np.where(y2 == y1, 1e-12, y2 - y1)
        inside ^= crosses & (u < x_cross)
    return inside


_TRIANGLE = _polygon([1.0] * 3, [90, 210, 330])
_STAR = _polygon([1.0, 0.45] * 5, [90 + 36 * i for i in range(10)])


def inside_shape(shape: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Whether points (u right, v up; unit = shape radius) lie inside ``shape``.

    Args:
        shape: One of :data:`~course_lib.toyworld.spec.SHAPES`.
        u, v: Point coordinates, any matching shapes.

    Returns:
        Boolean array of the same shape as ``u``.
    """
    au, av = np.abs(u), np.abs(v)
    if shape == "circle":
        return u * u + v * v <= 0.9**2
    if shape == "square":
        return np.maximum(au, av) <= 0.7
    if shape == "triangle":
        return _inside_polygon(u, v + 0.15, _TRIANGLE)
    if shape == "star":
        return _inside_polygon(u, v, _STAR)
    if shape == "diamond":
        return au / 0.6 + av / 0.98 <= 1.0
    if shape == "cross":
        return ((au <= 0.3) & (av <= 0.9)) | ((av <= 0.3) & (au <= 0.9))
    raise ToyWorldError(f"unknown shape {shape!r}; expected one of {SHAPES}")


def _coverage(shape: str, m: int, radius: float, angle_deg: float) -> np.ndarray:
    """Fraction of each of the m x m pixels covered by the shape (supersampled)."""
    n = m * _SUPERSAMPLE
    c = (np.arange(n) + 0.5) / _SUPERSAMPLE - m / 2.0  # pixel units, centred
    px, py = np.meshgrid(c, c)
    a = np.deg2rad(angle_deg)
    # rotate the sample points backwards instead of the shape forwards
    u = (np.cos(a) * px - np.sin(a) * py) / radius
    v = (np.sin(a) * px + np.cos(a) * py) / -radius
    inside = inside_shape(shape, u, v).astype(np.float32)
    return inside.reshape(m, _SUPERSAMPLE, m, _SUPERSAMPLE).mean(axis=(1, 3))


@functools.lru_cache(maxsize=4096)
def shape_mask(shape: str, diameter: int, angle_bin: int) -> tuple[np.ndarray, np.ndarray]:
    """Cached alpha and colour-weight masks of a shape with a dark outline.

    Args:
        shape: One of :data:`~course_lib.toyworld.spec.SHAPES`.
        diameter: Diameter of the shape's bounding circle in pixels (>= 2).
        angle_bin: Rotation in units of :data:`ANGLE_STEP` degrees.

    Returns:
        ``(alpha, weight)``, float32 arrays of shape (m, m, 1) with ``m = diameter + 2``:
        ``alpha`` is the coverage, ``weight`` the share of the object colour (the outline gets
        a darker share), so a pixel becomes ``bg * (1 - a * alpha) + a * weight * rgb``.
    """
    m = diameter + 2
    radius = diameter / 2.0
    angle = float(angle_bin * ANGLE_STEP)
    outer = _coverage(shape, m, radius, angle)
    border = max(1.0, diameter / 16.0)
    inner = _coverage(shape, m, max(radius - border, 0.5), angle)
    weight = 0.45 * outer + 0.55 * inner
    alpha, weight = outer[:, :, None], weight[:, :, None].astype(np.float32)
    alpha.setflags(write=False)
    weight.setflags(write=False)
    return alpha, weight
