"""The QVHighlights release end to end: read it, train COREBA, write official submissions, score them.

Command line (``python -m course_lib.qvhighlights --help``)::

    python -m course_lib.qvhighlights train   --release DIR --run-dir RUN [--video-features clip+slowfast]
    python -m course_lib.qvhighlights predict --run-dir RUN [--split val test]
    python -m course_lib.qvhighlights eval    --submission RUN/hl_val_submission.jsonl \\
                                              --ground-truth DIR/highlight_val_release.jsonl

* :mod:`~course_lib.qvhighlights.release` - the release layout, and the model input built with
  moment_detr's conventions (truncation, per-stream L2 normalisation, alignment to the shortest
  stream, temporal endpoint features), each documented with its source;
* :mod:`~course_lib.qvhighlights.config` - the run settings from a json file (shipped:
  ``coreba_qvhighlights.json``, COREBA's QVHighlights settings);
* :mod:`~course_lib.qvhighlights.run` - :func:`train_run` (resumable run folder, GPU and mixed
  precision when present), :func:`predict_run`, :func:`eval_run`.
"""

from course_lib.qvhighlights.config import DEFAULT_CONFIG, RunConfig, load_run_config
from course_lib.qvhighlights.release import (
    VIDEO_FEATURES,
    FeatureSettings,
    ReleaseFeatures,
    ReleaseLayout,
    join_streams,
    l2_normalize,
    read_split,
    temporal_endpoint_features,
)
from course_lib.qvhighlights.run import eval_run, predict_run, train_run

__all__ = [
    "DEFAULT_CONFIG",
    "VIDEO_FEATURES",
    "FeatureSettings",
    "ReleaseFeatures",
    "ReleaseLayout",
    "RunConfig",
    "eval_run",
    "join_streams",
    "l2_normalize",
    "load_run_config",
    "predict_run",
    "read_split",
    "temporal_endpoint_features",
    "train_run",
]
