"""Vocabulary of the toy world: colours, shapes, scenes, actions, splits and video ids.

Everything a toy video can contain is named here, together with the rules that decide
which colour x shape x action combinations are held out for the ``test_novel`` split and
how a video id encodes its split, kind, seed and index.

Video ids
---------
``toy-{split}-{kind}{seed}-{index:05d}``, e.g. ``toy-test-m0-00042``:

* ``split``: one of :data:`SPLITS` (``train``, ``val``, ``test``, ``test_novel``);
* ``kind``: ``c`` = trimmed clip (retrieval view, 8-16 s), ``m`` = untrimmed video
  (moment and corpus views, 30-150 s);
* ``seed``: the seed of the view that produced the id (non-negative int);
* ``index``: position of the video in that view (non-negative int, at least 5 digits).

The random generator of a video is derived from a SHA-256 hash of the id string, so the
id alone fixes every pixel, in every process.

Held-out (novel) combinations
-----------------------------
A valid combination (colour, shape, action) with indices ``(ci, si, ai)`` into
:data:`COLOURS`, :data:`SHAPES`, :data:`ACTIONS` is *novel* when
``(ci + 2 * si + 3 * ai) % 10 == 7``: 38 of the 390 valid combinations (10 %). Every colour,
shape and action, and every (colour, shape) pair, still occurs in training with other
partners, so ``test_novel`` measures compositional generalisation. Novel combinations
never occur in ``train``, ``val`` or ``test`` videos, neither as queried events nor as
distractors; ``test_novel`` queries only novel combinations.
"""

from __future__ import annotations

import hashlib
import re
from typing import NamedTuple

from course_lib.errors import CourseError

COLOURS: tuple[str, ...] = ("red", "green", "blue", "yellow", "purple", "orange")
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "diamond", "cross")
SCENES: tuple[str, ...] = ("beach", "forest", "city", "night", "snow")
ACTIONS: tuple[str, ...] = (
    "appear",
    "disappear",
    "move_left",
    "move_right",
    "move_up",
    "move_down",
    "bounce",
    "grow",
    "shrink",
    "spin",
    "change_colour",
)
SPLITS: tuple[str, ...] = ("train", "val", "test", "test_novel")
KINDS: tuple[str, ...] = ("c", "m")

#: Saturated, well separated RGB values (uint8 range) for the object colours.
COLOUR_RGB: dict[str, tuple[int, int, int]] = {
    "red": (225, 25, 30),
    "green": (30, 185, 45),
    "blue": (35, 80, 240),
    "yellow": (250, 225, 20),
    "purple": (150, 45, 200),
    "orange": (255, 135, 10),
}

#: ``change_colour`` always turns an object into this colour, so the attribute tuple
#: (colour, shape, action, scene) describes the event completely.
COLOUR_AFTER_CHANGE: dict[str, str] = {
    c: COLOURS[(i + 3) % len(COLOURS)] for i, c in enumerate(COLOURS)
}

#: Combinations that cannot be seen: a spinning circle looks exactly like a still one.
INVALID_COMBOS: frozenset[tuple[str, str]] = frozenset({("circle", "spin")})

_VID_RE = re.compile(r"^toy-(train|val|test|test_novel)-([cm])(\d+)-(\d{5,})$")


class ToyWorldError(CourseError, ValueError):
    """Bad input to the toy world (unknown split, malformed video id, bad size or count)."""


class Attributes(NamedTuple):
    """Canonical meaning of a caption or query: what is described, independent of wording."""

    colour: str
    shape: str
    action: str
    scene: str


class VidParts(NamedTuple):
    """The fields encoded in a video id."""

    split: str
    kind: str
    seed: int
    index: int


def is_valid_combo(colour: str, shape: str, action: str) -> bool:
    """Whether a (colour, shape, action) combination can be shown at all."""
    return colour in COLOUR_RGB and (shape, action) not in INVALID_COMBOS


def _is_novel(ci: int, si: int, ai: int) -> bool:
    """The fixed hold-out rule (see module docstring)."""
    return (ci + 2 * si + 3 * ai) % 10 == 7


#: The held-out combinations of ``test_novel`` (fixed rule, see module docstring).
NOVEL_COMBOS: frozenset[tuple[str, str, str]] = frozenset(
    (c, s, a)
    for ci, c in enumerate(COLOURS)
    for si, s in enumerate(SHAPES)
    for ai, a in enumerate(ACTIONS)
    if _is_novel(ci, si, ai) and is_valid_combo(c, s, a)
)


def combo_allowed(split: str, colour: str, shape: str, action: str) -> bool:
    """Whether an event with this combination may occur in a video of ``split``.

    Args:
        split: One of :data:`SPLITS`.
        colour, shape, action: The event's attributes.

    Returns:
        ``False`` for invalid combinations, and for novel combinations outside ``test_novel``.
    """
    if not is_valid_combo(colour, shape, action):
        return False
    return split == "test_novel" or (colour, shape, action) not in NOVEL_COMBOS


def check_split(split: str) -> str:
    """Return ``split`` unchanged, or raise :class:`ToyWorldError` naming it."""
    if split not in SPLITS:
        raise ToyWorldError(f"unknown split {split!r}; expected one of {SPLITS}")
    return split


def check_positive(name: str, value: int) -> int:
    """Return ``value`` if it is a positive int, else raise naming ``name`` and the value."""
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ToyWorldError(f"{name} must be a positive int, got {value!r}")
    return value


def check_seed(seed: int) -> int:
    """Return ``seed`` if it is a non-negative int, else raise naming it."""
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ToyWorldError(f"seed must be a non-negative int, got {seed!r}")
    return seed


def make_vid(split: str, kind: str, seed: int, index: int) -> str:
    """Build a video id ``toy-{split}-{kind}{seed}-{index:05d}``.

    Args:
        split: One of :data:`SPLITS`.
        kind: ``"c"`` (trimmed clip) or ``"m"`` (untrimmed video).
        seed: Seed of the view (non-negative).
        index: Index of the video within the view (non-negative).

    Returns:
        The id string.
    """
    check_split(split)
    if kind not in KINDS:
        raise ToyWorldError(f"unknown video kind {kind!r}; expected one of {KINDS}")
    check_seed(seed)
    if isinstance(index, bool) or not isinstance(index, int) or index < 0:
        raise ToyWorldError(f"video index must be a non-negative int, got {index!r}")
    return f"toy-{split}-{kind}{seed}-{index:05d}"


def parse_vid(vid: str) -> VidParts:
    """Split a video id into its fields.

    Args:
        vid: A toy-world video id such as ``"toy-test-m0-00042"``.

    Returns:
        The :class:`VidParts` (split, kind, seed, index).

    Raises:
        ToyWorldError: ``vid`` is not a string of the toy-world id format.
    """
    m = _VID_RE.match(vid) if isinstance(vid, str) else None
    if m is None:
        raise ToyWorldError(
            f"malformed toy-world video id {vid!r}; expected 'toy-<split>-<c|m><seed>-<index>', "
            "e.g. 'toy-test-m0-00042'"
        )
    return VidParts(m.group(1), m.group(2), int(m.group(3)), int(m.group(4)))


def stable_seed(*parts: object) -> int:
    """A 64-bit seed from a SHA-256 hash of the parts (never Python's salted ``hash``).

    Args:
        *parts: Values whose ``str`` forms identify the random stream.

    Returns:
        An int in ``[0, 2**64)``, identical in every process and on every machine.
    """
    text = "|".join(str(p) for p in parts)
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "little")
