"""Releases other than QVHighlights: Charades-STA, ActivityNet Captions, TaCoS, TVR, TVR-Ranking.

Every reader names the file, the line (or array item), the record's id and the field of the first
bad value, as :func:`course_lib.datasets.records.iter_jsonl` does for bad JSON; nothing the files
hold is trusted (special files, bad UTF-8 and huge lines are refused by the shared readers of
:mod:`course_lib.datasets.safe_read`).

**Moment retrieval only (MR-only): Charades-STA, ActivityNet Captions, TaCoS** in lighthouse's
layout (repository ``line/lighthouse``: ``data/charades/charades_{train,test}_release.jsonl``,
``data/activitynet/activitynet_{train,val}_release.jsonl``,
``data/tacos/tacos_{train,val,test}_release.jsonl``, read by ``training/dataset.py``). One JSON
object per line with exactly the fields ``qid, query, duration, vid, relevant_windows``: no
``relevant_clip_ids`` and no ``saliency_scores`` (lighthouse makes pseudo saliency labels from the
first window, ``get_saliency_labels_sub_as_query``). :func:`read_mr_release` maps a line to our
moment record (the QVHighlights record of :mod:`course_lib.datasets.validate`, label fields for
highlights left out) plus two markers::

    {"qid", "query", "vid", "duration", "relevant_windows": [[st, ed], ...],
     "dataset": "charades" | "activitynet" | "tacos", "mr_only": True}

* ``qid`` is kept as given. It is an int in Charades-STA and ActivityNet (lighthouse numbers the
  queries across splits: Charades train 0-12403, test 12404-16123; ActivityNet val starts at
  37421) and a string ``"{vid}_{n}"`` in TaCoS (``"s17-d69_0"``). Lighthouse finds the query
  features of an int qid in ``qid{qid}.npz`` and those of a TaCoS qid in ``{qid}.npz``
  (``_get_query_feat_by_qid``). :func:`~course_lib.datasets.validate.validate_moment_records`
  takes both kinds, as the official scripts do, and :func:`read_mr_release` ends with it: every
  record it returns, TaCoS's included, is a valid moment record without highlight labels
  (``require_labels=False, allow_extra=True``). :func:`course_lib.datasets.features.query_feature_path`
  still takes int qids only (our ``qid{qid}.npz`` files). A file mixing int and string qids, or
  repeating one, is refused (``1`` and ``"1"`` would name different queries).
* ``query`` is kept as given (ActivityNet sentences keep their leading spaces, as lighthouse
  reads them); ``duration`` becomes a float, windows lists of two floats.
* ``mr_only: True``: highlight metrics (HL-mAP, HIT@1) and saliency targets do not apply. The
  metrics of :mod:`course_lib.metrics.qvhighlights` refuse such records when given saliency
  predictions ("lacks relevant_clip_ids/saliency_scores (needed for highlights)");
  :func:`check_highlight_labels` refuses them naming the dataset; evaluate them with
  :func:`course_lib.metrics.grounding.eval_grounding` (R@K at IoU, mIoU) or the MR part of
  :func:`~course_lib.metrics.qvhighlights.eval_qvhighlights` (what lighthouse reports).

**Windows** (all readers). ``[start, end]``, two finite numbers with ``0 <= start < end``. A
window that ends past its video's duration is clipped to it: lighthouse's ActivityNet val file
has five windows ending 0.01 s past the duration (line 3428, qid 40848: ``[29.61, 89.72]`` in
an 89.71-s video), and 2D-TAN (``microsoft/2D-TAN``, ``lib/datasets/activitynet.py`` and
``tacos.py``: ``min(end, duration)``) clips the same way. One :class:`WindowClippedWarning` per
file gives the count, the largest overrun and the first such window (file, line, qid, field). A
window lying entirely past the duration (``start >= duration``: empty once clipped, start >= end)
is refused, naming the record and field, as are ``start >= end`` and ``start < 0``.

**TVR** (``jayleicn/TVRetrieval``: ``data/tvr_{train,val}_release.jsonl``,
``data/tvr_test_public_release.jsonl``, ``data/tvr_video2dur_idx.json``; ground truth as read by
``standalone_eval/eval.py``). One line per query: ``{"desc_id": int, "desc": str, "vid_name":
str, "duration": float, "ts": [st, ed], "type": "v" | "t" | "vt"}``; test_public lines have only
``desc`` and ``desc_id``. :func:`read_tvr_release` gives the corpus of chapter 6 (the structure of
:func:`~course_lib.datasets.validate.validate_corpus`, :mod:`course_lib.metrics.vcmr` and
:mod:`course_lib.metrics.ndcg`)::

    {"videos": [{"vid", "duration"}],
     "queries": [{"qid": desc_id, "query": desc, "type": type,
                  "relevant_moments": [{"vid": vid_name, "duration": duration, "window": ts,
                                        "relevance": 1}]}]}

TVR has one ground-truth moment per query, hence relevance 1 (relevant); a test_public query has
no type and ``relevant_moments: []``. The videos are those of :func:`read_tvr_video_durations`
(``tvr_video2dur_idx.json``: ``{split: {vid_name: [duration, index]}}``, every video of the split,
the corpus the official evaluation searches) when given, else the videos the file names (none for
test_public, whose lines name no video: give the table).

**TVR-Ranking** (``Ranking-VMR/TVR-Ranking``: ``data/TVR_Ranking/readme.md``,
``modules/dataset_tvrr.py``; the files ``val.json``, ``test.json``, ``train_top{01,20,40}.json``
and ``video_corpus.json`` are released on Hugging Face, ``axgroup/TVR-Ranking``). A JSON array of
queries ``{"query_id", "query", "relevant_moment": [{"pair_id", "video_name", "timestamp",
"duration", "caption", "similarity", "relevance"}, ...]}`` (the form ``QueryEvalDataset`` and
``TrainDataset`` load), or of single query-moment pairs with the query fields inline (the example
of the readme); the same objects one per line in a ``.jsonl`` file. ``video_corpus.json`` is
``{video_name: duration}`` (``CorpusEvalDataset``). :func:`read_tvr_ranking` maps ``query_id`` to
``qid`` (kept as given), ``video_name`` to ``vid``, ``timestamp`` to ``window``, keeps
``duration`` and ``relevance``, and keeps ``pair_id``, ``caption`` and ``similarity`` on the moment
(``worker``, of the raw annotations, is dropped).

**Relevance** (0-4, "4 being the most relevant"). The readme says the val/test relevances are
averages over 2 or 4 workers. TVR-Ranking's own code uses the value as loaded, as a number:
``modules/ndcg_iou.py`` sorts a query's moments by it and gains ``2 ** relevance - 1``. So:

* an int, or a float (``2.5``, ``2.0``) in 0-4 is a relevance. A float with an integral value
  becomes that int (``2.0`` -> ``2``: the same gain and the same order in TVR-Ranking's code, and
  :func:`~course_lib.datasets.validate.validate_corpus` accepts it); any other float is kept as
  given, so :mod:`course_lib.metrics.ndcg` and :mod:`course_lib.metrics.vcmr` score it as
  TVR-Ranking does, while :func:`~course_lib.datasets.validate.validate_corpus` and the training
  dataset of integer grades (:class:`course_lib.datasets.torch_data.CorpusQueryDataset`) refuse it;
* anything else is refused, naming the file, the line or item, the query_id and the field: a
  string (``"3"``: ``2 ** "3"`` fails in TVR-Ranking's code, and a number in quotes is not read as
  one here either), a bool, null, NaN or infinity (Python's json reads ``NaN``), or a number
  outside 0-4.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from course_lib.datasets.records import is_int, is_number, iter_jsonl
from course_lib.datasets.safe_read import read_json_file, short_repr
from course_lib.datasets.validate import (
    MAX_SCORE,
    text_problem,
    validate_moment_records,
    value_for_message,
)
from course_lib.errors import DataValidationError, MetricInputError

#: The fields of one line of lighthouse's Charades-STA / ActivityNet / TaCoS files, all required.
LIGHTHOUSE_FIELDS = ("qid", "query", "duration", "vid", "relevant_windows")
#: Marker fields :func:`read_mr_release` adds to every record.
DATASET_KEY, MR_ONLY_KEY = "dataset", "mr_only"
#: TVR: fields of every line, and the label fields of a train / val line (all or none).
TVR_FIELDS = ("desc_id", "desc")
TVR_LABEL_FIELDS = ("vid_name", "duration", "ts", "type")
TVR_TYPES = ("v", "t", "vt")  # video-only, subtitle-only, both (TVRetrieval eval.py)
#: TVR-Ranking: the fields of a query, of a moment (required, then kept, then dropped).
RANKING_QUERY_FIELDS = ("query_id", "query", "relevant_moment")
RANKING_MOMENT_FIELDS = ("video_name", "timestamp", "duration", "relevance")
RANKING_KEPT_FIELDS = ("pair_id", "caption", "similarity")
RANKING_DROPPED_FIELDS = ("worker",)
#: Two durations of one video may differ by this many seconds (as in ``validate_corpus``).
DURATION_TOLERANCE = 1e-3
_SALIENCY_FIELDS = ("relevant_clip_ids", "saliency_scores")


class WindowClippedWarning(UserWarning):
    """Windows of a release file ended past their video's duration and were clipped to it."""


