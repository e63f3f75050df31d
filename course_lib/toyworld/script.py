"""Video scripts: which objects a toy video holds and what they do, derived from its id alone.

A *script* (:class:`VideoSpec`) fixes the duration, the scene, the objects (colour, shape,
starting cell on a 3x3 grid) and the events (object, action, start, end). The renderer turns
a script into pixels; the task views turn it into captions, windows and relevance labels.

Rules that keep every query answerable:

* objects in a video never share a (colour, shape) pair, not even after a colour change, so
  a (colour, shape, action) triple names one object's event(s); repeats of that triple are the
  same object doing the same thing again (several relevant windows);
* one object does one thing at a time; moves go one grid cell and never into a cell that
  another object holds, so objects do not cover each other;
* events of a split only use combinations that :func:`~course_lib.toyworld.spec.combo_allowed`
  permits (novel combinations only in ``test_novel``).
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np

from course_lib.toyworld.spec import (
    ACTIONS,
    COLOUR_AFTER_CHANGE,
    COLOURS,
    NOVEL_COMBOS,
    SCENES,
    SHAPES,
    SPLITS,
    ToyWorldError,
    combo_allowed,
    parse_vid,
    stable_seed,
)

#: Centres of the 3x3 grid cells (fraction of the frame side).
GRID = (0.22, 0.5, 0.78)
#: Scale levels an object can be at (shrunk, normal, grown).
SCALE_LEVELS = (-1, 0, 1)
_MOVES = {"move_left": (0, -1), "move_right": (0, 1), "move_up": (-1, 0), "move_down": (1, 0)}
_ACTION_WEIGHT = {"disappear": 0.4, "appear": 1.0}


@dataclasses.dataclass(frozen=True)
class ObjectSpec:
    """One object of a video as it is at time 0.

    Attributes:
        colour: Colour at time 0 (may change through ``change_colour``).
        shape: Shape (never changes).
        row, col: Starting cell on the 3x3 grid (0 = top / left).
        hidden: Whether the object is invisible until its first (``appear``) event.
    """

    colour: str
    shape: str
    row: int
    col: int
    hidden: bool


@dataclasses.dataclass(frozen=True)
class Event:
    """One action of one object.

    Attributes:
        obj: Index into :attr:`VideoSpec.objects`.
        action: One of :data:`~course_lib.toyworld.spec.ACTIONS`.
        colour: The object's colour when the event starts.
        shape: The object's shape.
        nominal_start, nominal_end: When the action runs (may reach outside the video).
        start, end: The part inside the video, ``0 <= start < end <= duration``.
    """

    obj: int
    action: str
    colour: str
    shape: str
    nominal_start: float
    nominal_end: float
    start: float
    end: float

    @property
    def combo(self) -> tuple[str, str, str]:
        """The (colour, shape, action) triple that a query about this event describes."""
        return (self.colour, self.shape, self.action)

    @property
    def completeness(self) -> float:
        """Fraction of the action that lies inside the video (1.0 = seen whole)."""
        return (self.end - self.start) / (self.nominal_end - self.nominal_start)


def _event(obj: int, action: str, colour: str, shape: str, *times: int) -> Event:
    """An :class:`Event` with its four times (nominal start/end, start/end) as floats."""
    return Event(obj, action, colour, shape, *(float(t) for t in times))


@dataclasses.dataclass(frozen=True)
class VideoSpec:
    """Everything about a toy video, fully determined by its id.

    Attributes:
        vid: The video id.
        split, kind, seed, index: Fields of the id.
        duration: Length in seconds (multiple of 2).
        scene: One of :data:`~course_lib.toyworld.spec.SCENES`.
        objects: The objects, in drawing order.
        events: All events, sorted by start time.
        main_event: For trimmed clips (kind ``c``), index of the described event; else ``None``.
    """

    vid: str
    split: str
    kind: str
    seed: int
    index: int
    duration: float
    scene: str
    objects: tuple[ObjectSpec, ...]
    events: tuple[Event, ...]
    main_event: int | None = None


@dataclasses.dataclass
class _ObjState:
    """Mutable state of one object while its events are being scheduled."""

    colour: str
    shape: str
    row: int
    col: int
    level: int = 0
    visible: bool = True
    done: bool = False
    next_t: int = 0
    move_src: tuple[int, int] | None = None
    move_end: float = -1.0
    history: list[str] = dataclasses.field(default_factory=list)


def clip_pool(split: str) -> tuple[tuple[str, str, str, str], ...]:
    """All (colour, shape, action, scene) contents a trimmed clip of ``split`` may describe.

    Args:
        split: One of :data:`~course_lib.toyworld.spec.SPLITS`.

    Returns:
        The contents in a fixed canonical order: novel combinations for ``test_novel``,
        all other valid combinations for the other splits.
    """
    novel = split == "test_novel"
    return tuple(
        (c, s, a, scene)
        for c in COLOURS
        for s in SHAPES
        for a in ACTIONS
        if combo_allowed(split, c, s, a) and ((c, s, a) in NOVEL_COMBOS) == novel
        for scene in SCENES
    )


@functools.lru_cache(maxsize=64)
def clip_content_order(split: str, seed: int) -> tuple[tuple[str, str, str, str], ...]:
    """The pool of :func:`clip_pool` in the order that clip indices of (split, seed) use.

    Returns:
        A permutation of the pool; clip ``toy-{split}-c{seed}-{i:05d}`` shows entry ``i``.
    """
    pool = clip_pool(split)
    order = np.random.default_rng(stable_seed("clip-order", split, seed)).permutation(len(pool))
    return tuple(pool[i] for i in order)


def _cell_free(states: list[_ObjState], k: int, cell: tuple[int, int], t: float) -> bool:
    """Whether no object other than ``k`` holds (or is leaving) ``cell`` at time ``t``."""
    for j, st in enumerate(states):
        if j == k or (st.done and not st.visible):
            continue
        if (st.row, st.col) == cell or (st.move_src == cell and st.move_end > t):
            return False
    return True


def _feasible(split: str, states: list[_ObjState], k: int, t: float, used: set) -> list[str]:
    """Actions object ``k`` can start at time ``t`` (geometry, pairs and split rules)."""
    st = states[k]
    if not st.visible:
        cands = ["appear"]
    else:
        cands = ["disappear", "bounce", "spin"] if st.row >= 1 else ["disappear", "spin"]
        cands += ["grow"] if st.level < 1 else []
        cands += ["shrink"] if st.level > -1 else []
        if (COLOUR_AFTER_CHANGE[st.colour], st.shape) not in used:
            cands.append("change_colour")
        for name, (dr, dc) in _MOVES.items():
            cell = (st.row + dr, st.col + dc)
            if 0 <= cell[0] < 3 and 0 <= cell[1] < 3 and _cell_free(states, k, cell, t):
                cands.append(name)
    return [a for a in cands if combo_allowed(split, st.colour, st.shape, a)]


def _apply(st: _ObjState, action: str, used: set, end: float) -> None:
    """Update an object's state with the effect of a finished action."""
    st.history.append(action)
    if action == "appear":
        st.visible = True
    elif action == "disappear":
        st.visible, st.done = False, True
    elif action in _MOVES:
        st.move_src, st.move_end = (st.row, st.col), end
        st.row, st.col = st.row + _MOVES[action][0], st.col + _MOVES[action][1]
    elif action == "grow":
        st.level += 1
    elif action == "shrink":
        st.level -= 1
    elif action == "change_colour":
        st.colour = COLOUR_AFTER_CHANGE[st.colour]
        used.add((st.colour, st.shape))


