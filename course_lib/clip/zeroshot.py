"""Zero-shot classification and text-to-frame retrieval: how good is a CLIP encoder?

Zero-shot classification (CLIP, Sec. 3.1.2): embed one prompt per class ("a photo of a red
shape"), predict the class whose prompt embedding has the highest cosine similarity with the
frame embedding. On the toy world we classify colour, shape and scene of test frames that show
exactly one object (with several objects "the colour of the frame" is ambiguous).

Text-to-frame retrieval: each caption ranks all frames; Recall@K counts a hit when one of the
top K frames is relevant to the caption (any frame that shows what it says, not only the frame
it was written for). The toy-world evaluation of chapter 1 lives in
:mod:`course_lib.experiments.ch01_toy_frames`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch


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
    return classify_embeddings(encoder, encoder.encode_frames(frames), class_names, template)


def classify_embeddings(
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


def _is_embedding(x) -> bool:
    """True for a 2-D float tensor (embeddings) rather than (N, H, W, 3) frames."""
    return isinstance(x, torch.Tensor) and x.ndim == 2 and x.is_floating_point()
