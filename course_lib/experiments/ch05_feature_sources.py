"""Feature sources for training: planted synthetic features and tiny-CLIP toy-world features.

A *feature source* is a callable: ``vid -> float32 (T, D)`` for videos (one row per 2-s clip) and
``qid -> float32 (L, D)`` for query tokens (see :class:`course_lib.datasets.MomentDataset`).

* :func:`planted_features` - no CLIP needed: a clip's feature is noise plus the embedding of
  every query whose ground-truth clips cover it, so a model that matches clips to queries can
  find the windows (unit tests, quick demos).
* :func:`toy_feature_sources` - real features from a :class:`course_lib.clip.ClipEncoder`:
  cached per-video clip features and projected query tokens.
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Callable, Sequence

import numpy as np

from course_lib.errors import DataValidationError
from course_lib.spans import num_clips

VideoSource = Callable[[str], np.ndarray]
QuerySource = Callable[[int], np.ndarray]


def _unit(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Random vectors of unit L2 norm along the last axis."""
    x = rng.standard_normal(shape)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _lookup(table: dict, what: str) -> Callable:
    """``key -> table[key]`` that names the unknown key in a :class:`DataValidationError`."""

    def source(key):
        try:
            return table[key]
        except KeyError:
            raise DataValidationError(f"no {what} features for {key!r}") from None

    return source


def planted_features(
    records: Sequence[dict],
    dim: int = 32,
    n_tokens: int = 6,
    noise: float = 0.3,
    seed: int = 0,
) -> tuple[VideoSource, QuerySource]:
    """Synthetic features with each query's embedding planted in its ground-truth clips.

    Every distinct query text gets a unit embedding ``e`` (seeded by the text, so equal texts
    share it); its tokens are ``e + noise``; a clip's feature is ``noise + sum of e`` over the
    records whose ``relevant_clip_ids`` contain the clip, scaled by their mean saliency / 4.

    Args:
        records: moment records (all records of a video contribute to its features).
        dim: feature width (``d_v = d_t = dim``).
        n_tokens: tokens per query.
        noise: standard deviation of the per-entry noise, relative to a unit vector.
        seed: seed of the embeddings and the noise.

    Returns:
        ``(video_source, query_source)`` callables returning float32 arrays.
    """
    scale = noise / np.sqrt(dim)
    embeds: dict[str, np.ndarray] = {}
    queries: dict[int, np.ndarray] = {}
    videos: dict[str, np.ndarray] = {}
    for rec in records:
        text = rec["query"]
        if text not in embeds:
            embeds[text] = _unit(np.random.default_rng([seed, zlib.crc32(text.encode())]), (dim,))
        rng = np.random.default_rng([seed, 1, int(rec["qid"])])
        queries[rec["qid"]] = (embeds[text] + scale * rng.standard_normal((n_tokens, dim))).astype(
            np.float32
        )
        if rec["vid"] not in videos:
            vrng = np.random.default_rng([seed, 2, zlib.crc32(rec["vid"].encode())])
            videos[rec["vid"]] = scale * vrng.standard_normal((num_clips(rec["duration"]), dim))
        for cid, scores in zip(rec["relevant_clip_ids"], rec["saliency_scores"]):
            if cid < len(videos[rec["vid"]]):
                videos[rec["vid"]][cid] += embeds[text] * (np.mean(scores) / 4.0)
    videos = {vid: feats.astype(np.float32) for vid, feats in videos.items()}
    return _lookup(videos, "video"), _lookup(queries, "query")


def toy_feature_sources(
    encoder,
    records: Sequence[dict],
    cache_root: str | os.PathLike | None = None,
    frames_per_clip: int | None = None,
) -> tuple[VideoSource, QuerySource]:
    """Tiny-CLIP (or any :class:`course_lib.clip.ClipEncoder`) features for toy-world records.

    Video features are computed on first use and cached on disk by
    :class:`course_lib.clip.FeatureCache` (keyed by the encoder identity); query tokens of all
    distinct query texts are encoded once, here, and kept in memory (they are cheap).

    Args:
        encoder: a ClipEncoder (``encode_text_tokens``, ``identity``).
        records: the moment records whose queries will be asked for.
        cache_root: base directory of the video feature cache (default ``cache_dir``).
        frames_per_clip: frames sampled per 2-s clip; default 1 for a frame encoder (one
            frame per clip) and k for a clip encoder such as
            :class:`course_lib.clip.clip_encoder.VideoClipEncoder`.

    Returns:
        ``(video_source, query_source)``: ``vid -> (T, D)``, ``qid -> (L_real, D)`` float32.
    """
    from course_lib.clip import FeatureCache

    cache = FeatureCache(encoder, root=cache_root, frames_per_clip=frames_per_clip)
    texts = sorted({rec["query"] for rec in records})
    tokens, mask = encoder.encode_text_tokens(texts)
    by_text = {t: tokens[i][mask[i]].cpu().numpy().astype(np.float32) for i, t in enumerate(texts)}
    by_qid: dict[int, np.ndarray] = {}
    for rec in records:
        seen = by_qid.get(rec["qid"])
        if seen is not None and seen is not by_text[rec["query"]]:
            raise DataValidationError(f"qid {rec['qid']} appears with two different query texts")
        by_qid[rec["qid"]] = by_text[rec["query"]]
    return cache.get, _lookup(by_qid, "query")
