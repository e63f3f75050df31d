"""Toy-world 2-s clips with captions that say what happens: the pairs the video encoder learns from.

A :class:`ClipSample` is one 2-s clip of an untrimmed toy video (``toy-<split>-m<seed>-<i>``,
the videos of the moment-retrieval view): its scene, the objects visible at its centre and the
actions under way in it, as (colour, shape, action) triples; an action counts when it covers at
least :data:`MIN_OVERLAP` seconds of the clip. :func:`clip_caption` describes a clip with a random
subset of what it shows, worded with the toy grammar's synonyms ("the crimson ball spins",
"something blue shrinks in the snow", "a star"); its :class:`ClipMeaning` lists what is named,
and :func:`meaning_matches` says whether a clip shows it, which gives the multi-positive targets
of training. :func:`negative_caption` swaps one named attribute (the action above all) so that
the caption becomes false: the hard negatives that force the text tower to read action words.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from course_lib.experiments.ch01_toy_frames import other_value, pick_word
from course_lib.timeline import CLIP_LEN

#: seconds of a clip an action must cover to count as happening in it
MIN_OVERLAP = 1.0
#: probability that a caption names an action under way (when there is one)
ACTION_PROB = 0.8
#: probabilities of naming the actor by colour and shape / colour only / shape only
DETAIL_PROBS = (0.6, 0.2, 0.2)
#: probability that a caption names the scene
SCENE_PROB = 0.4


@dataclass(frozen=True)
class ClipSample:
    """One 2-s clip of a toy video and what it shows.

    Attributes:
        vid: the video id.
        clip: the clip index (the clip covers ``[clip * 2, clip * 2 + 2)`` seconds).
        scene: the video's scene.
        objects: (colour, shape) of the objects visible at the clip's centre.
        actions: (colour, shape, action) of the actions covering >= ``MIN_OVERLAP`` s of it.
    """

    vid: str
    clip: int
    scene: str
    objects: tuple[tuple[str, str], ...]
    actions: tuple[tuple[str, str, str], ...]


@dataclass(frozen=True)
class ClipMeaning:
    """What a caption names (None = not named)."""

    colour: str | None
    shape: str | None
    action: str | None
    scene: str | None


def clip_samples(vid: str, min_overlap: float = MIN_OVERLAP) -> list[ClipSample]:
    """Every 2-s clip of a toy video with its scene, visible objects and actions under way.

    Args:
        vid: a toy-world video id.
        min_overlap: seconds of the clip an action must cover.

    Returns:
        One :class:`ClipSample` per clip, in time order.
    """
    from course_lib.clip.frames import count_clips
    from course_lib.toyworld import video_spec, visible_objects

    spec = video_spec(vid)
    samples = []
    for i in range(count_clips(spec.duration)):
        start, end = i * CLIP_LEN, min((i + 1) * CLIP_LEN, spec.duration)
        actions = tuple(
            sorted(
                {
                    e.combo
                    for e in spec.events
                    if min(e.end, end) - max(e.start, start) >= min_overlap
                }
            )
        )
        middle = 0.5 * (start + end)
        objects = tuple(sorted((str(c), str(s)) for c, s in visible_objects(vid, middle)))
        samples.append(ClipSample(vid, i, str(spec.scene), objects, actions))
    return samples


def split_samples(split: str, n_videos: int, seed: int = 0) -> list[ClipSample]:
    """The clips of the first ``n_videos`` untrimmed videos of a split (draw ``seed``)."""
    from course_lib.toyworld import make_vid

    return [s for i in range(n_videos) for s in clip_samples(make_vid(split, "m", seed, i))]


def render_clips(samples: Sequence[ClipSample], frames: int = 4, size: int = 64) -> np.ndarray:
    """uint8 (N, frames, size, size, 3): each clip's frames at the centres of ``frames`` equal parts.

    The times are :func:`course_lib.clip.frames.clip_timestamps`' (so features computed later
    from the same video, rendered or decoded from its mp4 file, see the same frames; a video's
    last, shorter clip is sampled inside its visible part).
    """
    from course_lib.clip.frames import clip_timestamps
    from course_lib.toyworld import render_frame, video_spec

    times_of: dict[str, np.ndarray] = {}
    out = np.empty((len(samples), frames, size, size, 3), dtype=np.uint8)
    for n, sample in enumerate(samples):
        if sample.vid not in times_of:
            duration = float(video_spec(sample.vid).duration)
            times_of[sample.vid] = clip_timestamps(duration, CLIP_LEN, frames)[0].reshape(-1, frames)
        for j, t in enumerate(times_of[sample.vid][sample.clip]):
            out[n, j] = render_frame(sample.vid, float(t), size=size)
    return out


# ----------------------------------------------------------------------------- captions
def clip_caption(sample: ClipSample, rng: np.random.Generator) -> tuple[str, ClipMeaning]:
    """A random true caption of a clip, and what it names.

    With probability :data:`ACTION_PROB` (when an action is under way) the caption names one
    action and its actor (by colour and shape, colour or shape, :data:`DETAIL_PROBS`); otherwise
    it names one visible object; the scene is added with probability :data:`SCENE_PROB`, and is
    all that is named when the clip shows nothing.
    """
    detail = int(rng.choice(3, p=list(DETAIL_PROBS)))
    scene = sample.scene if rng.random() < SCENE_PROB else None
    if sample.actions and rng.random() < ACTION_PROB:
        colour, shape, action = sample.actions[int(rng.integers(len(sample.actions)))]
    elif sample.objects:
        (colour, shape), action = sample.objects[int(rng.integers(len(sample.objects)))], None
    else:
        meaning = ClipMeaning(None, None, None, sample.scene)
        return describe(meaning, rng), meaning
    meaning = ClipMeaning(
        colour if detail != 2 else None, shape if detail != 1 else None, action, scene
    )
    return describe(meaning, rng), meaning


def describe(meaning: ClipMeaning, rng: np.random.Generator) -> str:
    """Words for a meaning, e.g. "the crimson ball spins in the snow" (synonyms at random)."""
    from course_lib.toyworld.captions import ACTION_PHRASES, COLOUR_WORDS, SCENE_PHRASES
    from course_lib.toyworld.spec import COLOUR_AFTER_CHANGE

    scene = pick_word(rng, SCENE_PHRASES[meaning.scene]) if meaning.scene else ""
    if meaning.colour is None and meaning.shape is None:
        return scene or "a scene"
    subject = _subject(meaning.colour, meaning.shape, rng)
    if meaning.action is None:
        text = subject if rng.random() < 0.5 else f"there is {subject}"
    else:
        to = COLOUR_AFTER_CHANGE[meaning.colour] if meaning.colour else "another colour"
        to_word = pick_word(rng, COLOUR_WORDS[to]) if meaning.colour else to
        text = f"{subject} {pick_word(rng, ACTION_PHRASES[meaning.action]).format(to=to_word)}"
    return f"{text} {scene}".strip()


def _subject(colour: str | None, shape: str | None, rng: np.random.Generator) -> str:
    """ "a red circle" / "the crimson ball", "a red shape" / "something red", "a circle"."""
    from course_lib.toyworld.captions import COLOUR_WORDS, SHAPE_WORDS

    colour_word = pick_word(rng, COLOUR_WORDS[colour]) if colour else ""
    shape_word = pick_word(rng, SHAPE_WORDS[shape]) if shape else ""
    if colour and not shape:
        if rng.random() < 0.3:
            return f"something {colour_word}"
        noun = f"{colour_word} shape"
    else:
        noun = f"{colour_word} {shape_word}".strip()
    article = "the" if rng.random() < 0.3 else ("an" if noun[0] in "aeiou" else "a")
    return f"{article} {noun}"


def meaning_matches(meaning: ClipMeaning, sample: ClipSample) -> bool:
    """True when the clip shows all a caption names.

    A named action needs an action under way in the clip with that action and the named colour
    and/or shape; without an action, a visible object with the named colour and/or shape; a named
    scene must be the clip's.
    """
    if meaning.scene is not None and meaning.scene != sample.scene:
        return False
    if meaning.action is not None:
        things = [(c, s) for c, s, a in sample.actions if a == meaning.action]
    else:
        things = list(sample.objects)
    if meaning.colour is None and meaning.shape is None:
        return meaning.action is None or bool(things)
    return any(
        (meaning.colour in (None, c)) and (meaning.shape in (None, s)) for c, s in things
    )


def match_matrix(meanings: Sequence[ClipMeaning], samples: Sequence[ClipSample]) -> np.ndarray:
    """bool (N clips, M captions): clip i shows everything caption j names."""
    return np.array([[meaning_matches(m, s) for m in meanings] for s in samples], dtype=bool)


def negative_caption(
    sample: ClipSample, meaning: ClipMeaning, rng: np.random.Generator, tries: int = 10
) -> tuple[str, ClipMeaning]:
    """A hard negative: one named attribute swapped (the action when named) so the caption is false.

    Args:
        sample: the clip the true caption describes.
        meaning: what the true caption names.
        rng: random generator.
        tries: swaps to try before giving up.

    Returns:
        ``(text, meaning)``; the meaning does not match ``sample`` unless every try failed.
    """
    from course_lib.toyworld import ACTIONS, COLOURS, SCENES, SHAPES

    candidate = meaning
    for _ in range(tries):
        if meaning.action is not None and rng.random() < 0.7:
            candidate = _replace(meaning, action=other_value(rng, ACTIONS, meaning.action))
        elif meaning.shape is not None and rng.random() < 0.5:
            candidate = _replace(meaning, shape=other_value(rng, SHAPES, meaning.shape))
        elif meaning.colour is not None:
            candidate = _replace(meaning, colour=other_value(rng, COLOURS, meaning.colour))
        else:
            candidate = _replace(meaning, scene=other_value(rng, SCENES, meaning.scene))
        if not meaning_matches(candidate, sample):
            break
    return describe(candidate, rng), candidate


def _replace(meaning: ClipMeaning, **changes: str) -> ClipMeaning:
    """The meaning with some fields changed."""
    return dataclasses.replace(meaning, **changes)
