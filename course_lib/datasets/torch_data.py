"""PyTorch datasets and collate functions for the three task views.

* :class:`RetrievalPairDataset` - trimmed clip + caption (text-to-video retrieval);
* :class:`MomentDataset` - untrimmed video + query with windows and saliency (QVHighlights);
* :class:`CorpusVideoDataset` / :class:`CorpusQueryDataset` - a video corpus and its queries
  with graded relevant moments (TVR-Ranking-like).

Features come from a *source*: a callable (``vid -> (T, D)`` array, ``qid -> (L, D)`` array)
or a directory in the moment_detr layout (see :mod:`course_lib.datasets.features`), so
cached CLIP features plug in directly.

**Mask convention: every mask returned here is a bool tensor with True = real (valid)
position and False = padding** (as moment_detr's ``src_vid_mask``). PyTorch's
``nn.MultiheadAttention(key_padding_mask=...)`` wants the opposite (True = ignore), so pass
``~mask`` there.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from course_lib.datasets.features import QueryFeatureStore, VideoFeatureStore
from course_lib.datasets.validate import (
    CLIP_LEN,
    validate_corpus,
    validate_moment_records,
    validate_retrieval_pairs,
)
from course_lib.errors import DataValidationError

FeatureSource = Callable[[Any], Any] | str | os.PathLike


def as_video_source(source: FeatureSource) -> Callable[[str], Any]:
    """A callable ``vid -> (T, D)`` from a callable or a moment_detr feature directory."""
    return VideoFeatureStore(source) if isinstance(source, (str, os.PathLike)) else source


def as_query_source(source: FeatureSource) -> Callable[[int], Any]:
    """A callable ``qid -> (L, D)`` (or ``(D,)``) from a callable or a feature directory."""
    return QueryFeatureStore(source) if isinstance(source, (str, os.PathLike)) else source


def _as_tensor(arr, what: str, ndims: tuple[int, ...] = (2,)) -> torch.Tensor:
    """Float32 tensor from a source's output, checking ndim, emptiness and finiteness."""
    t = torch.as_tensor(np.asarray(arr, dtype=np.float32))
    if t.ndim not in ndims or t.numel() == 0:
        raise DataValidationError(
            f"{what}: features have shape {tuple(t.shape)}, "
            f"expected a non-empty {' or '.join(f'{n}-D' for n in ndims)} array"
        )
    if not torch.isfinite(t).all():
        raise DataValidationError(f"{what}: features contain NaN or inf")
    return t


def windows_to_spans(windows: torch.Tensor, length_s: float) -> torch.Tensor:
    """Normalised ``(center, width)`` spans from windows in seconds (moment_detr coding).

    Windows are divided by the feature length in seconds (``T * clip_len``), clipped to
    ``[0, 1]``; windows that start at or after the end are dropped.

    Args:
        windows: ``(N, 2)`` ``[start, end]`` in seconds.
        length_s: length the model sees, ``T * clip_len``.

    Returns:
        ``(N', 2)`` float32 ``(center, width)`` in ``[0, 1]``, ``N' <= N``.
    """
    xx = (windows.float() / length_s).clamp(0.0, 1.0)
    xx = xx[xx[:, 0] < 1.0] if len(xx) else xx.reshape(0, 2)
    return torch.stack([(xx[:, 0] + xx[:, 1]) / 2, xx[:, 1] - xx[:, 0]], dim=1)