@dataclass(frozen=True)
class MRDataset:
    """One MR-only release in lighthouse's layout.

    Attributes:
        name: lighthouse's ``dset_name`` (``configs/dataset/<name>.yml``), the value of our
            records' ``dataset`` field and the prefix of its file names.
        title: the dataset's usual name, for messages.
        splits: the splits lighthouse ships, ``data/<name>/<name>_<split>_release.jsonl``.
        clip_length: seconds per feature clip in lighthouse's configs (``clip_length``; 1 in
            ``configs/base.yml``, 2 in ``activitynet.yml`` and ``tacos.yml``).
    """

    name: str
    title: str
    splits: tuple[str, ...]
    clip_length: float

    def file_name(self, split: str) -> str:
        """``<name>_<split>_release.jsonl``, lighthouse's file of one split."""
        return f"{self.name}_{split}_release.jsonl"


MR_DATASETS: dict[str, MRDataset] = {
    "charades": MRDataset("charades", "Charades-STA", ("train", "test"), 1.0),
    "activitynet": MRDataset("activitynet", "ActivityNet Captions", ("train", "val"), 2.0),
    "tacos": MRDataset("tacos", "TaCoS", ("train", "val", "test"), 2.0),
}
"""Lighthouse's MR-only releases by ``dset_name``."""
DATASET_ALIASES = {"charades-sta": "charades", "activitynet-captions": "activitynet"}


