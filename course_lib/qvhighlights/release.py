"""The QVHighlights release on disk, and its features built as moment_detr builds them.

Layout (moment_detr's ``data/README.md`` and ``moment_detr/scripts/train.sh``; the features come
from its ``moment_detr_features.tar.gz``)::

    highlight_{train,val,test}_release.jsonl   moment records (test: no label fields)
    clip_features/{vid}.npz                    "features" (T, 512): CLIP ViT-B/32, one row per 2 s
    slowfast_features/{vid}.npz                "features" (T, 2304): SlowFast, one row per 2 s
    clip_text_features/qid{qid}.npz            "last_hidden_state" (L, 512): CLIP text tokens

The jsonl files may also sit in ``data/`` and the feature folders in ``features/`` under the
root (where moment_detr's README puts them); :class:`ReleaseLayout` looks in both places.

Conventions, each as in moment_detr's ``moment_detr/start_end_dataset.py``
(``StartEndDataset``; defaults from ``moment_detr/config.py``):

* **Truncation to max_v_l / max_q_l** (``_get_video_feat_by_vid``, ``_get_query_feat_by_qid``):
  every video stream keeps its first ``max_v_l = 75`` rows (150 s at ``clip_length = 2``), the
  query its first ``max_q_l = 32`` tokens, before anything else.
* **Per-stream L2 normalisation** (``normalize_v`` / ``normalize_t``, on unless
  ``--no_norm_vfeat`` / ``--no_norm_tfeat``): each row of each stream, and each query token, is
  divided by its L2 norm plus ``1e-5`` (``utils.basic_utils.l2_normalize_np_array``), stream by
  stream, before the streams are joined.
* **Alignment to the shortest stream** (``_get_video_feat_by_vid``: "some features are slightly
  longer than the others"): all streams are cut to the length of the shortest one, then
  concatenated along the feature axis. This is the *76-row quirk*: SlowFast has 76 rows for
  some 150-s videos where CLIP has 75 (max_v_l already cuts those), and shorter videos can
  differ by a row too. Streams that differ by more than :data:`MAX_ROW_GAP` rows are joined the
  same way, with a warning naming the video.
* **Stream order** (``train.sh``: ``v_feat_dirs`` lists ``slowfast_features`` before
  ``clip_features``): ``[SlowFast (2304), CLIP (512)]``, 2816 columns.
* **Temporal endpoint features** (``ctx_mode = "video_tef"``, ``__getitem__``): two columns
  ``[i / T, (i + 1) / T]`` for row ``i`` of the ``T`` aligned rows, appended after
  normalisation (so the model input is 2818 wide with both streams: ``v_feat_dim + 2`` in
  ``config.py``).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from course_lib.datasets.features import (
    QUERY_KEY,
    VIDEO_KEY,
    load_feature_file,
    query_feature_path,
    video_feature_path,
)
from course_lib.datasets.records import read_jsonl
from course_lib.datasets.validate import validate_moment_records
from course_lib.errors import DataValidationError
from course_lib.timeline import CLIP_LEN

SPLITS = ("train", "val", "test")
ANNOTATION_FILE = "highlight_{split}_release.jsonl"
STREAM_FOLDERS = {"slowfast": "slowfast_features", "clip": "clip_features"}
TEXT_FOLDER = "clip_text_features"
#: ``--video-features`` choices and the streams each joins, in moment_detr's order.
VIDEO_FEATURES = {
    "clip": ("clip",),
    "slowfast": ("slowfast",),
    "clip+slowfast": ("slowfast", "clip"),
}
MAX_V_L, MAX_Q_L = 75, 32  # moment_detr/config.py --max_v_l, --max_q_l
L2_EPS = 1e-5  # utils/basic_utils.py l2_normalize_np_array
MAX_ROW_GAP = 2  # streams whose lengths differ by more than this get a warning
SUBFOLDERS = {"annotations": "data", "features": "features"}  # moment_detr's checkout layout


def l2_normalize(x: np.ndarray, eps: float = L2_EPS) -> np.ndarray:
    """Divide every row by its L2 norm plus ``eps`` (moment_detr ``l2_normalize_np_array``).

    Args:
        x: ``(N, D)`` float array.
        eps: added to the norm (1e-5 in moment_detr), so an all-zero row stays zero.

    Returns:
        float32 ``(N, D)``.
    """
    x = np.asarray(x, dtype=np.float32)
    return x / (np.linalg.norm(x, axis=-1, keepdims=True) + np.float32(eps))


def temporal_endpoint_features(n_rows: int) -> np.ndarray:
    """moment_detr's ``tef``: row ``i`` of ``n_rows`` is ``[i / n_rows, (i + 1) / n_rows]``.

    Args:
        n_rows: number of aligned clip rows ``T`` (>= 1).

    Returns:
        float32 ``(T, 2)``.
    """
    start = np.arange(n_rows, dtype=np.float32) / n_rows
    return np.stack([start, start + np.float32(1.0 / n_rows)], axis=1)


def join_streams(
    streams: Sequence[np.ndarray],
    max_v_l: int | None = MAX_V_L,
    normalize: bool = True,
    tef: bool = True,
    name: str = "video",
) -> np.ndarray:
    """One video's model input from its streams, in moment_detr's steps (module docstring).

    Args:
        streams: ``(T_s, D_s)`` arrays in the order they are joined (SlowFast before CLIP).
        max_v_l: rows kept per stream before anything else (None: all).
        normalize: L2-normalise each stream's rows.
        tef: append the two temporal endpoint columns.
        name: the video, for the warning about streams of very different lengths.

    Returns:
        float32 ``(min_s min(T_s, max_v_l), sum_s D_s (+ 2))``.
    """
    # 1. per stream: the first max_v_l rows, L2-normalised
    cut = [np.asarray(s, dtype=np.float32)[:max_v_l] for s in streams]
    if normalize:
        cut = [l2_normalize(s) for s in cut]
    # 2. every stream cut to the shortest one (the 76-row quirk), then joined
    lengths = [len(s) for s in cut]
    if max(lengths) - min(lengths) > MAX_ROW_GAP:
        warnings.warn(
            f"{name}: feature streams have {lengths} rows; all are cut to {min(lengths)}",
            stacklevel=2,
        )
    video = np.concatenate([s[: min(lengths)] for s in cut], axis=1)
    # 3. the temporal endpoint features of the aligned rows
    if tef:
        video = np.concatenate([video, temporal_endpoint_features(len(video))], axis=1)
    return video


@dataclass(frozen=True)
class ReleaseLayout:
    """Where the files of a QVHighlights release are.

    Args:
        root: the release folder (the jsonl files and feature folders directly in it, or in its
            ``data/`` and ``features/`` subfolders as in a moment_detr checkout).
    """

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))
        if not self.root.is_dir():
            raise DataValidationError(f"QVHighlights release folder not found: {self.root}")

    def _find(self, name: str, kind: str, is_folder: bool) -> Path:
        """``root/name`` or ``root/<data or features>/name``, whichever exists (folder or file)."""
        tried = [self.root / name, self.root / SUBFOLDERS[kind] / name]
        for path in tried:
            if path.is_dir() if is_folder else path.is_file():
                return path
        what = "folder" if is_folder else "file"
        raise DataValidationError(
            f"QVHighlights release: {what} {name} not found (looked for {tried[0]} and "
            f"{tried[1]}); see the README section 'Reproduce COREBA on QVHighlights on a GPU'"
        )

    def annotation_path(self, split: str) -> Path:
        """``highlight_{split}_release.jsonl``."""
        if split not in SPLITS:
            raise DataValidationError(f"unknown split {split!r}; choose one of {SPLITS}")
        return self._find(ANNOTATION_FILE.format(split=split), "annotations", is_folder=False)

    def stream_folder(self, stream: str) -> Path:
        """``clip_features/`` or ``slowfast_features/``."""
        if stream not in STREAM_FOLDERS:
            raise DataValidationError(
                f"unknown video stream {stream!r}; choose one of clip, slowfast"
            )
        return self._find(STREAM_FOLDERS[stream], "features", is_folder=True)

    def text_folder(self) -> Path:
        """``clip_text_features/``."""
        return self._find(TEXT_FOLDER, "features", is_folder=True)


def read_split(layout: ReleaseLayout, split: str, clip_len: float = CLIP_LEN) -> list[dict]:
    """The moment records of one split, validated (test records need no labels).

    Args:
        layout: the release.
        split: ``train``, ``val`` or ``test``.
        clip_len: seconds per clip (2).

    Returns:
        The records in file order.

    Raises:
        DataValidationError: a missing or unreadable file, or a bad record (names the file,
            the record's qid and the field).
    """
    path = layout.annotation_path(split)
    records = read_jsonl(path)
    try:
        validate_moment_records(records, clip_len, require_labels=split != "test")
    except DataValidationError as exc:
        raise DataValidationError(f"{path}: {exc}") from None
    return records


@dataclass(frozen=True)
class FeatureSettings:
    """How the model input is built (moment_detr's defaults).

    Attributes:
        video_features: ``clip``, ``slowfast`` or ``clip+slowfast`` (:data:`VIDEO_FEATURES`).
        max_v_l, max_q_l: rows kept per video stream (75) and tokens per query (32).
        normalize_v, normalize_t: L2-normalise video rows per stream / query tokens.
        tef: append the temporal endpoint features.
    """

    video_features: str = "clip+slowfast"
    max_v_l: int = MAX_V_L
    max_q_l: int = MAX_Q_L
    normalize_v: bool = True
    normalize_t: bool = True
    tef: bool = True

    def __post_init__(self) -> None:
        if self.video_features not in VIDEO_FEATURES:
            raise DataValidationError(
                f"video_features={self.video_features!r}; choose one of {', '.join(VIDEO_FEATURES)}"
            )
        for name in ("max_v_l", "max_q_l"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise DataValidationError(f"{name}={value!r} must be an int >= 1")
        for name in ("normalize_v", "normalize_t", "tef"):
            if not isinstance(getattr(self, name), bool):
                raise DataValidationError(f"{name}={getattr(self, name)!r} must be true or false")

    def describe(self) -> str:
        """One line naming the streams and conventions, for progress output."""
        streams = " + ".join(VIDEO_FEATURES[self.video_features])
        flags = [
            f"max_v_l {self.max_v_l}",
            f"max_q_l {self.max_q_l}",
            "L2 per stream" if self.normalize_v else "no video L2",
            "L2 per token" if self.normalize_t else "no token L2",
            "tef" if self.tef else "no tef",
        ]
        return f"{streams} ({', '.join(flags)})"


class ReleaseFeatures:
    """Model inputs of a release: ``video(vid)`` ``(T, D_v)`` and ``query(qid)`` ``(L, 512)``.

    Both are callables :func:`course_lib.training.make_loader` takes. Nothing is cached (the
    full release is ~8 GB); the object pickles, so DataLoader workers can read in parallel.

    Args:
        layout: the release.
        settings: streams, caps, normalisation and tef.
    """

    def __init__(self, layout: ReleaseLayout, settings: FeatureSettings) -> None:
        self.settings = settings
        self.streams = VIDEO_FEATURES[settings.video_features]
        self.folders = {stream: layout.stream_folder(stream) for stream in self.streams}
        self.text_root = layout.text_folder()
        self._widths: dict[str, int] = {}  # width of each stream, fixed by the first file read

    def _stream(self, stream: str, vid: str) -> np.ndarray:
        """One stream of one video, its width checked against the first file of that stream."""
        path = video_feature_path(self.folders[stream], vid)
        array = load_feature_file(path, VIDEO_KEY, 2)
        width = self._widths.setdefault(stream, array.shape[1])
        if array.shape[1] != width:
            raise DataValidationError(
                f"{path}: {VIDEO_KEY!r} has {array.shape[1]} columns, but other {stream} "
                f"feature files have {width}"
            )
        return array

    def video(self, vid: str) -> np.ndarray:
        """float32 ``(T, D_v)``: the streams of ``vid`` joined by :func:`join_streams`."""
        s = self.settings
        arrays = [self._stream(stream, vid) for stream in self.streams]
        return join_streams(arrays, s.max_v_l, s.normalize_v, s.tef, name=f"video {vid!r}")

    def query(self, qid: int) -> np.ndarray:
        """float32 ``(min(L, max_q_l), 512)``: the query's CLIP tokens, cut and normalised."""
        path = query_feature_path(self.text_root, qid)
        tokens = load_feature_file(path, QUERY_KEY, 2)[: self.settings.max_q_l]
        return l2_normalize(tokens) if self.settings.normalize_t else tokens

    def widths(self, record: dict) -> dict[str, int]:
        """``{"d_v", "d_t"}``: the input widths, read from the features of ``record``."""
        return {
            "d_v": int(self.video(record["vid"]).shape[1]),
            "d_t": int(self.query(record["qid"]).shape[1]),
        }

    def __repr__(self) -> str:
        return f"ReleaseFeatures({self.settings.video_features!r}, text={str(self.text_root)!r})"