def saliency_targets(
    record: dict, n_clips: int, reduce: str | int = "mean"
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-clip saliency targets from ``relevant_clip_ids`` and ``saliency_scores``.

    Args:
        record: moment record (label fields may be absent: all-zero targets).
        n_clips: number of feature clips T; clip ids ``>= T`` are dropped.
        reduce: ``"mean"``, ``"max"``, ``"min"`` over annotators, or an annotator index.

    Returns:
        ``saliency`` float ``(T,)`` (0-4 scale, 0 for non-relevant clips),
        ``saliency_raw`` long ``(T, A)`` (per-annotator scores, as used by HL metrics) and
        ``relevant`` bool ``(T,)``.
    """
    ids = record.get("relevant_clip_ids", [])
    scores = record.get("saliency_scores", [])
    n_ann = len(scores[0]) if scores else 3
    raw = torch.zeros(n_clips, n_ann, dtype=torch.long)
    relevant = torch.zeros(n_clips, dtype=torch.bool)
    for cid, row in zip(ids, scores):
        if cid < n_clips:
            raw[cid] = torch.as_tensor(row, dtype=torch.long)
            relevant[cid] = True
    rawf = raw.float()
    if isinstance(reduce, int):
        sal = rawf[:, reduce]
    elif reduce in {"mean", "max", "min"}:
        sal = rawf.mean(1) if reduce == "mean" else getattr(rawf, reduce)(1).values
    else:
        raise ValueError(f"reduce must be 'mean', 'max', 'min' or an int, got {reduce!r}")
    return sal, raw, relevant


def pad_sequences(
    seqs: Sequence[torch.Tensor], max_len: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad ``(T_i, D)`` tensors to ``(B, T_max, D)``, truncating at ``max_len``.

    Returns:
        ``padded`` (zeros in padding) and ``mask`` bool ``(B, T_max)``, True = real.
    """
    dims = {s.shape[1:] for s in seqs}
    if len(dims) != 1:
        raise DataValidationError(f"cannot batch features with different shapes {sorted(dims)}")
    lengths = [min(len(s), max_len) if max_len else len(s) for s in seqs]
    out = seqs[0].new_zeros((len(seqs), max(lengths), *seqs[0].shape[1:]))
    mask = torch.zeros(len(seqs), max(lengths), dtype=torch.bool)
    for i, (s, n) in enumerate(zip(seqs, lengths)):
        out[i, :n], mask[i, :n] = s[:n], True
    return out, mask


class RetrievalPairDataset(Dataset):
    """Text-to-video retrieval pairs: clip features + caption features.

    Args:
        pairs: retrieval pairs ``{pair_id, vid, caption, duration}``.
        video_features: source ``vid -> (T, Dv)`` (callable or feature directory).
        text_features: source ``pair_id -> (L, Dt)`` tokens or ``(Dt,)`` sentence feature.
        validate: check the pairs first (raises DataValidationError).

    Items: ``{"video": (T, Dv), "text": (L, Dt) or (Dt,), "record": pair}``.
    """

    def __init__(
        self,
        pairs,
        video_features: FeatureSource,
        text_features: FeatureSource,
        validate: bool = True,
    ) -> None:
        self.pairs = list(pairs)
        if validate:
            validate_retrieval_pairs(self.pairs)
        self.video_source = as_video_source(video_features)
        self.text_source = as_query_source(text_features)

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i: int) -> dict:
        pair = self.pairs[i]
        name = f"pair_id={pair['pair_id']} (vid {pair['vid']!r})"
        return {
            "video": _as_tensor(self.video_source(pair["vid"]), name),
            "text": _as_tensor(self.text_source(pair["pair_id"]), name, (1, 2)),
            "record": pair,
        }


def _pad_text(texts: list[torch.Tensor], max_tokens: int | None):
    """Pad token features, or stack sentence features (mask None)."""
    if all(t.ndim == 1 for t in texts):
        return torch.stack(texts), None
    if any(t.ndim == 1 for t in texts):
        raise DataValidationError("a batch mixes sentence (D,) and token (L, D) text features")
    return pad_sequences(texts, max_tokens)


