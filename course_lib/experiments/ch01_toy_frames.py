"""Toy-world frames with captions: the image-text pairs tiny CLIP learns from.

A :class:`FrameSample` is one frame of a trimmed toy-world clip (``toy-<split>-c<seed>-<i>``):
its scene and the (colour, shape) of every visible object. :func:`frame_caption` describes a
frame with a random subset of what it shows ("a red circle and a star on the beach",
"a photo of a cobalt shape", "on a snowy field"), worded with the toy world's caption grammar
(synonyms included); its :class:`Meaning` lists exactly the attributes
named, and :func:`matches` says whether a frame shows all of them. That relation defines both
the multi-positive targets of training and a hit in text-to-frame retrieval.

:func:`evaluate_toy` measures an encoder on held-out frames: zero-shot colour, shape and scene
accuracy on single-object frames and text-to-frame Recall@1 (chapter 1's four quality numbers).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from course_lib.clip.zeroshot import classify_embeddings, recall_at_k, text_to_frame_ranks

FRAMES_PER_VIDEO = 4

# caption prefixes; colour, shape and scene words come from the toy world's grammar
# (course_lib.toyworld.captions: COLOUR_WORDS, SHAPE_WORDS, SCENE_PHRASES), synonyms included
_PREFIXES = ("", "", "a photo of ", "a frame showing ", "a picture of ")
_SCENE_ONLY = ("a photo of a {} scene", "a {} scene", "the {}", "a {} background")


@dataclass(frozen=True)
class FrameSample:
    """One toy-world frame: where it comes from and what it shows."""

    vid: str
    t: float
    scene: str
    objects: tuple[tuple[str, str], ...]  # visible (colour, shape) pairs


@dataclass(frozen=True)
class Meaning:
    """The attributes a caption names: partial objects (None = not named) and maybe the scene."""

    objects: tuple[tuple[str | None, str | None], ...]
    scene: str | None


def sample_frames(split: str, n: int, seed: int = 0) -> list[FrameSample]:
    """``n`` frames of trimmed clips of ``split``, ``FRAMES_PER_VIDEO`` per clip at seeded times.

    Args:
        split: toy-world split (``train``, ``val``, ``test``, ``test_novel``).
        n: number of frames.
        seed: seed of both the clip ids (``toy-<split>-c<seed>-<i>``) and the frame times.

    Returns:
        The samples, deterministic in (split, n, seed).
    """
    from course_lib.toyworld import make_vid, video_spec, visible_objects

    rng = np.random.default_rng([seed, 7])
    samples = []
    for i in range(n):
        vid = make_vid(split, "c", seed, i // FRAMES_PER_VIDEO)
        spec = video_spec(vid)
        t = round(float(rng.uniform(0.0, spec.duration)), 3)
        objects = tuple((str(c), str(s)) for c, s in visible_objects(vid, t))
        samples.append(FrameSample(vid, t, str(spec.scene), objects))
    return samples


def render_samples(samples: list[FrameSample], size: int = 64) -> np.ndarray:
    """Render every sample -> uint8 (N, size, size, 3)."""
    from course_lib.toyworld import render_frame

    return np.stack([render_frame(s.vid, s.t, size=size) for s in samples])


DETAIL_PROBS = (0.6, 0.2, 0.2)  # an object is named by colour and shape / colour only / shape


def frame_caption(
    sample: FrameSample,
    rng: np.random.Generator,
    detail_probs: tuple[float, float, float] = DETAIL_PROBS,
) -> tuple[str, Meaning]:
    """A random true description of a frame, and the attributes it names.

    Each visible object is mentioned with probability 0.7, by colour and shape, colour only or
    shape only with probabilities ``detail_probs`` (default 60 / 20 / 20 %, the evaluation
    captions); the scene with probability 0.5, always when no object is named.
    """
    # 1. choose which objects and attributes to name
    named: list[tuple[str | None, str | None]] = []
    for colour, shape in sample.objects:
        if rng.random() < 0.7:
            detail = rng.choice(3, p=list(detail_probs))
            named.append((colour if detail != 2 else None, shape if detail != 1 else None))
    scene = sample.scene if (not named or rng.random() < 0.5) else None
    meaning = Meaning(tuple(named), scene)
    return describe(meaning, rng), meaning


def describe(meaning: Meaning, rng: np.random.Generator) -> str:
    """Words for a meaning: "a photo of a red circle and a star on the beach", synonyms included."""
    from course_lib.toyworld.captions import SCENE_PHRASES

    phrases = [_object_phrase(c, s, rng) for c, s in meaning.objects]
    prefix = _PREFIXES[rng.integers(len(_PREFIXES))]
    if phrases:
        text = prefix + " and ".join(phrases)
        if meaning.scene is not None:
            text += " " + pick_word(rng, SCENE_PHRASES[meaning.scene])
        return text
    text = _SCENE_ONLY[rng.integers(len(_SCENE_ONLY))].format(meaning.scene)
    return text if rng.random() < 0.5 else pick_word(rng, SCENE_PHRASES[meaning.scene])


def negative_caption(
    sample: FrameSample, meaning: Meaning, rng: np.random.Generator, tries: int = 10
) -> tuple[str, Meaning]:
    """A hard negative: the caption with one attribute swapped so that it is false for the frame.

    NegCLIP-style (Yuksekgonul et al., ICLR 2023): a named shape (preferred), else a named colour,
    else the scene is replaced by another value. Such a caption differs from a true one in a
    single word, so the text tower cannot ignore that word and the image tower must see it.

    Args:
        sample: the frame the original caption describes.
        meaning: what the original caption names.
        rng: random generator.
        tries: swaps to try before giving up.

    Returns:
        ``(text, meaning)``; ``meaning`` never matches ``sample`` unless every try failed.
    """
    from course_lib.toyworld import COLOURS, SCENES, SHAPES

    candidate = meaning
    for _ in range(tries):
        objects = list(meaning.objects)
        with_shape = [k for k, (_, s) in enumerate(objects) if s is not None]
        with_colour = [k for k, (c, _) in enumerate(objects) if c is not None]
        if with_shape and (not with_colour or rng.random() < 0.7):
            k = with_shape[int(rng.integers(len(with_shape)))]
            objects[k] = (objects[k][0], other_value(rng, SHAPES, objects[k][1]))
            candidate = Meaning(tuple(objects), meaning.scene)
        elif with_colour:
            k = with_colour[int(rng.integers(len(with_colour)))]
            objects[k] = (other_value(rng, COLOURS, objects[k][0]), objects[k][1])
            candidate = Meaning(tuple(objects), meaning.scene)
        else:
            candidate = Meaning(meaning.objects, other_value(rng, SCENES, meaning.scene))
        if not matches(candidate, sample):
            break
    return describe(candidate, rng), candidate


def other_value(rng: np.random.Generator, values: tuple[str, ...], value: str | None) -> str:
    """A random value different from ``value``."""
    options = [v for v in values if v != value]
    return str(options[int(rng.integers(len(options)))])


def pick_word(rng: np.random.Generator, options: tuple[str, ...]) -> str:
    """The canonical (first) word half of the time, else a random synonym."""
    return options[0] if rng.random() < 0.5 else options[int(rng.integers(len(options)))]


def _object_phrase(colour: str | None, shape: str | None, rng: np.random.Generator) -> str:
    """ "a red circle" / "a crimson ball", "a red shape" / "something red", "a circle"."""
    from course_lib.toyworld.captions import COLOUR_WORDS, SHAPE_WORDS

    colour_word = pick_word(rng, COLOUR_WORDS[colour]) if colour else ""
    shape_word = pick_word(rng, SHAPE_WORDS[shape]) if shape else ""
    if colour and shape:
        return f"{_article(colour_word)} {colour_word} {shape_word}"
    if colour:
        return (
            f"{_article(colour_word)} {colour_word} shape"
            if rng.random() < 0.7
            else f"something {colour_word}"
        )
    return f"{_article(shape_word)} {shape_word}"


def _article(word: str) -> str:
    """'an' before a vowel, else 'a'."""
    return "an" if word[0] in "aeiou" else "a"


def matches(meaning: Meaning, sample: FrameSample) -> bool:
    """True when the frame shows every attribute the caption names.

    The scene, when named, must be the frame's scene, and every named object must match some
    visible object (equal colour and/or shape, whichever the caption names).
    """
    if meaning.scene is not None and meaning.scene != sample.scene:
        return False
    for colour, shape in meaning.objects:
        if not any(
            (colour is None or colour == c) and (shape is None or shape == s)
            for c, s in sample.objects
        ):
            return False
    return True


def match_matrix(meanings: list[Meaning], samples: list[FrameSample]) -> np.ndarray:
    """(len(samples), len(meanings)) bool: ``[j, i]`` = frame j shows everything caption i names."""
    return np.array([[matches(m, s) for m in meanings] for s in samples], dtype=bool)


# ----------------------------------------------------------------------------- evaluation
PROMPTS = {
    "colour": "a photo of a {} shape",
    "shape": "a photo of a {}",
    "scene": "a photo of a {} scene",
}
EVAL_SEED = 0  # seed of the evaluation frames and captions


def evaluate_toy(
    encoder,
    n_frames: int = 1000,
    n_classify: int | None = None,
    split: str = "test",
    seed: int = EVAL_SEED,
) -> dict[str, float]:
    """The four toy-world quality numbers of an encoder, deterministic.

    Args:
        encoder: the encoder to evaluate.
        n_frames: frames of ``split`` in the retrieval pool (one caption per frame).
        n_classify: use only the first this many single-object frames for classification.
        split: toy-world split.
        seed: seed of frame sampling and captions.

    Returns:
        ``{"colour_acc", "shape_acc", "scene_acc", "r_at_1", "n_single"}``.
    """
    from course_lib.toyworld import COLOURS, SCENES, SHAPES

    samples = sample_frames(split, n_frames, seed=seed)
    image = encoder.encode_frames(render_samples(samples))
    # 1. zero-shot classification on frames with exactly one visible object
    single = [i for i, s in enumerate(samples) if len(s.objects) == 1][:n_classify]
    result: dict[str, float] = {"n_single": float(len(single))}
    for attr, names in (("colour", COLOURS), ("shape", SHAPES), ("scene", SCENES)):
        truth = [_label(samples[i], attr) for i in single]
        pred = classify_embeddings(encoder, image[single], names, PROMPTS[attr])
        result[f"{attr}_acc"] = float(
            np.mean([names[p] == t for p, t in zip(pred, truth, strict=True)])
        )
    # 2. text-to-frame retrieval: one caption per frame, hit = top frame shows it all
    captions, relevant = retrieval_queries(samples, seed)
    result["r_at_1"] = recall_at_k(text_to_frame_ranks(encoder, image, captions), relevant, k=1)
    return result


def retrieval_queries(
    samples: list[FrameSample], seed: int = EVAL_SEED
) -> tuple[list[str], np.ndarray]:
    """One seeded caption per frame, and the (N, Q) relevance matrix of all frames."""
    rng = np.random.default_rng([seed, 99])
    captions, meanings = zip(*(frame_caption(s, rng) for s in samples), strict=True)
    return list(captions), match_matrix(list(meanings), samples)


def _label(sample: FrameSample, attr: str) -> str:
    """Colour, shape or scene of a single-object frame."""
    if attr == "scene":
        return sample.scene
    colour, shape = sample.objects[0]
    return colour if attr == "colour" else shape