# ----------------------------------------------------------------------------- field checks
def _error(where: str, name: str, problem: str) -> DataValidationError:
    """The error of one field: ``<file>: line 3 (qid=7): field 'duration': <problem>``."""
    return DataValidationError(f"{where}: field '{name}': {problem}")


def _check_keys(
    obj: Any,
    where: str,
    required: tuple[str, ...],
    optional: tuple[str, ...] = (),
    prefix: str = "",
) -> None:
    """Refuse a value that is not an object, misses a required field or has an unknown one.

    Args:
        obj: the parsed object.
        where: file and line (or item), for the message.
        required: fields that must be there.
        optional: fields that may be there.
        prefix: how the object's fields are named in messages (``"relevant_moment[2]."``).

    Raises:
        DataValidationError: naming the first missing field, or the unknown ones.
    """
    if not isinstance(obj, dict) and prefix:
        raise _error(
            where, prefix.rstrip("."), f"expected a JSON object, got {value_for_message(obj)}"
        )
    if not isinstance(obj, dict):
        raise DataValidationError(f"{where}: expected a JSON object, got {value_for_message(obj)}")
    missing = [k for k in required if k not in obj]
    if missing:
        raise _error(where, f"{prefix}{missing[0]}", "missing")
    unknown = [k for k in obj if k not in required and k not in optional]
    if unknown:
        allowed = ", ".join(required + optional)
        raise _error(
            where,
            f"{prefix}{unknown[0]}",
            f"unknown field {short_repr(unknown)} (allowed: {allowed})",
        )


def _ident(value: Any, where: str, name: str) -> int | str:
    """An id kept as given: an int (bools excluded) or a non-empty string."""
    if is_int(value):
        return int(value)
    if isinstance(value, str) and value.strip():
        return value
    raise _error(
        where, name, f"expected an int or a non-empty string, got {value_for_message(value)}"
    )


def _text(value: Any, where: str, name: str) -> str:
    """A query text: a string with a non-space character, kept as given."""
    problem = text_problem(value)
    if problem:
        raise _error(where, name, f"expected a non-empty string, got {problem}")
    return value


def _video_name(value: Any, where: str, name: str) -> str:
    """A video name: a non-empty string."""
    if not isinstance(value, str) or not value.strip():
        raise _error(where, name, f"expected a non-empty string, got {value_for_message(value)}")
    return value


def _duration(value: Any, where: str, name: str) -> float:
    """A duration in seconds: a positive finite number."""
    if not is_number(value) or float(value) <= 0:
        raise _error(
            where, name, f"expected a positive finite number, got {value_for_message(value)}"
        )
    return float(value)


@dataclass
class _Clipped:
    """The windows of one file clipped to their video's duration, for its one warning."""

    count: int = 0
    first: str = ""
    largest: float = 0.0

    def add(self, where: str, name: str, start: float, end: float, duration: float) -> None:
        """Count one clipped window ``[start, end]`` of a ``duration``-second video."""
        if not self.count:
            self.first = f"{where}: field '{name}' [{start}, {end}] ends past duration {duration}"
        self.count += 1
        self.largest = max(self.largest, end - duration)

    def warn(self, path: Path) -> None:
        """One :class:`WindowClippedWarning` for the file, when a window was clipped."""
        if self.count:
            noun = "window ends" if self.count == 1 else "windows end"
            warnings.warn(
                f"{path}: {self.count} {noun} past the video's duration, clipped to the duration "
                f"(largest overrun {self.largest:.6g} s; first: "
                f"{self.first.removeprefix(f'{path}: ')})",
                WindowClippedWarning,
                stacklevel=3,
            )