def _choose(rng: np.random.Generator, st: _ObjState, cands: list[str]) -> str:
    """Pick an action: often repeat one the object did before (repeated events), else weighted."""
    repeats = [a for a in dict.fromkeys(st.history) if a in cands]
    if repeats and rng.random() < 0.35:
        return repeats[int(rng.integers(len(repeats)))]
    w = np.array([_ACTION_WEIGHT.get(a, 1.0) for a in cands])
    return cands[int(rng.choice(len(cands), p=w / w.sum()))]


def _schedule(
    rng: np.random.Generator,
    split: str,
    states: list[_ObjState],
    duration: int,
    used: set,
    max_events: list[int],
    gap: tuple[int, int] = (3, 21),
) -> list[Event]:
    """Generate events in chronological order; object ``k`` gets at most ``max_events[k]``."""
    events: list[Event] = []
    while True:
        active = [k for k, st in enumerate(states) if not st.done]
        if not active:
            return events
        k = min(active, key=lambda j: (states[j].next_t, j))
        st = states[k]
        t0, length = st.next_t, int(rng.integers(4, 13))
        start, end = max(0, t0), min(duration, t0 + length)
        cands = _feasible(split, states, k, start, used)
        if len(st.history) >= max_events[k] or end - start < 2 or not cands:
            st.done = True
            continue
        action = _choose(rng, st, cands)
        events.append(_event(k, action, st.colour, st.shape, t0, t0 + length, start, end))
        _apply(st, action, used, float(end))
        st.next_t = t0 + length + int(rng.integers(*gap))


def _pick_pairs(rng: np.random.Generator, n: int, first: tuple[str, str] | None) -> list:
    """``n`` distinct (colour, shape) pairs whose after-change pairs are also unused."""
    pairs: list[tuple[str, str]] = [first] if first else []
    while len(pairs) < n:
        pair = (COLOURS[int(rng.integers(6))], SHAPES[int(rng.integers(6))])
        taken = set(pairs) | {(COLOUR_AFTER_CHANGE[c], s) for c, s in pairs}
        if pair not in taken and (COLOUR_AFTER_CHANGE[pair[0]], pair[1]) not in set(pairs):
            pairs.append(pair)
    return pairs


def _cells_for(action: str | None) -> list[tuple[int, int]]:
    """Grid cells from which ``action`` (if any) can start."""
    cells = [(r, c) for r in range(3) for c in range(3)]
    if action in _MOVES:
        dr, dc = _MOVES[action]
        return [(r, c) for r, c in cells if 0 <= r + dr < 3 and 0 <= c + dc < 3]
    return [(r, c) for r, c in cells if r >= 1] if action == "bounce" else cells


