"""Scene backgrounds: procedural, textured and resolution independent, cached per size.

Each scene has its own palette and texture (waves and sand, trees, buildings with lit
windows, a starry sky, snow drifts). Textures are defined on normalised coordinates with a
fixed per-scene random stream, so a background looks the same at every size (apart from
the per-pixel grain of sand, snow and lit windows).
"""

from __future__ import annotations

import functools

import numpy as np

from course_lib.toyworld.spec import SCENES, ToyWorldError, stable_seed


def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Normalised pixel-centre coordinates (x right, y down), each of shape (size, size)."""
    c = (np.arange(size) + 0.5) / size
    return np.meshgrid(c, c)


def _value_noise(rng: np.random.Generator, x: np.ndarray, y: np.ndarray, cells: int) -> np.ndarray:
    """Smooth noise in [0, 1]: a random lattice of ``cells`` x ``cells`` bilinearly interpolated."""
    lattice = rng.random((cells + 1, cells + 1))
    gx, gy = x * cells, y * cells
    i, j = np.minimum(gx.astype(int), cells - 1), np.minimum(gy.astype(int), cells - 1)
    fx, fy = gx - i, gy - j
    top = lattice[j, i] * (1 - fx) + lattice[j, i + 1] * fx
    bottom = lattice[j + 1, i] * (1 - fx) + lattice[j + 1, i + 1] * fx
    return top * (1 - fy) + bottom * fy


def _mix(mask: np.ndarray, a: np.ndarray, b) -> np.ndarray:
    """Where ``mask`` (0-1, (H, W)) is 1 take ``b`` else ``a`` (colours broadcast)."""
    m = np.asarray(mask, dtype=np.float64)[..., None]
    return a * (1.0 - m) + np.asarray(b, dtype=np.float64) * m


def _gradient(y: np.ndarray, top, bottom) -> np.ndarray:
    """Vertical colour gradient from ``top`` (y=0) to ``bottom`` (y=1)."""
    return _mix(y, np.asarray(top, dtype=np.float64), bottom)


def _beach(rng, x, y) -> np.ndarray:
    img = _gradient(y / 0.3, (120, 185, 240), (195, 230, 250))
    waves = 0.5 + 0.5 * np.sin(2 * np.pi * (y * 28 + 2.5 * _value_noise(rng, x, y, 6)))
    sea = _gradient((y - 0.3) / 0.2, (25, 95, 160), (45, 150, 185)) + 30 * waves[..., None]
    img = _mix(y >= 0.3, img, sea)
    sand = np.array([226, 202, 150]) + 28 * (_value_noise(rng, x, y, 12)[..., None] - 0.5)
    sand += 18 * (rng.random(x.shape)[..., None] - 0.5)
    return _mix(y >= 0.5 + 0.03 * np.sin(9 * x), img, sand)


def _forest(rng, x, y) -> np.ndarray:
    leaves = 0.6 * _value_noise(rng, x, y, 8) + 0.4 * _value_noise(rng, x, y, 20)
    img = np.array([20, 70, 30]) + np.array([35, 80, 35]) * leaves[..., None]
    trunks = np.zeros(x.shape)
    for cx in rng.uniform(0.03, 0.97, size=7):
        trunks = np.maximum(trunks, np.abs(x - cx) < 0.022)
    img = _mix(trunks * (y > 0.3), img, (95, 62, 35))
    ground = np.array([85, 65, 35]) + 30 * (_value_noise(rng, x, y, 16)[..., None] - 0.5)
    return _mix(y > 0.85, img, ground)


def _city(rng, x, y) -> np.ndarray:
    img = _gradient(y, (165, 175, 195), (215, 200, 190))
    n_blocks = 8
    heights = rng.uniform(0.15, 0.55, size=n_blocks)
    greys = rng.uniform(70, 125, size=n_blocks)
    block = np.minimum((x * n_blocks).astype(int), n_blocks - 1)
    building = y > heights[block]
    img = _mix(building, img, np.stack([greys[block]] * 3, axis=-1) + np.array([0, 0, 10]))
    lit = rng.random((40, 40)) < 0.55
    wx, wy = (x * 26) % 1.0, (y * 26) % 1.0
    window = building & (wx > 0.3) & (wx < 0.75) & (wy > 0.3) & (wy < 0.75) & (y < 0.82)
    window &= lit[(y * 39).astype(int), (x * 39).astype(int)]
    img = _mix(window, img, (240, 215, 110))
    road = _mix(
        (np.abs(y - 0.92) < 0.008) & ((x * 6) % 1.0 < 0.5), np.full(x.shape + (3,), 55.0), 235
    )
    return _mix(y > 0.86, img, road)


def _night(rng, x, y) -> np.ndarray:
    img = _gradient(y, (8, 10, 35), (30, 35, 80))
    img += 12 * (_value_noise(rng, x, y, 5)[..., None] - 0.5)
    stars = np.zeros(x.shape)
    for sx, sy, b in zip(rng.random(45), rng.random(45), rng.uniform(0.5, 1.0, 45), strict=True):
        stars = np.maximum(stars, b * np.exp(-((x - sx) ** 2 + (y - sy) ** 2) / (2 * 0.007**2)))
    img = _mix(stars, img, (255, 250, 220))
    moon = np.clip((0.075 - np.hypot(x - 0.83, y - 0.14)) / 0.01, 0, 1)
    return _mix(moon, img, (240, 235, 200))


def _snow(rng, x, y) -> np.ndarray:
    img = _gradient(y / 0.4, (185, 200, 220), (215, 225, 235))
    ridge = 0.32 + 0.07 * _value_noise(rng, x, np.zeros_like(y), 5)
    img = _mix(y > ridge, img, (150, 165, 190))
    drifts = _value_noise(rng, x, y, 7)[..., None]
    snow = np.array([248, 250, 255]) - np.array([45, 35, 10]) * drifts
    img = _mix(y > 0.45 + 0.04 * np.sin(7 * x), img, snow)
    flakes = rng.random(x.shape) < 0.02
    return _mix(flakes, img, 255)


_PAINTERS = {"beach": _beach, "forest": _forest, "city": _city, "night": _night, "snow": _snow}


@functools.lru_cache(maxsize=64)
def scene_background(scene: str, size: int) -> np.ndarray:
    """The textured background of a scene (cached, read-only).

    Args:
        scene: One of :data:`~course_lib.toyworld.spec.SCENES`.
        size: Side length in pixels.

    Returns:
        float32 array (size, size, 3) with values in [0, 255].
    """
    if scene not in SCENES:
        raise ToyWorldError(f"unknown scene {scene!r}; expected one of {SCENES}")
    rng = np.random.default_rng(stable_seed("scene", scene))
    x, y = _grid(size)
    img = np.clip(_PAINTERS[scene](rng, x, y), 0, 255).astype(np.float32)
    img.setflags(write=False)
    return img