def _window(value: Any, duration: float, where: str, name: str, clipped: _Clipped) -> list[float]:
    """One ``[start, end]`` window in seconds, its end clipped to ``duration`` (module docstring).

    Args:
        value: the window as parsed.
        duration: the video's duration.
        where: file, line and record, for messages.
        name: the field (``"relevant_windows[0]"``, ``"ts"``).
        clipped: counts the windows clipped in this file.

    Returns:
        ``[start, min(end, duration)]`` as floats.

    Raises:
        DataValidationError: not two finite numbers, ``start < 0``, ``start >= end``, or a window
            entirely past the duration (``start >= duration``: nothing left once clipped).
    """
    # 1. two finite numbers
    if not isinstance(value, list) or len(value) != 2 or not all(is_number(x) for x in value):
        raise _error(
            where,
            name,
            f"expected [start, end], two finite numbers, got {value_for_message(value)}",
        )
    start, end = float(value[0]), float(value[1])
    # 2. inside the video's start, in order
    if start < 0:
        raise _error(where, name, f"start {start} < 0 in window {short_repr(value)}")
    if start >= end:
        raise _error(where, name, f"start {start} >= end {end}")
    # 3. something left once clipped: the window starts inside the video
    if start >= duration:
        raise _error(
            where,
            name,
            f"window [{start}, {end}] lies entirely past the video's duration {duration} "
            "(start >= duration: start >= end once clipped)",
        )
    # 4. an end past the video is clipped to it, and counted for the file's warning
    if end > duration:
        clipped.add(where, name, start, end, duration)
        end = duration
    return [start, end]


def _other_kind(ident: int | str, first: str) -> str:
    """Why an id of another kind than the file's first one is refused (names where that is)."""
    kind, other = ("an int", "a string") if isinstance(ident, int) else ("a string", "an int")
    return (
        f"{short_repr(ident)} is {kind} but {first} has {other}; a file uses one kind of id "
        "(1 and '1' would name different queries)"
    )


@dataclass
class _Ids:
    """The ids of one file: each once, all of one kind (int or string)."""

    name: str
    first_at: dict[int | str, str] = field(default_factory=dict)
    kind: tuple[type, str] | None = None

    def add(self, ident: int | str, where: str, label: str) -> None:
        """Record ``ident`` found at ``label`` (``"line 3"``); refuse a repeat or another kind."""
        if self.kind is not None and type(ident) is not self.kind[0]:
            raise _error(where, self.name, _other_kind(ident, self.kind[1]))
        if ident in self.first_at:
            raise _error(where, self.name, f"{short_repr(ident)} repeats {self.first_at[ident]}")
        self.kind = self.kind or (type(ident), label)
        self.first_at[ident] = label


def _refuse_empty(path: Path, items: list) -> None:
    """A file without a single record is refused (it evaluates and trains nothing)."""
    if not items:
        raise DataValidationError(f"{path}: no records (the file is empty)")


def _read_checked_lines(
    p: Path, id_field: str, parse: Callable[[object, str, _Clipped], dict]
) -> list[dict]:
    """Every line of a jsonl release parsed and checked, ids unique, clipped windows warned once.

    Args:
        p: the file.
        id_field: the release's name of the id field (for messages).
        parse: ``(line object, "file: line N", clipped-window tally) -> record`` with a ``qid``.

    Returns:
        The records in file order.

    Raises:
        DataValidationError: a bad line (from ``parse``), a repeated or mixed-kind id, or an empty
            file.
    """
    clipped, ids, records = _Clipped(), _Ids(id_field), []
    # 1. one record per line, each checked; ids unique and of one kind
    for lineno, obj in iter_jsonl(p):
        where = f"{p}: line {lineno}"
        record = parse(obj, where, clipped)
        ids.add(
            record["qid"], f"{where} ({id_field}={short_repr(record['qid'])})", f"line {lineno}"
        )
        records.append(record)
    # 2. something read; one warning for all the clipped windows
    _refuse_empty(p, records)
    clipped.warn(p)
    return records


# ----------------------------------------------------------------------------- MR-only releases
def mr_dataset(dataset: str | None, path: str | Path | None = None) -> MRDataset:
    """The MR-only release a name (or alias), else a lighthouse file name, stands for.

    Args:
        dataset: ``"charades"`` (alias ``"charades-sta"``), ``"activitynet"`` (alias
            ``"activitynet-captions"``) or ``"tacos"``; None: taken from the file name's prefix
            (``charades_test_release.jsonl`` is Charades-STA), as lighthouse names its files.
        path: the file, when ``dataset`` is None.

    Returns:
        Its :class:`MRDataset`.

    Raises:
        DataValidationError: an unknown name, or a file name that names no known dataset.
    """
    # 1. an explicit name or alias
    if dataset is not None:
        key = DATASET_ALIASES.get(str(dataset).lower(), str(dataset).lower())
        if key not in MR_DATASETS:
            known = ", ".join([*MR_DATASETS, *DATASET_ALIASES])
            raise DataValidationError(f"unknown MR dataset {dataset!r} (known: {known})")
        return MR_DATASETS[key]
    # 2. the prefix of a lighthouse file name
    prefix = Path(path).name.split("_")[0].lower() if path is not None else ""
    if prefix in MR_DATASETS:
        return MR_DATASETS[prefix]
    raise DataValidationError(
        f"{path}: cannot tell the dataset from the file name (lighthouse names its files "
        f"<dataset>_<split>_release.jsonl); pass dataset= one of {', '.join(MR_DATASETS)}"
    )