def _initial_states(
    rng: np.random.Generator, n: int, forced: tuple[str, str, str] | None, hide_p: float
) -> list[_ObjState]:
    """Objects with distinct pairs and cells; object 0 is set up to perform ``forced``."""
    pairs = _pick_pairs(rng, n, forced[:2] if forced else None)
    action = forced[2] if forced else None
    first_cells = _cells_for(action)
    cell0 = first_cells[int(rng.integers(len(first_cells)))]
    blocked = {cell0}
    if action in _MOVES:  # keep the target of the forced move free
        blocked.add((cell0[0] + _MOVES[action][0], cell0[1] + _MOVES[action][1]))
    free = [c for c in _cells_for(None) if c not in blocked]
    others = [free[i] for i in rng.permutation(len(free))[: n - 1]]
    states = []
    for k, ((colour, shape), cell) in enumerate(zip(pairs, [cell0, *others], strict=True)):
        hidden = action == "appear" if (k == 0 and forced) else bool(rng.random() < hide_p)
        states.append(_ObjState(colour, shape, cell[0], cell[1], visible=not hidden))
    return states


def _to_spec(vid, parts, duration, scene, states0, events, main=None) -> VideoSpec:
    """Freeze the generated pieces into a :class:`VideoSpec`."""
    objects = tuple(ObjectSpec(s.colour, s.shape, s.row, s.col, not s.visible) for s in states0)
    events = sorted(events, key=lambda e: (e.start, e.obj))
    return VideoSpec(vid, *parts, float(duration), scene, objects, tuple(events), main)


def _untrimmed(vid: str, parts, rng: np.random.Generator) -> VideoSpec:
    """Script of an untrimmed video (30-150 s, 2-3 objects, many events)."""
    duration = 2 * int(rng.integers(15, 76))
    scene = SCENES[int(rng.integers(len(SCENES)))]
    n = int(rng.integers(2, 4))
    novel = sorted(NOVEL_COMBOS)
    forced = novel[int(rng.integers(len(novel)))] if parts.split == "test_novel" else None
    states = _initial_states(rng, n, forced, hide_p=0.25)
    states0 = [dataclasses.replace(s) for s in states]
    used = {(s.colour, s.shape) for s in states}
    for k, st in enumerate(states):
        st.next_t = int(rng.integers(-4, 12))
        if k == 0 and forced:  # the novel event is the first of object 0, seen whole
            st.next_t = int(rng.integers(0, min(20, duration - 12)))
    first = []
    if forced:  # schedule the forced event by hand, then let the scheduler continue
        st = states[0]
        t0, length = st.next_t, int(rng.integers(4, 13))
        first.append(_event(0, forced[2], forced[0], forced[1], t0, t0 + length, t0, t0 + length))
        _apply(st, forced[2], used, float(t0 + length))
        st.next_t = t0 + length + int(rng.integers(3, 21))
    events = first + _schedule(rng, parts.split, states, duration, used, [99] * n)
    return _to_spec(vid, parts, duration, scene, states0, events)


def _trimmed(vid: str, parts, rng: np.random.Generator) -> VideoSpec:
    """Script of a trimmed clip (8-16 s) showing one described event plus distractors."""
    contents = clip_content_order(parts.split, parts.seed)
    if parts.index >= len(contents):
        raise ToyWorldError(
            f"video id {vid!r}: index {parts.index} out of range, split {parts.split!r} has "
            f"{len(contents)} distinct clip contents"
        )
    colour, shape, action, scene = contents[parts.index]
    duration = 2 * int(rng.integers(4, 9))
    n = int(rng.integers(1, 4))
    states = _initial_states(rng, n, (colour, shape, action), hide_p=0.0)
    states0 = [dataclasses.replace(s) for s in states]
    used = {(s.colour, s.shape) for s in states}
    t0, t1 = int(rng.integers(0, 2)), duration - int(rng.integers(0, 2))
    main = _event(0, action, colour, shape, t0, t1, t0, t1)
    _apply(states[0], action, used, float(t1))
    states[0].done = True
    for st in states[1:]:
        st.next_t = int(rng.integers(0, duration - 4))
    events = _schedule(rng, parts.split, states, duration, used, [0] + [1] * (n - 1))
    events = sorted([main, *events], key=lambda e: (e.start, e.obj))
    return _to_spec(vid, parts, duration, scene, states0, events, events.index(main))


@functools.lru_cache(maxsize=8192)
def video_spec(vid: str) -> VideoSpec:
    """The script of a toy video, regenerated from its id alone.

    Args:
        vid: A toy-world id, e.g. ``"toy-test-m0-00042"`` (see :mod:`course_lib.toyworld.spec`).

    Returns:
        The :class:`VideoSpec`; equal ids give equal specs in every process.

    Raises:
        ToyWorldError: malformed id, or a clip index beyond the split's distinct contents.
    """
    parts = parse_vid(vid)
    assert parts.split in SPLITS
    rng = np.random.default_rng(stable_seed("toy-video", vid))
    return _trimmed(vid, parts, rng) if parts.kind == "c" else _untrimmed(vid, parts, rng)
