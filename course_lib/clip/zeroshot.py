"""Zero-shot classification and text-to-frame retrieval: how good is a CLIP encoder?

Zero-shot classification (CLIP, Sec. 3.1.2): embed one prompt per class ("a photo of a red
shape"), predict the class whose prompt embedding has the highest cosine similarity with the
frame embedding. On the toy world we classify colour, shape and scene of test frames that show
exactly one object (with several objects "the colour of the frame" is ambiguous).

Text-to-frame retrieval: each caption ranks all frames; Recall@1 counts a hit when the top
frame shows every attribute the caption names (:func:`~course_lib.clip.frame_data.matches`),
so an equally correct frame other than the caption's source frame is not a miss.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from course_lib.clip.frame_data import FrameSample, frame_caption, match_matrix

PROMPTS = {
    "colour": "a photo of a {} shape",
    "shape": "a photo of a {}",
    "scene": "a photo of a {} scene",
}
EVAL_SEED = 0


def zero_shot_classify(
    encoder, frames: np.ndarray, class_names: Sequence[str], template: str = "a photo of a {}"
) -> np.ndarray:
    """Predicted class index of every frame (argmax cosine similarity to the class prompts).

    Args:
        encoder: a :class:`~course_lib.clip.encoder.ClipEncoder`.
        frames: (N, H, W, 3) frames.
        class_names: the classes, inserted into ``template``.
        template: prompt with one ``{}``.

    Returns:
        int64 (N,) indices into ``class_names``.
    """
    return _classify(encoder, encoder.encode_frames(frames), class_names, template)


def _classify(
    encoder, image: torch.Tensor, class_names: Sequence[str], template: str
) -> np.ndarray:
    """Argmax over class prompts of precomputed (N, D) frame embeddings."""
    text = encoder.encode_text([template.format(c) for c in class_names])
    return (image @ text.T).argmax(dim=1).numpy()


def text_to_frame_ranks(
    encoder, frames: np.ndarray | torch.Tensor, captions: Sequence[str]
) -> np.ndarray:
    """For each caption, frame indices sorted by decreasing similarity: int64 (Q, N).

    ``frames`` may also be precomputed (N, D) frame embeddings (a float tensor).
    """
    image = frames if _is_embedding(frames) else encoder.encode_frames(frames)
    sims = encoder.encode_text(list(captions)) @ image.T
    return torch.argsort(sims, dim=1, descending=True, stable=True).numpy()


def recall_at_k(ranks: np.ndarray, relevant: np.ndarray, k: int = 1) -> float:
    """Fraction of queries with a relevant frame among their top ``k``.

    Args:
        ranks: (Q, N) frame indices per query, best first.
        relevant: (N, Q) bool, ``relevant[j, i]`` = frame j is a correct answer to query i.
        k: cut-off.
    """
    top = ranks[:, :k]
    hits = relevant.T[np.arange(len(ranks))[:, None], top].any(axis=1)
    return float(hits.mean())


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
    from course_lib.clip.frame_data import render_samples, sample_frames
    from course_lib.toyworld import COLOURS, SCENES, SHAPES

    samples = sample_frames(split, n_frames, seed=seed)
    image = encoder.encode_frames(render_samples(samples))
    # 1. zero-shot classification on frames with exactly one visible object
    single = [i for i, s in enumerate(samples) if len(s.objects) == 1][:n_classify]
    result: dict[str, float] = {"n_single": float(len(single))}
    for attr, names in (("colour", COLOURS), ("shape", SHAPES), ("scene", SCENES)):
        truth = [_label(samples[i], attr) for i in single]
        pred = _classify(encoder, image[single], names, PROMPTS[attr])
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


def _is_embedding(x) -> bool:
    """True for a 2-D float tensor (embeddings) rather than (N, H, W, 3) frames."""
    return isinstance(x, torch.Tensor) and x.ndim == 2 and x.is_floating_point()


def _label(sample: FrameSample, attr: str) -> str:
    """Colour, shape or scene of a single-object frame."""
    if attr == "scene":
        return sample.scene
    colour, shape = sample.objects[0]
    return colour if attr == "colour" else shape