def _mr_record(obj: Any, where: str, info: MRDataset, clipped: _Clipped) -> dict:
    """One lighthouse line as our MR-only moment record (module docstring)."""
    # 1. exactly lighthouse's five fields; saliency labels mean another kind of file
    if isinstance(obj, dict) and any(k in obj for k in _SALIENCY_FIELDS):
        raise DataValidationError(
            f"{where}: fields {', '.join(_SALIENCY_FIELDS)} present: a QVHighlights-style record "
            f"with highlight labels, not an MR-only {info.title} line; read it with "
            "course_lib.datasets.read_jsonl and validate_moment_records"
        )
    _check_keys(obj, where, LIGHTHOUSE_FIELDS)
    # 2. the qid, kept as given; from here on messages name it
    qid = _ident(obj["qid"], where, "qid")
    where = f"{where} (qid={short_repr(qid)})"
    # 3. query, video and duration
    query = _text(obj["query"], where, "query")
    vid = _video_name(obj["vid"], where, "vid")
    duration = _duration(obj["duration"], where, "duration")
    # 4. the windows, each clipped to the duration when it ends past it
    windows = obj["relevant_windows"]
    if not isinstance(windows, list) or not windows:
        raise _error(
            where,
            "relevant_windows",
            f"expected a non-empty list of [start, end], got {value_for_message(windows)}",
        )
    kept = [
        _window(w, duration, where, f"relevant_windows[{j}]", clipped)
        for j, w in enumerate(windows)
    ]
    return {
        "qid": qid,
        "query": query,
        "vid": vid,
        "duration": duration,
        "relevant_windows": kept,
        DATASET_KEY: info.name,
        MR_ONLY_KEY: True,
    }


def read_mr_release(path: str | Path, dataset: str | None = None) -> list[dict]:
    """Read a Charades-STA, ActivityNet Captions or TaCoS file in lighthouse's jsonl layout.

    Args:
        path: e.g. ``charades_test_release.jsonl`` (lighthouse ``data/charades/``).
        dataset: ``"charades"``, ``"activitynet"`` or ``"tacos"`` (or an alias, see
            :func:`mr_dataset`); None: told by the file name.

    Returns:
        MR-only moment records in file order (module docstring): qids as given, windows
        clipped to the duration where they end past it (one :class:`WindowClippedWarning` per
        file).

    Raises:
        DataValidationError: an unreadable file, bad JSON, an empty file, or a bad line: a
            missing or unknown field, a bad value, a window ``start >= end`` or entirely past the
            duration, a repeated qid, or int and string qids mixed. The message names the file,
            the line, the qid and the field.
    """
    p = Path(path)
    info = mr_dataset(dataset, p)
    records = _read_checked_lines(
        p, "qid", lambda obj, where, clipped: _mr_record(obj, where, info, clipped)
    )
    # the records are moment records without highlight labels (int or string qids), so the
    # rest of the library takes them; the line checks above already named any bad line
    try:
        validate_moment_records(records, info.clip_length, require_labels=False, allow_extra=True)
    except DataValidationError as exc:
        raise DataValidationError(f"{p}: {exc}") from None
    return records


def is_mr_only(record: Mapping) -> bool:
    """True for a record of an MR-only release (:data:`MR_ONLY_KEY` set by :func:`read_mr_release`)."""
    return bool(record.get(MR_ONLY_KEY, False))


def check_highlight_labels(records: Iterable[Mapping]) -> None:
    """Refuse records without highlight labels before highlight metrics or saliency targets.

    Args:
        records: moment records.

    Raises:
        MetricInputError: the first record that is MR-only (names its qid, index and dataset)
            or lacks ``relevant_clip_ids`` / ``saliency_scores``.
    """
    for index, record in enumerate(records):
        name = f"record qid={short_repr(record.get('qid', '?'))} (index {index})"
        if is_mr_only(record):
            info = MR_DATASETS.get(str(record.get(DATASET_KEY)))
            title = info.title if info else short_repr(record.get(DATASET_KEY, "?"))
            raise MetricInputError(
                f"{name} comes from the {title} release, which is MR-only: it has no "
                "relevant_clip_ids / saliency_scores, so highlight metrics (HL-mAP, HIT@1) and "
                "saliency targets do not apply; evaluate it with "
                "course_lib.metrics.grounding.eval_grounding (R@K at IoU, mIoU)"
            )
        missing = [k for k in _SALIENCY_FIELDS if k not in record]
        if missing:
            raise MetricInputError(f"{name} lacks {', '.join(missing)} (needed for highlights)")


