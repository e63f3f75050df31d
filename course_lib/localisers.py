"""Moment localisers: find moments inside one video, and sliding windows for long videos.

A *localiser* (the :class:`Localiser` protocol, the one interface of this stage) finds moments
inside one video given its clip features and the query:

    localiser(clip_feats (T, D), query, duration: float) -> [(st, ed, score), ...]

with an attribute ``window_clips`` (the longest input it accepts, in 2-s clips; ``None`` = any).
The query is a :class:`Query` (text, sentence embedding, token features on demand); localisers
that read only the sentence embedding also take the bare (D,) array (:func:`query_embedding`).
Implementations: :class:`BaselineLocaliser` (chapter 3's training-free sliding-window baseline),
:class:`CorebaLocaliser` (chapter 5's trained model), :class:`FunctionLocaliser` (any function),
and chapter 6's :class:`course_lib.corpus.search.ProposalRefinementLocaliser`;
:func:`committed_localiser` picks the committed COREBA checkpoint when it was trained on the
encoder's features, else the baseline. Corpus search
(chapter 6) and the search engine (chapter 7) run them on the videos of a collection.

Videos longer than ``window_clips`` are cut into overlapping windows (:func:`window_starts`);
the localiser runs on each, predictions are shifted to video time and merged with temporal NMS
(:func:`localise_long`), so a 2-hour video is searched, not refused.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from course_lib.baseline import DEFAULT_WINDOW_LENGTHS, clip_similarities, predict_moments
from course_lib.spans import temporal_nms
from course_lib.timeline import CLIP_LEN

Moments = list[tuple[float, float, float]]


@dataclass
class Query:
    """A text query with its embeddings (computed once per search).

    Attributes:
        text: the query string.
        embedding: float32 (D,) L2-normalised sentence embedding.
        encoder: the CLIP encoder, for localisers that need more (e.g. token features).
    """

    text: str
    embedding: np.ndarray
    encoder: object | None = None
    _tokens: np.ndarray | None = field(default=None, init=False, repr=False)

    @classmethod
    def from_features(cls, text: str, embedding: np.ndarray, tokens: np.ndarray) -> Query:
        """A query whose sentence embedding and (L, D) token features are already computed."""
        query = cls(text, np.asarray(embedding, dtype=np.float32))
        query._tokens = np.asarray(tokens, dtype=np.float32)
        return query

    def tokens(self) -> np.ndarray:
        """float32 (L, D) word-token features (``encode_text_tokens``), computed once."""
        if self._tokens is None:
            if self.encoder is None:
                raise ValueError("this Query has no encoder to compute token features")
            tokens, mask = self.encoder.encode_text_tokens([self.text])
            self._tokens = np.asarray(tokens[0][mask[0]], dtype=np.float32)
        return self._tokens


def query_embedding(query: Query | np.ndarray) -> np.ndarray:
    """The float32 (D,) sentence embedding of a query: a :class:`Query`'s, or the array itself."""
    return np.asarray(getattr(query, "embedding", query), dtype=np.float32).reshape(-1)


class Localiser(Protocol):
    """What corpus search and the engine need from a moment localiser."""

    window_clips: int | None

    def __call__(self, clip_feats: np.ndarray, query: Query, duration: float) -> Moments: ...


@dataclass
class BaselineLocaliser:
    """Chapter 3's training-free localiser (:func:`course_lib.baseline.predict_moments`).

    Args:
        window_clips: longest input in clips (75 clips = 150 s, the moment model's window).
        overlap_clips: overlap of consecutive windows on longer videos.
        window_lengths: candidate moment lengths in clips.
        contrast: window score contrast (``"outside"``: inside minus outside similarity).
        max_windows: moments kept per video.
    """

    window_clips: int | None = 75
    overlap_clips: int = 25
    window_lengths: Sequence[int] = DEFAULT_WINDOW_LENGTHS
    contrast: str = "outside"
    max_windows: int = 10

    def __call__(self, clip_feats: np.ndarray, query: Query, duration: float) -> Moments:
        pred = predict_moments(
            clip_feats,
            query_embedding(query),
            duration=None,  # ends are clipped below; keeps every feature clip
            window_lengths=self.window_lengths,
            contrast=self.contrast,
            max_windows=self.max_windows,
        )
        return [(st, min(ed, duration), sc) for st, ed, sc in pred["pred_relevant_windows"]]

    def saliency(self, clip_feats: np.ndarray, query: Query, duration: float) -> np.ndarray:
        """(T,) per-clip saliency: cosine similarity of clip and query."""
        return clip_similarities(clip_feats, query_embedding(query))


