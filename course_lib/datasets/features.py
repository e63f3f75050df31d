"""Feature stores in the moment_detr / QVHighlights release layout.

* video clip features: ``{root}/{vid}.npz`` with array ``features`` of shape ``(T, D)``
  (one row per 2-second clip);
* query token features: ``{root}/qid{qid}.npz`` with array ``last_hidden_state`` of shape
  ``(L, D)`` (one row per token) and optionally ``pooler_output`` ``(D,)`` (sentence feature).

Files are saved atomically as float16 by default (half the disk, like the release files) and
loaded with ``allow_pickle=False`` (a feature file can never run code) as float32. Every
problem (missing file, wrong key, wrong shape, NaN/inf, pickled data, an array declaring more
than ``MAX_ARRAY_BYTES``, checked in its header before anything is read) raises
:class:`~course_lib.errors.DataValidationError` naming the file.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from course_lib.datasets.safe_read import load_npz_array, short_repr
from course_lib.errors import DataValidationError
from course_lib.files import atomic_save_npz

VIDEO_KEY = "features"
QUERY_KEY = "last_hidden_state"
POOLED_KEY = "pooler_output"
_LOADABLE = (np.float16, np.float32, np.float64)


def _safe_name(name: str, what: str) -> str:
    """Reject ids that would escape the store directory (``../x``, ``a/b``, empty)."""
    if not isinstance(name, str) or not name or name in {".", ".."}:
        raise DataValidationError(f"{what}: invalid id {short_repr(name)}")
    if any(ch in name for ch in ("/", "\\", "\0")):
        raise DataValidationError(f"{what}: id {short_repr(name)} must not contain path separators")
    return name


def store_path(root: str | os.PathLike, name: str, what: str = "video features") -> Path:
    """``{root}/{name}.npz``, refusing names that would leave ``root``.

    Args:
        root: store directory.
        name: file stem (a video id, a search-index key).
        what: what the store holds, for messages.

    Returns:
        The path.

    Raises:
        DataValidationError: an empty name, ``.``/``..``, or one with path separators.
    """
    return Path(root) / f"{_safe_name(name, what)}.npz"


def video_feature_path(root: str | os.PathLike, vid: str) -> Path:
    """``{root}/{vid}.npz``."""
    return store_path(root, vid, "video features")


def query_feature_path(root: str | os.PathLike, qid: int | str) -> Path:
    """``{root}/qid{qid}.npz`` (moment_detr's layout), for an int qid or a string qid.

    String qids (Charades-STA, TaCoS releases) name files the same way; one that could leave
    ``root`` (a path separator, ``..``, a NUL byte) or is empty is refused.
    """
    if isinstance(qid, str):
        if not qid or qid in (".", "..") or any(ch in qid for ch in ("/", "\\", "\0")):
            raise DataValidationError(
                f"query features: qid {short_repr(qid)} cannot name a file inside {root}"
            )
        return Path(root) / f"qid{qid}.npz"
    if isinstance(qid, bool) or not isinstance(qid, (int, np.integer)):
        raise DataValidationError(
            f"query features: qid must be an int or a string, got {short_repr(qid)}"
        )
    return Path(root) / f"qid{int(qid)}.npz"


def load_feature_file(
    path: str | os.PathLike, key: str, ndim: int, max_bytes: int | None = None
) -> np.ndarray:
    """Load array ``key`` from an npz file, checked and returned as float32.

    The array's ``.npy`` header is checked before its data is read
    (:func:`~course_lib.datasets.safe_read.load_npz_array`): a pickled array, another dtype or
    ndim, or a declared size over ``max_bytes`` is refused without allocating anything.

    Args:
        path: ``.npz`` file.
        key: array name inside it.
        ndim: required number of dimensions (2 for ``(T, D)``, 1 for a pooled vector).
        max_bytes: largest array accepted, in bytes as stored; default
            :data:`course_lib.datasets.safe_read.MAX_ARRAY_BYTES` (128 MiB).

    Returns:
        The array as float32 (float16/32/64 on disk are accepted).

    Raises:
        DataValidationError: missing file or not a regular file, unreadable file, pickled or
            object data, missing key, wrong ndim or dtype, too large, empty, NaN or inf (names
            the file).
    """
    arr = load_npz_array(path, key, "feature file", DataValidationError, _LOADABLE, ndim, max_bytes)
    return _check_array(arr, Path(path), key, ndim)


def _check_array(arr: np.ndarray, p: Path, key: str, ndim: int) -> np.ndarray:
    """dtype, shape and finiteness checks shared by load and save."""
    if arr.dtype.type not in _LOADABLE:
        raise DataValidationError(f"{p}: {key!r} has dtype {arr.dtype}, expected float16/32")
    if arr.ndim != ndim or arr.size == 0:
        want = "(T, D)" if ndim == 2 else "(D,)"
        raise DataValidationError(f"{p}: {key!r} has shape {arr.shape}, expected non-empty {want}")
    out = arr.astype(np.float32)
    if not np.isfinite(out).all():
        raise DataValidationError(f"{p}: {key!r} contains NaN or inf")
    return out


def _to_disk(arr, p: Path, key: str, ndim: int, dtype) -> np.ndarray:
    """Validate an array and cast it to the on-disk dtype (overflow to inf is refused)."""
    arr = _check_array(np.asarray(arr), p, key, ndim)
    with np.errstate(over="ignore"):  # overflow is detected (and reported) just below
        out = arr.astype(dtype)
    if not np.isfinite(out).all():
        raise DataValidationError(
            f"{p}: {key!r} overflows {np.dtype(dtype).name}; save with dtype=np.float32"
        )
    return out


def save_video_features(root: str | os.PathLike, vid: str, feats, dtype=np.float16) -> Path:
    """Save clip features ``(T, D)`` to ``{root}/{vid}.npz`` (key ``features``), atomically.

    Args:
        root: store directory (created if missing).
        vid: video id (no path separators).
        feats: array-like ``(T, D)``, finite.
        dtype: on-disk dtype, float16 (default) or float32.

    Returns:
        The written path.
    """
    p = video_feature_path(root, vid)
    atomic_save_npz(p, **{VIDEO_KEY: _to_disk(feats, p, VIDEO_KEY, 2, dtype)})
    return p


def load_video_features(
    root: str | os.PathLike, vid: str, key: str = VIDEO_KEY, max_bytes: int | None = None
) -> np.ndarray:
    """Load ``{root}/{vid}.npz[key]`` as float32 ``(T, D)`` (see :func:`load_feature_file`).

    Args:
        root: store directory.
        vid: video id.
        key: array name (``features``).
        max_bytes: largest array accepted (default ``safe_read.MAX_ARRAY_BYTES``).

    Returns:
        float32 ``(T, D)``.
    """
    return load_feature_file(video_feature_path(root, vid), key, 2, max_bytes)


def save_query_features(
    root: str | os.PathLike, qid: int, tokens, pooled=None, dtype=np.float16
) -> Path:
    """Save token features ``(L, D)`` to ``{root}/qid{qid}.npz`` (key ``last_hidden_state``).

    Args:
        root: store directory (created if missing).
        qid: query id (int); retrieval pairs use their ``pair_id``.
        tokens: array-like ``(L, D)``.
        pooled: optional sentence feature ``(D,)``, stored as ``pooler_output``.
        dtype: on-disk dtype, float16 (default) or float32.

    Returns:
        The written path.
    """
    p = query_feature_path(root, qid)
    arrays = {QUERY_KEY: _to_disk(tokens, p, QUERY_KEY, 2, dtype)}
    if pooled is not None:
        arrays[POOLED_KEY] = _to_disk(pooled, p, POOLED_KEY, 1, dtype)
    atomic_save_npz(p, **arrays)
    return p


def load_query_features(
    root: str | os.PathLike, qid: int, key: str = QUERY_KEY, max_bytes: int | None = None
) -> np.ndarray:
    """Load ``{root}/qid{qid}.npz[key]`` as float32: ``(L, D)`` tokens, or ``(D,)`` if pooled.

    Args:
        root: store directory.
        qid: query id.
        key: ``last_hidden_state`` (tokens) or ``pooler_output`` (sentence feature).
        max_bytes: largest array accepted (default ``safe_read.MAX_ARRAY_BYTES``).

    Returns:
        float32 ``(L, D)`` or ``(D,)``.
    """
    ndim = 1 if key == POOLED_KEY else 2
    return load_feature_file(query_feature_path(root, qid), key, ndim, max_bytes)


class VideoFeatureStore:
    """Callable ``vid -> float32 (T, D)`` over a moment_detr-layout directory.

    Args:
        root: directory of ``{vid}.npz`` files.
        key: array name (``features`` in the release files).
    """

    def __init__(self, root: str | os.PathLike, key: str = VIDEO_KEY) -> None:
        self.root, self.key = Path(root), key

    def __call__(self, vid: str) -> np.ndarray:
        return load_video_features(self.root, vid, self.key)

    def __contains__(self, vid: str) -> bool:
        return video_feature_path(self.root, vid).is_file()

    def __repr__(self) -> str:
        return f"VideoFeatureStore({str(self.root)!r}, key={self.key!r})"


class QueryFeatureStore:
    """Callable ``qid -> float32 (L, D)`` (or ``(D,)`` with ``key="pooler_output"``).

    Args:
        root: directory of ``qid{qid}.npz`` files.
        key: ``last_hidden_state`` (tokens) or ``pooler_output`` (sentence feature).
    """

    def __init__(self, root: str | os.PathLike, key: str = QUERY_KEY) -> None:
        self.root, self.key = Path(root), key

    def __call__(self, qid: int) -> np.ndarray:
        return load_query_features(self.root, qid, self.key)

    def __contains__(self, qid: int) -> bool:
        return query_feature_path(self.root, qid).is_file()

    def __repr__(self) -> str:
        return f"QueryFeatureStore({str(self.root)!r}, key={self.key!r})"