# ----------------------------------------------------------------------------- corpus videos
class _Videos:
    """The corpus's videos: a fixed table (every video of a split), or those the file names.

    Args:
        table: ``{vid: duration}`` fixing the corpus, or None to collect the videos met.
        source: where the table comes from, for messages.
    """

    def __init__(self, table: Mapping[str, float] | None, source: str) -> None:
        self.fixed = table is not None
        self.source = source
        self.durations: dict[str, float] = {}
        self.first_at: dict[str, str] = {}
        for vid, duration in (table or {}).items():
            where = f"{source}: video {short_repr(vid)}"
            self.durations[_video_name(vid, where, "vid")] = _duration(duration, where, "duration")

    def duration(self, vid: str, duration: float, where: str, fields: tuple[str, str]) -> float:
        """The duration of ``vid`` for a moment that gives ``duration``; the first one given wins.

        Args:
            vid: the moment's video.
            duration: the duration the moment gives.
            where: file, line and record, for messages.
            fields: the names of the video and duration fields, for messages.

        Returns:
            The corpus's duration of the video (within :data:`DURATION_TOLERANCE` of ``duration``).

        Raises:
            DataValidationError: a video not in a fixed table, or durations that differ.
        """
        known = self.durations.get(vid)
        if known is None and self.fixed:
            raise _error(where, fields[0], f"video {short_repr(vid)} is not in {self.source}")
        if known is None:
            self.durations[vid], self.first_at[vid] = duration, where
            return duration
        if abs(known - duration) > DURATION_TOLERANCE:
            origin = self.first_at.get(vid, self.source)
            raise _error(
                where,
                fields[1],
                f"{duration} differs from the duration {known} of video {short_repr(vid)} given "
                f"by {origin}",
            )
        return known

    def corpus(self, queries: list[dict]) -> dict:
        """The corpus ``{"videos": [{"vid", "duration"}], "queries": queries}``."""
        videos = [{"vid": vid, "duration": d} for vid, d in self.durations.items()]
        return {"videos": videos, "queries": queries}


def _duration_table(
    path: Path, table: Any, what: str, pick: Callable[[Any], Any]
) -> dict[str, float]:
    """``{vid: duration}`` from a parsed table, each entry checked (``pick`` finds the duration)."""
    if not isinstance(table, dict) or not table:
        raise DataValidationError(
            f"{path}: {what}: expected a non-empty JSON object, got {short_repr(table)}"
        )
    out = {}
    for vid, entry in table.items():
        where = f"{path}: {what}: video {short_repr(vid)}"
        out[_video_name(vid, where, "name")] = _duration(pick(entry), where, "duration")
    return out


def read_tvr_video_durations(path: str | Path, split: str) -> dict[str, float]:
    """Every video of one TVR split and its duration (``tvr_video2dur_idx.json``).

    The file is ``{split: {vid_name: [duration, index]}}`` with splits ``train``, ``val``,
    ``test_public`` and ``test_challenge`` (TVRetrieval ``data/tvr_video2dur_idx.json``).

    Args:
        path: the JSON file.
        split: the split whose videos make the corpus.

    Returns:
        ``{vid_name: duration}``, the corpus the official evaluation searches.

    Raises:
        DataValidationError: an unreadable file, an unknown split, or a bad entry (names it).
    """
    p = Path(path)
    data = read_json_file(p, "TVR video table", DataValidationError, expect=dict)
    if split not in data:
        raise DataValidationError(f"{p}: no split {split!r} (has {short_repr(sorted(data))})")

    def pick(entry: Any) -> Any:
        """The duration of a ``[duration, index]`` entry (the entry itself when malformed)."""
        return entry[0] if isinstance(entry, list) and len(entry) == 2 else entry

    return _duration_table(p, data[split], f"split {split!r}", pick)


def read_tvr_ranking_videos(path: str | Path) -> dict[str, float]:
    """The TVR-Ranking video corpus, ``video_corpus.json`` ``{video_name: duration}``.

    Args:
        path: the JSON file (TVR-Ranking ``CorpusEvalDataset`` reads it).

    Returns:
        ``{video_name: duration}``.

    Raises:
        DataValidationError: an unreadable file or a bad entry (names it).
    """
    p = Path(path)
    data = read_json_file(p, "TVR-Ranking video corpus", DataValidationError, expect=dict)
    return _duration_table(p, data, "video corpus", lambda entry: entry)


# ----------------------------------------------------------------------------- TVR
def _tvr_query(obj: Any, where: str, videos: _Videos, clipped: _Clipped) -> dict:
    """One TVR line as a corpus query (module docstring)."""
    # 1. a train / val line has every label field, a test_public line none
    labelled = isinstance(obj, dict) and any(k in obj for k in TVR_LABEL_FIELDS)
    _check_keys(obj, where, TVR_FIELDS + (TVR_LABEL_FIELDS if labelled else ()))
    # 2. desc_id -> qid (as given), desc -> query; from here on messages name the qid
    qid = _ident(obj["desc_id"], where, "desc_id")
    where = f"{where} (desc_id={short_repr(qid)})"
    query = {"qid": qid, "query": _text(obj["desc"], where, "desc")}
    if not labelled:
        return {**query, "relevant_moments": []}
    # 3. the query type
    if obj["type"] not in TVR_TYPES:
        raise _error(
            where,
            "type",
            f"expected one of {', '.join(TVR_TYPES)}, got {value_for_message(obj['type'])}",
        )
    # 4. the one moment: its video, the corpus's duration of it, the window clipped to it
    vid = _video_name(obj["vid_name"], where, "vid_name")
    given = _duration(obj["duration"], where, "duration")
    duration = videos.duration(vid, given, where, ("vid_name", "duration"))
    ts = obj["ts"]
    if isinstance(ts, list) and ts and all(isinstance(w, list) for w in ts):
        raise _error(
            where,
            "ts",
            "a list of windows (DiDeMo's form in TVRetrieval's eval.py), "
            "TVR gives one [start, end]",
        )
    window = _window(ts, duration, where, "ts", clipped)
    moment = {"vid": vid, "duration": duration, "window": window, "relevance": 1}
    return {**query, "type": obj["type"], "relevant_moments": [moment]}


