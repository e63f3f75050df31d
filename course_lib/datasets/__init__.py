"""Datasets: QVHighlights-format records, moment_detr-layout feature stores, torch datasets.

* :mod:`~course_lib.datasets.records` - ``read_jsonl`` / ``write_jsonl`` (atomic);
* :mod:`~course_lib.datasets.validate` - validators for moment records, retrieval pairs and
  corpora (errors name the record and field);
* :mod:`~course_lib.datasets.features` - ``{vid}.npz["features"]`` and
  ``qid{qid}.npz["last_hidden_state"]`` stores;
* :mod:`~course_lib.datasets.torch_data` - torch datasets and collates (masks: True = real),
  imported lazily so the validator CLI starts without torch;
* :mod:`~course_lib.datasets.safe_read` - the checks every reader of the library shares (special
  files, JSON, npz size caps, weights-only torch files, capped echoes of bad values).
* :mod:`~course_lib.datasets.release_readers` - Charades-STA, ActivityNet Captions and TaCoS in
  lighthouse's layout (MR-only records), TVR and TVR-Ranking query files (corpus records).

Command line: ``python -m course_lib.datasets validate FILE.jsonl``.
"""

from course_lib.datasets.features import (
    POOLED_KEY,
    QUERY_KEY,
    VIDEO_KEY,
    QueryFeatureStore,
    VideoFeatureStore,
    load_feature_file,
    load_query_features,
    load_video_features,
    query_feature_path,
    save_query_features,
    save_video_features,
    video_feature_path,
)
from course_lib.datasets.records import iter_jsonl, read_jsonl, write_jsonl
from course_lib.datasets.release_readers import (
    MR_DATASETS,
    WindowClippedWarning,
    check_highlight_labels,
    is_mr_only,
    read_mr_release,
    read_tvr_ranking,
    read_tvr_ranking_videos,
    read_tvr_release,
    read_tvr_video_durations,
)
from course_lib.datasets.validate import (
    MOMENT_FIELDS,
    clips_of_window,
    corpus_errors,
    moment_record_errors,
    retrieval_pair_errors,
    validate_corpus,
    validate_moment_record,
    validate_moment_records,
    validate_retrieval_pairs,
)

_TORCH_NAMES = (
    "CorpusQueryDataset",
    "CorpusVideoDataset",
    "MomentDataset",
    "RetrievalPairDataset",
    "as_query_source",
    "as_video_source",
    "collate_corpus_queries",
    "collate_corpus_videos",
    "collate_moments",
    "collate_retrieval",
    "pad_sequences",
    "saliency_targets",
    "windows_to_spans",
)


def __getattr__(name: str):
    """Import the torch part on first use (keeps ``import course_lib.datasets`` light)."""
    if name in _TORCH_NAMES:
        from course_lib.datasets import torch_data

        return getattr(torch_data, name)
    raise AttributeError(f"module 'course_lib.datasets' has no attribute {name!r}")


__all__ = [
    "check_highlight_labels",
    "clips_of_window",
    "corpus_errors",
    "is_mr_only",
    "iter_jsonl",
    "load_feature_file",
    "load_query_features",
    "load_video_features",
    "MOMENT_FIELDS",
    "moment_record_errors",
    "MR_DATASETS",
    "POOLED_KEY",
    "query_feature_path",
    "QUERY_KEY",
    "QueryFeatureStore",
    "read_jsonl",
    "read_mr_release",
    "read_tvr_ranking",
    "read_tvr_ranking_videos",
    "read_tvr_release",
    "read_tvr_video_durations",
    "retrieval_pair_errors",
    "save_query_features",
    "save_video_features",
    "validate_corpus",
    "validate_moment_record",
    "validate_moment_records",
    "validate_retrieval_pairs",
    "video_feature_path",
    "VIDEO_KEY",
    "VideoFeatureStore",
    "WindowClippedWarning",
    "write_jsonl",
    *_TORCH_NAMES,
]