def collate_retrieval(
    batch: list[dict], max_clips: int | None = None, max_tokens: int | None = None
) -> dict:
    """Batch retrieval items (use ``functools.partial`` to set the caps).

    Returns:
        ``video`` (B, T, Dv), ``video_mask`` (B, T) bool True = real, ``text`` (B, L, Dt)
        with ``text_mask`` (B, L), or ``text`` (B, Dt) with ``text_mask`` None for sentence
        features, and ``records`` (the raw pairs).
    """
    video, video_mask = pad_sequences([b["video"] for b in batch], max_clips)
    text, text_mask = _pad_text([b["text"] for b in batch], max_tokens)
    return {
        "video": video,
        "video_mask": video_mask,
        "text": text,
        "text_mask": text_mask,
        "records": [b["record"] for b in batch],
    }


class MomentDataset(Dataset):
    """QVHighlights-style moment retrieval + highlight detection.

    Args:
        records: moment records.
        video_features: source ``vid -> (T, Dv)`` (one row per clip).
        query_features: source ``qid -> (L, Dt)``.
        clip_len: seconds per clip (2).
        saliency_reduce: how annotator scores become the ``(T,)`` target (see
            :func:`saliency_targets`).
        require_labels: False for unlabelled (test-split) records.
        validate: check records first (raises DataValidationError).

    Items: ``video`` (T, Dv), ``query`` (L, Dt), ``windows`` (N, 2) seconds, ``spans`` (N', 2)
    normalised (center, width), ``saliency`` (T,), ``saliency_raw`` (T, A), ``relevant`` (T,),
    ``record``.
    """

    def __init__(
        self,
        records,
        video_features: FeatureSource,
        query_features: FeatureSource,
        clip_len: float = CLIP_LEN,
        saliency_reduce: str | int = "mean",
        require_labels: bool = True,
        validate: bool = True,
    ) -> None:
        self.records = list(records)
        if validate:
            validate_moment_records(self.records, clip_len, require_labels)
        self.video_source = as_video_source(video_features)
        self.query_source = as_query_source(query_features)
        self.clip_len, self.saliency_reduce = clip_len, saliency_reduce

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> dict:
        rec = self.records[i]
        name = f"qid={rec['qid']} (vid {rec['vid']!r})"
        video = _as_tensor(self.video_source(rec["vid"]), name)
        windows = torch.tensor(rec.get("relevant_windows", []), dtype=torch.float32).reshape(-1, 2)
        sal, raw, relevant = saliency_targets(rec, len(video), self.saliency_reduce)
        return {
            "video": video,
            "query": _as_tensor(self.query_source(rec["qid"]), name),
            "windows": windows,
            "spans": windows_to_spans(windows, len(video) * self.clip_len),
            "saliency": sal,
            "saliency_raw": raw,
            "relevant": relevant,
            "record": rec,
        }


def collate_moments(
    batch: list[dict],
    max_clips: int | None = None,
    max_tokens: int | None = None,
    clip_len: float = CLIP_LEN,
) -> dict:
    """Batch moment items, padding to the batch maximum (optionally capped).

    With ``max_clips`` (e.g. 75 = 150 s / 2 s as in QVHighlights) longer videos are cut and
    their spans are re-normalised to the kept length; windows starting after the cut are
    dropped, later ones clipped.

    Returns:
        ``video`` (B, T, Dv), ``video_mask`` (B, T) bool True = real, ``query`` (B, L, Dt),
        ``query_mask`` (B, L), ``saliency`` (B, T) float, ``saliency_raw`` (B, T, A) long,
        ``relevant`` (B, T) bool (False in padding), ``spans`` list of (N_i, 2) tensors
        (DETR-style targets), ``records`` (raw records for evaluation).
    """
    video, video_mask = pad_sequences([b["video"] for b in batch], max_clips)
    query, query_mask = pad_sequences([b["query"] for b in batch], max_tokens)
    width = video.shape[1]
    n_ann = max(b["saliency_raw"].shape[1] for b in batch)
    saliency = torch.zeros(len(batch), width)
    saliency_raw = torch.zeros(len(batch), width, n_ann, dtype=torch.long)
    relevant = torch.zeros(len(batch), width, dtype=torch.bool)
    spans = []
    for i, b in enumerate(batch):
        n = int(video_mask[i].sum())
        saliency[i, :n], relevant[i, :n] = b["saliency"][:n], b["relevant"][:n]
        saliency_raw[i, :n, : b["saliency_raw"].shape[1]] = b["saliency_raw"][:n]
        spans.append(windows_to_spans(b["windows"], n * clip_len))
    return {
        "video": video,
        "video_mask": video_mask,
        "query": query,
        "query_mask": query_mask,
        "saliency": saliency,
        "saliency_raw": saliency_raw,
        "relevant": relevant,
        "spans": spans,
        "records": [b["record"] for b in batch],
    }