def read_tvr_release(path: str | Path, videos: Mapping[str, float] | None = None) -> dict:
    """Read a TVR query file (``tvr_{train,val,test_public}_release.jsonl``) as a corpus.

    Args:
        path: the jsonl file (TVRetrieval ``data/``).
        videos: ``{vid: duration}`` of every video of the split
            (:func:`read_tvr_video_durations`), the corpus the official evaluation searches;
            None: the corpus holds the videos the file names.

    Returns:
        ``{"videos": [...], "queries": [...]}`` (module docstring), queries in file order.

    Raises:
        DataValidationError: an unreadable file, bad JSON, an empty file, or a bad line: a
            missing or unknown field, a bad value, a window ``start >= end`` or entirely past the
            duration, a video missing from ``videos`` or with another duration, a repeated
            desc_id. The message names the file, the line, the desc_id and the field.
    """
    p = Path(path)
    table = _Videos(videos, "the video table given")
    queries = _read_checked_lines(
        p, "desc_id", lambda obj, where, clipped: _tvr_query(obj, where, table, clipped)
    )
    return table.corpus(queries)


# ----------------------------------------------------------------------------- TVR-Ranking
@dataclass(frozen=True)
class _RankingRules:
    """How TVR-Ranking moments are read: the corpus, clipping and the default relevance."""

    videos: _Videos
    clipped: _Clipped
    missing_relevance: float | None


def _ranking_items(path: Path, max_bytes: int | None) -> Iterator[tuple[str, Any]]:
    """``(label, object)`` of each query: ``"line N"`` of a ``.jsonl`` file, ``"item I"`` of a
    JSON array (the released ``.json`` files)."""
    if path.suffix.lower() == ".jsonl":
        for lineno, obj in iter_jsonl(path):
            yield f"line {lineno}", obj
        return
    data = read_json_file(path, "TVR-Ranking file", DataValidationError, list, max_bytes)
    for index, obj in enumerate(data):
        yield f"item {index}", obj


def _relevance(moment: dict, where: str, name: str, default: float | None) -> int | float:
    """A moment's relevance, a number in 0-4 (``default`` when absent; module docstring).

    Returns:
        An int for an int or an integral float (``2.0`` -> ``2``), else the float as given.

    Raises:
        DataValidationError: a string, bool, null, NaN or infinity, or a number outside 0-4
            (names the file, line or item, query_id and field).
    """
    if "relevance" not in moment:
        return default
    value = moment["relevance"]
    if not is_number(value) or not 0 <= value <= MAX_SCORE:
        shown = value_for_message(value)
        if isinstance(value, str):
            shown += " (a string: TVR-Ranking's ndcg_iou.py computes 2 ** relevance - 1)"
        raise _error(where, name, f"expected a number in 0-{MAX_SCORE}, got {shown}")
    if is_int(value) or float(value).is_integer():
        return int(value)
    return float(value)


def _ranking_moment(obj: Any, where: str, prefix: str, rules: _RankingRules) -> dict:
    """One TVR-Ranking moment as a corpus moment (module docstring).

    Args:
        obj: the moment (or a pair carrying its query's fields too).
        where: file, item and query, for messages.
        prefix: how its fields are named (``"relevant_moment[2]."``; empty for a pair).
        rules: corpus videos, clipped windows and the relevance of a moment without one.
    """
    # 1. the fields (relevance may be absent when a default is given)
    required = RANKING_MOMENT_FIELDS
    if rules.missing_relevance is not None:
        required = tuple(k for k in required if k != "relevance")
    optional = ("relevance", *RANKING_KEPT_FIELDS, *RANKING_DROPPED_FIELDS)
    if not prefix:  # a pair: its query's fields are there too
        optional += ("query_id", "query")
    _check_keys(obj, where, required, optional, prefix)
    # 2. video, the corpus's duration of it, the window clipped to it
    vid = _video_name(obj["video_name"], where, f"{prefix}video_name")
    given = _duration(obj["duration"], where, f"{prefix}duration")
    names = (f"{prefix}video_name", f"{prefix}duration")
    duration = rules.videos.duration(vid, given, where, names)
    window = _window(obj["timestamp"], duration, where, f"{prefix}timestamp", rules.clipped)
    # 3. relevance, then the fields kept as given
    relevance = _relevance(obj, where, f"{prefix}relevance", rules.missing_relevance)
    moment = {"vid": vid, "duration": duration, "window": window, "relevance": relevance}
    moment.update({k: obj[k] for k in RANKING_KEPT_FIELDS if k in obj})
    return moment