@dataclass
class FunctionLocaliser:
    """Wrap ``fn(clip_feats, query, duration) -> moments`` as a localiser.

    Args:
        fn: the function; its moments are returned as float triples.
        window_clips: longest input in clips (None = any length).
        overlap_clips: overlap of consecutive windows on longer videos.
    """

    fn: Callable[[np.ndarray, Query, float], Sequence[tuple[float, float, float]]]
    window_clips: int | None = 75
    overlap_clips: int = 25

    def __call__(self, clip_feats: np.ndarray, query: Query, duration: float) -> Moments:
        return [(float(a), float(b), float(c)) for a, b, c in self.fn(clip_feats, query, duration)]


@dataclass
class CorebaLocaliser:
    """Chapter 5's trained moment model (COREBA or its QD-DETR baseline) as a localiser.

    One forward pass per (video window, query): clip features and the query's word-token
    features go in, the decoder's anchor spans ``(center, width)`` and foreground probabilities
    come out and are decoded into ``[(st, ed, score)]`` in seconds by
    :func:`course_lib.alignment.decode.windows_in_seconds`, the function chapter 5's
    :func:`course_lib.training.loop.predict` writes a submission with, so the engine and the
    chapter-5 evaluation see the same moments. The saliency head (COREBA eq. 7) gives the
    per-clip curve of :meth:`saliency`.

    Args:
        model: a :class:`course_lib.alignment.CorebaModel` whose ``d_v``/``d_t`` equal the CLIP
            width of the features (e.g. ``load_toy_checkpoint()[0]``); used in eval mode.
        query_tokens: ``query -> (L, D)`` token features (default :meth:`Query.tokens`).
        window_clips: longest input in clips (default: the model's ``max_clips``, 75 = 150 s).
        overlap_clips: overlap of consecutive windows on longer videos.
        max_tokens: query tokens kept (chapter 5's loader keeps 32).
        max_windows: moments kept per window (moment_detr's evaluation reads 10).
        clip_len: seconds per feature clip.
    """

    model: object
    query_tokens: Callable[[Query], np.ndarray] = Query.tokens
    window_clips: int | None = None
    overlap_clips: int = 25
    max_tokens: int = 32
    max_windows: int = 10
    clip_len: float = CLIP_LEN

    def __post_init__(self) -> None:
        if self.window_clips is None:
            self.window_clips = int(self.model.config.max_clips)

    def _forward(self, clip_feats: np.ndarray, query: Query) -> dict:
        """The model's outputs for one video window and one query (batch of one, no gradient)."""
        import torch

        from course_lib.datasets import pad_sequences

        feats = np.asarray(clip_feats, dtype=np.float32)
        tokens = np.asarray(self.query_tokens(query), dtype=np.float32)
        if feats.ndim != 2 or tokens.ndim != 2 or feats.shape[1] != tokens.shape[1]:
            raise ValueError(
                f"COREBA localiser: clip features {feats.shape} and query tokens "
                f"{tokens.shape} must be (T, D) and (L, D) with the same D"
            )
        # 1. pad/cut like chapter 5's loader (a batch of one has no padding)
        video, video_mask = pad_sequences([torch.from_numpy(feats)], self.window_clips)
        text, text_mask = pad_sequences([torch.from_numpy(tokens)], self.max_tokens)
        # 2. forward pass in eval mode on the model's device
        device = next(self.model.parameters()).device
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.no_grad():
                out = self.model(
                    video.to(device), video_mask.to(device), text.to(device), text_mask.to(device)
                )
        finally:
            self.model.train(was_training)
        return {key: value[0].cpu() for key, value in out.items() if key != "aux_outputs"}

    def __call__(self, clip_feats: np.ndarray, query: Query, duration: float) -> Moments:
        from course_lib.alignment.decode import windows_in_seconds

        out = self._forward(clip_feats, query)
        n_real = min(len(clip_feats), self.window_clips)
        windows = windows_in_seconds(
            out["pred_spans"], out["pred_logits"], n_real, duration, self.clip_len, self.max_windows
        )
        return [(st, ed, sc) for st, ed, sc in windows]

    def saliency(self, clip_feats: np.ndarray, query: Query, duration: float) -> np.ndarray:
        """(T,) per-clip saliency scores of the model's saliency head."""
        scores = self._forward(clip_feats, query)["saliency_scores"].numpy()
        return scores[: min(len(clip_feats), self.window_clips)].astype(np.float64)


#: file stem under ``data/`` of chapter 5's committed COREBA checkpoint
COREBA_CHECKPOINT_STEM = "coreba_toy"