class CorpusVideoDataset(Dataset):
    """The videos of a corpus: items ``{"vid", "video" (T, D), "duration"}``.

    Args:
        corpus: ``{"videos": [...], "queries": [...]}``.
        video_features: source ``vid -> (T, D)``.
        validate: check the corpus first.
    """

    def __init__(self, corpus: dict, video_features: FeatureSource, validate: bool = True) -> None:
        if validate:
            validate_corpus(corpus)
        self.videos = list(corpus["videos"])
        self.video_source = as_video_source(video_features)

    def __len__(self) -> int:
        return len(self.videos)

    def __getitem__(self, i: int) -> dict:
        v = self.videos[i]
        feats = _as_tensor(self.video_source(v["vid"]), f"vid {v['vid']!r}")
        return {"vid": v["vid"], "video": feats, "duration": float(v["duration"])}


def collate_corpus_videos(batch: list[dict], max_clips: int | None = None) -> dict:
    """Batch corpus videos: ``video`` (B, T, D), ``video_mask`` (True = real), ``vids``,
    ``durations`` (B,)."""
    video, video_mask = pad_sequences([b["video"] for b in batch], max_clips)
    return {
        "video": video,
        "video_mask": video_mask,
        "vids": [b["vid"] for b in batch],
        "durations": torch.tensor([b["duration"] for b in batch]),
    }


class CorpusQueryDataset(Dataset):
    """The queries of a corpus with their graded relevant moments.

    Items: ``query`` (L, D), ``moment_vids`` (list of N vids), ``windows`` (N, 2) seconds,
    ``relevance`` (N,) long 0-4, ``record`` (the corpus query).

    Args:
        corpus: ``{"videos": [...], "queries": [...]}``.
        query_features: source ``qid -> (L, D)``.
        validate: check the corpus first.
    """

    def __init__(self, corpus: dict, query_features: FeatureSource, validate: bool = True) -> None:
        if validate:
            validate_corpus(corpus)
        self.queries = list(corpus["queries"])
        self.query_source = as_query_source(query_features)

    def __len__(self) -> int:
        return len(self.queries)

    def __getitem__(self, i: int) -> dict:
        q = self.queries[i]
        moments = q["relevant_moments"]
        return {
            "query": _as_tensor(self.query_source(q["qid"]), f"qid={q['qid']}"),
            "moment_vids": [m["vid"] for m in moments],
            "windows": torch.tensor([m["window"] for m in moments], dtype=torch.float32).reshape(
                -1, 2
            ),
            "relevance": torch.tensor([m["relevance"] for m in moments], dtype=torch.long),
            "record": q,
        }


def collate_corpus_queries(batch: list[dict], max_tokens: int | None = None) -> dict:
    """Batch corpus queries: ``query`` (B, L, D), ``query_mask`` (True = real), and per-query
    lists ``moment_vids``, ``windows``, ``relevance``, ``records``."""
    query, query_mask = pad_sequences([b["query"] for b in batch], max_tokens)
    out = {"query": query, "query_mask": query_mask}
    for key in ("moment_vids", "windows", "relevance"):
        out[key] = [b[key] for b in batch]
    out["records"] = [b["record"] for b in batch]
    return out