def _ranking_query(obj: Any, where: str, rules: _RankingRules) -> dict:
    """One TVR-Ranking query with its ``relevant_moment`` list, as a corpus query."""
    _check_keys(obj, where, RANKING_QUERY_FIELDS)
    qid = _ident(obj["query_id"], where, "query_id")
    where = f"{where} (query_id={short_repr(qid)})"
    text = _text(obj["query"], where, "query")
    moments = obj["relevant_moment"]
    if not isinstance(moments, list):
        raise _error(where, "relevant_moment", f"expected a list, got {value_for_message(moments)}")
    relevant = [
        _ranking_moment(m, where, f"relevant_moment[{j}].", rules) for j, m in enumerate(moments)
    ]
    return {"qid": qid, "query": text, "relevant_moments": relevant}


@dataclass
class _PairGroups:
    """Queries built from single query-moment pairs (the readme's form), grouped by query_id."""

    queries: dict[int | str, dict] = field(default_factory=dict)
    first_at: dict[int | str, str] = field(default_factory=dict)

    def add(self, obj: Any, where: str, label: str, rules: _RankingRules) -> None:
        """Add one pair to its query (created at its first pair)."""
        # 1. the query's fields (the moment's are checked with the moment)
        for key in ("query_id", "query"):
            if key not in obj:
                raise _error(where, key, "missing")
        qid = _ident(obj["query_id"], where, "query_id")
        where = f"{where} (query_id={short_repr(qid)})"
        # 2. query_ids of one kind, as in every file (1 and "1" would name different queries)
        first = next(iter(self.queries), None)
        if first is not None and type(first) is not type(qid):
            raise _error(where, "query_id", _other_kind(qid, self.first_at[first]))
        # 3. the query, created at its first pair; the same text in every pair
        text = _text(obj["query"], where, "query")
        query = self.queries.setdefault(qid, {"qid": qid, "query": text, "relevant_moments": []})
        self.first_at.setdefault(qid, label)
        if query["query"] != text:
            raise _error(
                where,
                "query",
                f"{short_repr(text)} differs from the query text of "
                f"{self.first_at[qid]} ({short_repr(query['query'])})",
            )
        # 4. the moment
        query["relevant_moments"].append(_ranking_moment(obj, where, "", rules))


def read_tvr_ranking(
    path: str | Path,
    videos: Mapping[str, float] | None = None,
    missing_relevance: float | None = None,
    max_bytes: int | None = None,
) -> dict:
    """Read a TVR-Ranking query file (``val.json``, ``test.json``, ``train_top20.json`` ...).

    Args:
        path: a JSON array (the released ``.json`` files) or JSON lines (``.jsonl``) of queries
            with ``relevant_moment`` lists, or of single query-moment pairs (module docstring).
        videos: ``{video_name: duration}`` of the corpus (:func:`read_tvr_ranking_videos` of
            ``video_corpus.json``); None: the corpus holds the videos the file names.
        missing_relevance: relevance of a moment without one (e.g. 1 if a pseudo training file
            lists relevant moments without relevance); None: a moment must have one.
        max_bytes: largest ``.json`` file read; default
            :data:`course_lib.datasets.safe_read.MAX_JSON_BYTES`.

    Returns:
        ``{"videos": [...], "queries": [...]}`` (module docstring), queries in file order (pairs:
        in the order of each query's first pair), moments in file order.

    Raises:
        DataValidationError: an unreadable file, bad JSON, no queries, or a bad query or moment:
            a missing or unknown field, a bad value, a window ``start >= end`` or entirely past
            the duration, a video missing from ``videos`` or with another duration, a repeated
            query_id (grouped form), queries and pairs mixed. The message names the file, the
            line or item, the query_id and the field (``relevant_moment[2].timestamp``).
    """
    p = Path(path)
    rules = _RankingRules(_Videos(videos, "the video corpus given"), _Clipped(), missing_relevance)
    ids, queries, pairs, form = _Ids("query_id"), [], _PairGroups(), None
    for label, obj in _ranking_items(p, max_bytes):
        where = f"{p}: {label}"
        # 1. the file's form, told by its first object: queries or single pairs
        if not isinstance(obj, dict):
            raise DataValidationError(
                f"{where}: expected a JSON object, got {value_for_message(obj)}"
            )
        kind = "query" if "relevant_moment" in obj else "pair"
        form = form or (kind, label)
        if kind != form[0]:
            raise DataValidationError(
                f"{where}: a {kind} object, but {form[1]} is a {form[0]} object; a file holds "
                "queries with 'relevant_moment' lists or single query-moment pairs, not both"
            )
        # 2. a query (ids unique and of one kind), or a pair added to its query
        if kind == "query":
            query = _ranking_query(obj, where, rules)
            ids.add(query["qid"], f"{where} (query_id={short_repr(query['qid'])})", label)
            queries.append(query)
        else:
            pairs.add(obj, where, label, rules)
    # 3. something read; one warning for all the clipped windows
    queries = queries or list(pairs.queries.values())
    _refuse_empty(p, queries)
    rules.clipped.warn(p)
    return rules.videos.corpus(queries)