def committed_localiser(encoder, data: str | None = None) -> CorebaLocaliser | BaselineLocaliser:
    """Chapter 5's committed COREBA when it was trained on ``encoder``'s features, else the baseline.

    A trained model only fits the clip features it was trained on: the checkpoint's sidecar
    records the encoder identity (``clip_identity``), which must equal ``encoder.identity``.

    Args:
        encoder: the encoder whose clip features the localiser will read (``identity``).
        data: the data folder (default :func:`course_lib.env.data_dir`).

    Returns:
        A :class:`CorebaLocaliser` around the checkpoint (eval mode), or a
        :class:`BaselineLocaliser` when the checkpoint is missing, damaged or was trained on
        other features.
    """
    from pathlib import Path

    from course_lib.env import data_dir
    from course_lib.errors import CheckpointError
    from course_lib.training.checkpoint import load_checkpoint

    # 1. the checkpoint, if present and intact
    stem = Path(data if data is not None else data_dir()) / COREBA_CHECKPOINT_STEM
    try:
        model, info = load_checkpoint(stem)
    except CheckpointError:
        return BaselineLocaliser()
    # 2. it must have been trained on this encoder's features
    if info.get("clip_identity") != getattr(encoder, "identity", None):
        return BaselineLocaliser()
    return CorebaLocaliser(model.eval())


def window_starts(n_clips: int, window: int | None, overlap: int = 0) -> list[int]:
    """Start clips of windows of ``window`` clips covering ``[0, n_clips)`` with ``overlap``.

    The stride is ``window - overlap``; the last window is aligned with the end of the video, so
    every clip is covered and no window is shorter than ``window`` (unless the video is).
    """
    if window is None or n_clips <= window:
        return [0]
    if not 0 <= overlap < window:
        raise ValueError(f"overlap must be in [0, window={window}), got {overlap}")
    starts = list(range(0, n_clips - window + 1, window - overlap))
    if starts[-1] + window < n_clips:
        starts.append(n_clips - window)
    return starts


def localise_long(
    localiser: Localiser,
    clip_feats: np.ndarray,
    query: Query,
    duration: float,
    nms_threshold: float = 0.7,
    max_moments: int = 10,
    clip_len: float = CLIP_LEN,
) -> Moments:
    """Run a localiser over a video of any length (sliding windows + temporal NMS).

    Args:
        localiser: the moment localiser (its ``window_clips`` / ``overlap_clips`` are used).
        clip_feats: (T, D) clip features of the whole video.
        query: the query.
        duration: video duration in seconds.
        nms_threshold: windows overlapping a better one by more IoU are dropped.
        max_moments: moments kept.

    Returns:
        ``[(st, ed, score), ...]`` in video seconds, best first.
    """
    window = getattr(localiser, "window_clips", None)
    overlap = int(getattr(localiser, "overlap_clips", 0) or 0)
    if window is not None:
        overlap = min(overlap, window - 1)
    rows = []
    for a in window_starts(len(clip_feats), window, overlap):
        b = len(clip_feats) if window is None else min(a + window, len(clip_feats))
        offset = a * clip_len
        # each window is a short video of its own: local times, then shifted back
        local_duration = min((b - a) * clip_len, duration - offset)
        for st, ed, sc in localiser(clip_feats[a:b], query, local_duration):
            rows.append((st + offset, min(ed + offset, duration), sc))
    rows = [r for r in rows if r[1] > r[0]]
    if not rows:
        return []
    return [tuple(r) for r in temporal_nms(np.asarray(rows), nms_threshold, max_moments)]


def saliency_curve(
    localiser: Localiser,
    clip_feats: np.ndarray,
    query: Query,
    duration: float,
    clip_len: float = CLIP_LEN,
) -> np.ndarray:
    """(T,) per-clip saliency from the localiser if it has one, else clip-query cosine.

    A localiser's own saliency runs on its windows; where windows overlap, values are averaged.
    """
    fn = getattr(localiser, "saliency", None)
    if fn is None:
        return clip_similarities(clip_feats, query_embedding(query))
    window = getattr(localiser, "window_clips", None)
    overlap = int(getattr(localiser, "overlap_clips", 0) or 0)
    if window is not None:
        overlap = min(overlap, window - 1)
    total, count = np.zeros(len(clip_feats)), np.zeros(len(clip_feats))
    for a in window_starts(len(clip_feats), window, overlap):
        b = len(clip_feats) if window is None else min(a + window, len(clip_feats))
        local = min((b - a) * clip_len, duration - a * clip_len)
        total[a:b] += np.asarray(fn(clip_feats[a:b], query, local), dtype=np.float64)[: b - a]
        count[a:b] += 1
    return total / np.maximum(count, 1)
