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
    "MOMENT_FIELDS",
    "POOLED_KEY",
    "QUERY_KEY",
    "VIDEO_KEY",
    "QueryFeatureStore",
    "VideoFeatureStore",
    "clips_of_window",
    "corpus_errors",
    "iter_jsonl",
    "load_feature_file",
    "load_query_features",
    "load_video_features",
    "moment_record_errors",
    "query_feature_path",
    "read_jsonl",
    "retrieval_pair_errors",
    "save_query_features",
    "save_video_features",
    "validate_corpus",
    "validate_moment_record",
    "validate_moment_records",
    "validate_retrieval_pairs",
    "video_feature_path",
    "write_jsonl",
    *_TORCH_NAMES,
]
