"""Captions: a small template grammar with synonyms and paraphrases.

The same event can be worded many ways ("a red circle slides to the left", "the crimson
ball moves leftwards", "on the beach, ..."), so a text encoder has to learn what words mean
rather than match strings. Every caption comes from an
:class:`~course_lib.toyworld.spec.Attributes` tuple, which is the canonical meaning used to
judge hits.
"""

from __future__ import annotations

import numpy as np

from course_lib.toyworld.spec import (
    ACTIONS,
    COLOUR_AFTER_CHANGE,
    COLOURS,
    SCENES,
    SHAPES,
    Attributes,
    ToyWorldError,
)

COLOUR_WORDS: dict[str, tuple[str, ...]] = {
    "red": ("red", "crimson", "scarlet"),
    "green": ("green", "emerald", "lime"),
    "blue": ("blue", "azure", "cobalt"),
    "yellow": ("yellow", "golden", "lemon"),
    "purple": ("purple", "violet", "lilac"),
    "orange": ("orange", "amber", "tangerine"),
}
SHAPE_WORDS: dict[str, tuple[str, ...]] = {
    "circle": ("circle", "ball", "disc", "round shape"),
    "square": ("square", "box", "block"),
    "triangle": ("triangle", "three-sided shape", "pyramid"),
    "star": ("star", "five-pointed star", "starburst"),
    "diamond": ("diamond", "rhombus", "lozenge"),
    "cross": ("cross", "plus sign", "plus shape"),
}
#: Verb phrases in the third person singular; ``{to}`` is the colour after a change.
ACTION_PHRASES: dict[str, tuple[str, ...]] = {
    "appear": ("appears", "shows up", "fades in", "comes into view"),
    "disappear": ("disappears", "vanishes", "fades away", "goes out of sight"),
    "move_left": ("moves to the left", "slides to the left", "moves leftwards", "drifts left"),
    "move_right": ("moves to the right", "slides to the right", "moves rightwards", "drifts right"),
    "move_up": ("moves up", "rises", "floats upwards", "climbs higher"),
    "move_down": ("moves down", "sinks", "drops downwards", "descends"),
    "bounce": ("bounces", "hops up and down", "jumps", "bounces in place"),
    "grow": ("grows", "gets bigger", "expands", "increases in size"),
    "shrink": ("shrinks", "gets smaller", "contracts", "decreases in size"),
    "spin": ("spins", "rotates", "turns around", "twirls"),
    "change_colour": ("turns {to}", "changes colour to {to}", "becomes {to}", "changes colour"),
}
SCENE_PHRASES: dict[str, tuple[str, ...]] = {
    "beach": ("on the beach", "at the seaside", "by the sea", "on the sand"),
    "forest": ("in the forest", "in the woods", "among the trees", "in a green forest"),
    "city": ("in the city", "on a city street", "downtown", "in front of tall buildings"),
    "night": ("at night", "under the night sky", "under the stars", "in the dark night"),
    "snow": ("in the snow", "on a snowy field", "in a winter scene", "on the snow"),
}
#: Sentence patterns; ``{np}`` is the noun phrase without article, ``{vp}`` the verb phrase.
TEMPLATES: tuple[str, ...] = (
    "{a} {np} {vp}",
    "the {np} {vp}",
    "{a} {np} {vp} {scene}",
    "{scene_cap}, {a} {np} {vp}",
    "{scene_cap}, the {np} {vp}",
    "we see {a} {np} that {vp}",
    "there is {a} {np} which {vp} {scene}",
    "a clip where the {np} {vp}",
)


def _article(word: str) -> str:
    """'an' before a vowel sound, else 'a'."""
    return "an" if word[0] in "aeiou" else "a"


def _pick(rng: np.random.Generator | None, options: tuple[str, ...]) -> str:
    """The first (canonical) option without a generator, else a random one."""
    return options[0] if rng is None else options[int(rng.integers(len(options)))]


def _check(attrs: Attributes) -> None:
    """Raise :class:`ToyWorldError` naming any attribute outside the vocabulary."""
    for name, value, vocab in zip(
        attrs._fields, attrs, (COLOURS, SHAPES, ACTIONS, SCENES), strict=True
    ):
        if value is not None and value not in vocab:
            raise ToyWorldError(f"unknown {name} {value!r}; expected one of {vocab}")


def describe_event(
    colour: str,
    shape: str,
    action: str,
    scene: str | None = None,
    rng: np.random.Generator | None = None,
    with_scene: bool | None = None,
) -> str:
    """Word an event with the template grammar.

    Args:
        colour, shape, action: What the event is (see :mod:`course_lib.toyworld.spec`).
        scene: The scene, or ``None`` to never mention one.
        rng: Generator for choosing synonyms and template; ``None`` gives the canonical
            wording ("a red circle moves to the left on the beach").
        with_scene: Force the scene in (``True``) or out (``False``); ``None`` lets ``rng``
            decide (always in for the canonical wording).

    Returns:
        A lower-case caption.
    """
    _check(Attributes(colour, shape, action, scene))
    if with_scene is None:
        with_scene = scene is not None and (rng is None or rng.random() < 0.5)
    with_scene = with_scene and scene is not None
    templates = [t for t in TEMPLATES if ("scene" in t) == with_scene]
    template = templates[0] if rng is None else templates[int(rng.integers(len(templates)))]
    colour_word = _pick(rng, COLOUR_WORDS[colour])
    noun_phrase = f"{colour_word} {_pick(rng, SHAPE_WORDS[shape])}"
    to_word = _pick(rng, COLOUR_WORDS[COLOUR_AFTER_CHANGE[colour]])
    verb_phrase = _pick(rng, ACTION_PHRASES[action]).format(to=to_word)
    scene_phrase = _pick(rng, SCENE_PHRASES[scene]) if with_scene else ""
    return template.format(
        a=_article(colour_word),
        np=noun_phrase,
        vp=verb_phrase,
        scene=scene_phrase,
        scene_cap=scene_phrase,
    )


def describe_attributes(attrs: Attributes, rng: np.random.Generator | None = None, **kw) -> str:
    """:func:`describe_event` for an :class:`~course_lib.toyworld.spec.Attributes` tuple."""
    return describe_event(attrs.colour, attrs.shape, attrs.action, attrs.scene, rng, **kw)


def describe_frame(
    scene: str, objects: list[tuple[str, str]], rng: np.random.Generator | None = None
) -> str:
    """Describe a still frame: its objects (colour, shape) and its scene.

    Args:
        scene: One of :data:`~course_lib.toyworld.spec.SCENES`.
        objects: (colour, shape) pairs, e.g. from :func:`~course_lib.toyworld.visible_objects`.
        rng: Generator for synonyms; ``None`` gives the canonical wording.

    Returns:
        E.g. "a red circle and a blue star on the beach" ("an empty scene ..." without objects).
    """
    for colour, shape in objects:
        _check(Attributes(colour, shape, "appear", scene))
    _check(Attributes(COLOURS[0], SHAPES[0], ACTIONS[0], scene))
    parts = []
    for colour, shape in objects:
        word = _pick(rng, COLOUR_WORDS[colour])
        parts.append(f"{_article(word)} {word} {_pick(rng, SHAPE_WORDS[shape])}")
    things = " and ".join(parts) if parts else "an empty scene"
    return f"{things} {_pick(rng, SCENE_PHRASES[scene])}"
