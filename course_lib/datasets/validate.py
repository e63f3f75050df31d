"""Validators for the course's record formats (QVHighlights moments, retrieval pairs, corpus).

Each ``*_errors`` function returns a list of plain-English problems (empty = valid); each
``validate_*`` function raises :class:`~course_lib.errors.DataValidationError` listing them.
Every message names the record (qid or pair_id, and its index) and the field.

Moment record rules (QVHighlights, 2-second clips; clip ``i`` covers ``[2i, 2i+2)``):

* ``qid`` is an int (QVHighlights, Charades-STA, ActivityNet Captions) or a non-empty string
  (TaCoS in lighthouse's layout: ``"s30-d52_0"``). The official scripts accept both: moment_detr's
  ``standalone_eval/eval.py`` and lighthouse's evaluation only use the qid as a dict key. One list
  holds one kind (``1`` and ``"1"`` would name different queries, so a mix is refused, as the
  release readers of :mod:`course_lib.datasets.release_readers` refuse it), and no qid twice;
* ``0 <= st < ed <= duration`` for every window ``[st, ed]``;
* ``relevant_clip_ids`` is sorted, unique and equals the union over windows of
  ``floor(st / 2) .. ceil(ed / 2) - 1``;
* ``saliency_scores`` has one list of annotator scores (ints 0-4, three in QVHighlights)
  per relevant clip id, in the same order.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np

from course_lib.datasets.records import is_int, is_number
from course_lib.datasets.safe_read import short_repr
from course_lib.errors import DataValidationError
from course_lib.timeline import CLIP_LEN

MOMENT_FIELDS = (
    "qid",
    "query",
    "vid",
    "duration",
    "relevant_windows",
    "relevant_clip_ids",
    "saliency_scores",
)
LABEL_FIELDS = ("relevant_windows", "relevant_clip_ids", "saliency_scores")
PAIR_FIELDS = ("pair_id", "vid", "caption", "duration")
MAX_SCORE = 4  # saliency scores and corpus relevance are integers 0..4
_EPS = 1e-6  # seconds of slack for float rounding at window edges
_LISTED_IDS = 1000  # expected clip ids are listed in a message up to this many


def _name(record, index: int | None, key: str = "qid") -> str:
    """Human-readable record name: ``record qid=7 (index 3)``."""
    ident = record.get(key, "?") if isinstance(record, dict) else "?"
    where = f" (index {index})" if index is not None else ""
    return f"record {key}={short_repr(ident)}{where}"


def clips_of_window(st: float, ed: float, clip_len: float = CLIP_LEN) -> range:
    """Clip ids a window ``[st, ed]`` covers: ``floor(st/L) .. ceil(ed/L) - 1``.

    Same rule as :func:`course_lib.spans.window_to_clip_ids`, with a little slack for float
    rounding (a window ending at 6.0000000001 still ends in clip 2).
    """
    first = math.floor(st / clip_len + 1e-9)
    last = math.ceil(ed / clip_len - 1e-9) - 1
    return range(first, last + 1)


def _window_errors(windows, duration, field: str = "relevant_windows") -> list[str]:
    """Problems with a list of ``[st, ed]`` windows inside ``[0, duration]``."""
    if not isinstance(windows, list) or not windows:
        return [
            f"field '{field}': expected a non-empty list of [start, end], got {short_repr(windows)}"
        ]
    errors = []
    for j, w in enumerate(windows):
        errors += _one_window_errors(w, duration, f"{field}[{j}]")
    return errors


def _one_window_errors(w, duration, field: str) -> list[str]:
    """Problems with one window ``[st, ed]``."""
    if not isinstance(w, (list, tuple)) or len(w) != 2 or not all(is_number(x) for x in w):
        return [f"field '{field}': expected [start, end] finite numbers, got {short_repr(w)}"]
    st, ed = float(w[0]), float(w[1])
    if st >= ed:
        return [f"field '{field}': start {st} >= end {ed}"]
    if st < -_EPS or (is_number(duration) and ed > float(duration) + _EPS):
        return [
            f"field '{field}': window [{st}, {ed}] outside the video [0, {short_repr(duration)}]"
        ]
    return []


def _header_errors(
    record: dict, required: tuple[str, ...], allowed: tuple[str, ...], allow_extra: bool
) -> list[str]:
    """Missing required fields and (unless ``allow_extra``) unknown ones."""
    errors = [f"field '{f}': missing" for f in required if f not in record]
    if not allow_extra:
        errors += [
            f"field '{f}': unknown field (allowed: {', '.join(allowed)})"
            for f in record
            if f not in allowed
        ]
    return errors


def text_problem(text: object) -> str | None:
    """Why a query text is not usable, without echoing a long text whole.

    Args:
        text: a query (or any value given as one).

    Returns:
        None for a string with a non-space character, else ``"empty"``,
        ``"empty (whitespace only, 3 characters)"`` or ``"not a string (int: 5)"`` (the
        value's repr cut by :func:`~course_lib.datasets.safe_read.short_repr`).
    """
    if not isinstance(text, str):
        return f"not a string ({type(text).__name__}: {short_repr(text)})"
    if not text:
        return "empty"
    if not text.strip():
        return f"empty (whitespace only, {len(text)} characters)"
    return None


def is_string_id(value) -> bool:
    """True for a string id: a string with a non-space character (TaCoS qids ``"s30-d52_0"``)."""
    return isinstance(value, str) and bool(value.strip())


def _id_error(value, key: str, string_ids: bool) -> str | None:
    """Why ``value`` is not a usable id: an int, or (``string_ids``) a non-empty string."""
    if is_int(value) or (string_ids and is_string_id(value)):
        return None
    expected = "an int or a non-empty string" if string_ids else "int"
    return f"field '{key}': expected {expected}, got {value_for_message(value)}"


def _basic_errors(
    record: dict, id_key: str | None, text_key: str | None, string_ids: bool = False
) -> list[str]:
    """Types of the id, text, vid and duration fields (when present).

    ``string_ids``: the id may also be a non-empty string (moment records' qids).
    """
    errors = []
    problem = _id_error(record[id_key], id_key, string_ids) if id_key in record else None
    if problem:
        errors.append(problem)
    if text_key is not None and text_key in record and text_problem(record[text_key]):
        errors.append(
            f"field '{text_key}': expected a non-empty string, got {short_repr(record[text_key])}"
        )
    if "vid" in record and (not isinstance(record["vid"], str) or not record["vid"]):
        errors.append(f"field 'vid': expected a non-empty string, got {short_repr(record['vid'])}")
    dur = record.get("duration", 1.0)
    if not is_number(dur) or float(dur) <= 0:
        errors.append(
            f"field 'duration': expected a positive finite number, got {value_for_message(dur)}"
        )
    return errors


def value_for_message(value) -> str:
    """A bad value for a message: its (capped) repr, with its type where the repr hides it."""
    if isinstance(value, (bool, float)):  # True is not an int here, nor is 3.0
        return f"{value!r} (a {type(value).__name__})"
    return short_repr(value)  # numpy scalars show their type: np.True_, np.float64(3.0)


def _int_sequence(values) -> list | None:
    """``values`` as a list when it is a list, tuple or 1-D numpy array (else None)."""
    if isinstance(values, (list, tuple)):
        return list(values)
    if isinstance(values, np.ndarray) and values.ndim == 1:
        return values.tolist() if values.dtype.kind in "iu" else list(values)
    return None


def _int_list_error(values, field: str) -> str | None:
    """Why ``values`` is not a list of ints (ints and numpy integers; bools and floats are not):
    names the first bad item and its type."""
    items = _int_sequence(values)
    if items is None:
        return f"field '{field}': expected a list of ints, got {short_repr(values)}"
    for j, x in enumerate(items):
        if not is_int(x):
            return f"field '{field}': expected a list of ints, item {j} is {value_for_message(x)}"
    return None


def _covered_ranges(windows, clip_len: float) -> list[range]:
    """Merged, sorted clip-id ranges covered by valid windows (never expanded to ids)."""
    spans = sorted(
        (clips_of_window(float(st), float(ed), clip_len) for st, ed in windows),
        key=lambda r: r.start,
    )
    merged: list[range] = []
    for r in (r for r in spans if r.stop > r.start):
        if merged and r.start <= merged[-1].stop:
            merged[-1] = range(merged[-1].start, max(merged[-1].stop, r.stop))
        else:
            merged.append(r)
    return merged


def _count(ranges: Sequence[range]) -> int:
    """Number of ids in disjoint ranges (``len`` overflows past 2**63 ids; this does not)."""
    return sum(r.stop - r.start for r in ranges)


def _describe_ids(ranges: Sequence[range]) -> str:
    """The clip ids of ``ranges`` for a message: listed when few, else counted."""
    count = _count(ranges)
    if count <= _LISTED_IDS:
        return short_repr([c for r in ranges for c in r])
    first, last = ranges[0].start, ranges[-1].stop - 1
    if count > 10**12:  # windows of an absurd duration: no 300-digit numbers in the message
        return f"about {float(count):.3g} ids from {first} to about {float(last):.3g}"
    return f"{count} ids from {first} to {last}"


def _clip_id_errors(record: dict, clip_len: float) -> list[str]:
    """``relevant_clip_ids``: sorted unique ints equal to the clips the windows cover.

    The expected ids are kept as ranges, so a window of a huge duration costs no memory.
    """
    problem = _int_list_error(record["relevant_clip_ids"], "relevant_clip_ids")
    if problem:
        return [problem]
    ids = [int(i) for i in _int_sequence(record["relevant_clip_ids"])]
    if any(b <= a for a, b in zip(ids, ids[1:])):
        return [f"field 'relevant_clip_ids': not sorted and unique: {short_repr(ids)}"]
    windows = record.get("relevant_windows")
    if not isinstance(windows, list) or _window_errors(windows, record.get("duration")):
        return []  # windows are broken (reported separately): nothing to compare against
    ranges = _covered_ranges(windows, clip_len)
    same = _count(ranges) == len(ids) and all(
        any(i in r for r in ranges) for i in ids
    )  # sorted unique ids, as many as expected, each expected: the same ids
    if not same:
        return [
            f"field 'relevant_clip_ids': {short_repr(ids)} inconsistent with relevant_windows "
            f"{short_repr(windows)} (expected clip ids {_describe_ids(ranges)}; clip i covers "
            f"[{clip_len:g}i, {clip_len:g}i+{clip_len:g}))"
        ]
    return []


def _saliency_errors(record: dict) -> list[str]:
    """``saliency_scores``: one equal-length list of ints 0-4 per relevant clip id."""
    scores, ids = record["saliency_scores"], _int_sequence(record.get("relevant_clip_ids"))
    if isinstance(scores, np.ndarray) and scores.ndim == 2:
        scores = list(scores)  # rows of a 2-D array are checked like lists
    if not isinstance(scores, (list, tuple)):
        return [
            f"field 'saliency_scores': expected a list of score lists, got {short_repr(scores)}"
        ]
    if ids is not None and len(scores) != len(ids):
        return [
            f"field 'saliency_scores': length {len(scores)} != len(relevant_clip_ids) {len(ids)}"
        ]
    for j, row in enumerate(scores):
        problem = _int_list_error(row, f"saliency_scores[{j}]")
        if problem or not len(row):
            return [problem or f"field 'saliency_scores[{j}]': expected a non-empty list of ints"]
        if any(not 0 <= x <= MAX_SCORE for x in row):
            return [f"field 'saliency_scores[{j}]': scores {short_repr(row)} outside 0-{MAX_SCORE}"]
        if len(row) != len(scores[0]):
            return [
                f"field 'saliency_scores[{j}]': {len(row)} annotators, row 0 has {len(scores[0])}"
            ]
    return []


def moment_record_errors(
    record,
    index: int | None = None,
    clip_len: float = CLIP_LEN,
    require_labels: bool = True,
    allow_extra: bool = False,
) -> list[str]:
    """All problems with one QVHighlights moment record (see the module docstring).

    Args:
        record: the record (a dict parsed from one jsonl line).
        index: its position in the file/list, used in messages.
        clip_len: clip length in seconds (2 in QVHighlights).
        require_labels: if False, the label fields (windows, clip ids, saliency) may be
            absent, as in the QVHighlights test split; present ones are still checked.
        allow_extra: accept fields beyond the seven QVHighlights fields.

    Returns:
        Messages of the form ``record qid=7 (index 3): field 'x': problem``.
    """
    name = _name(record, index)
    if not isinstance(record, dict):
        return [f"{name}: expected a dict, got {type(record).__name__}"]
    required = MOMENT_FIELDS if require_labels else MOMENT_FIELDS[:4]
    errors = _header_errors(record, required, MOMENT_FIELDS, allow_extra)
    errors += _basic_errors(record, "qid", "query", string_ids=True)
    if "relevant_windows" in record:
        errors += _window_errors(record["relevant_windows"], record.get("duration"))
    if "relevant_clip_ids" in record:
        errors += _clip_id_errors(record, clip_len)
    if "saliency_scores" in record:
        errors += _saliency_errors(record)
    return [f"{name}: {e}" for e in errors]


def _empty_errors(items: list, what: str) -> list[str]:
    """The problem of an empty dataset (an empty list validates nothing and trains nothing)."""
    return [] if items else [f"no {what}: the dataset is empty"]


def _raise(errors: list[str], limit: int = 5) -> None:
    """Raise DataValidationError listing the first ``limit`` problems."""
    if errors:
        more = f" (and {len(errors) - limit} more)" if len(errors) > limit else ""
        raise DataValidationError("; ".join(errors[:limit]) + more)


def validate_moment_record(
    record,
    index: int | None = None,
    clip_len: float = CLIP_LEN,
    require_labels: bool = True,
    allow_extra: bool = False,
) -> None:
    """Raise DataValidationError if ``record`` is not a valid moment record.

    Args: as :func:`moment_record_errors`.

    Raises:
        DataValidationError: names the record (qid, index) and the field.
    """
    _raise(moment_record_errors(record, index, clip_len, require_labels, allow_extra))


def _duplicate_errors(records: list, key: str, string_ids: bool = False) -> list[str]:
    """Messages for records that repeat an id already used by an earlier record, and (with
    ``string_ids``) for ids of another kind than the first one (int vs string).

    Ids that are not usable (reported by the record checks) are skipped.
    """
    seen, errors = {}, []
    first_kind: tuple[bool, int] | None = None  # (is a string, index of the first usable id)
    for i, rec in enumerate(records):
        ident = rec.get(key) if isinstance(rec, dict) else None
        if ident is None or _id_error(ident, key, string_ids):
            continue
        # 1. one kind per list: 1 and "1" would name different queries
        kind = isinstance(ident, str)
        first_kind = first_kind or (kind, i)
        if kind != first_kind[0]:
            this, other = ("a string", "an int") if kind else ("an int", "a string")
            errors.append(
                f"{_name(rec, i, key)}: field '{key}': {short_repr(ident)} is {this} but index "
                f"{first_kind[1]} has {other}; one list uses one kind of id (1 and '1' would "
                "name different queries)"
            )
            continue
        # 2. each id once
        ident = ident if kind else int(ident)
        if ident in seen:
            errors.append(f"{_name(rec, i, key)}: field '{key}': duplicate of index {seen[ident]}")
        seen.setdefault(ident, i)
    return errors


def validate_moment_records(
    records: Iterable,
    clip_len: float = CLIP_LEN,
    require_labels: bool = True,
    allow_extra: bool = False,
) -> None:
    """Validate every moment record and reject duplicate qids, mixed qid kinds and an empty list.

    qids are ints or non-empty strings (module docstring), all of one kind.

    Raises:
        DataValidationError: listing the first problems (record qid, index and field).
    """
    records = list(records)
    errors = _empty_errors(records, "moment records")
    for i, rec in enumerate(records):
        errors += moment_record_errors(rec, i, clip_len, require_labels, allow_extra)
    _raise(errors + _duplicate_errors(records, "qid", string_ids=True))


def retrieval_pair_errors(pair, index: int | None = None) -> list[str]:
    """Problems with one retrieval pair ``{pair_id, vid, caption, duration}``."""
    name = _name(pair, index, "pair_id")
    if not isinstance(pair, dict):
        return [f"{name}: expected a dict, got {type(pair).__name__}"]
    errors = _header_errors(pair, PAIR_FIELDS, PAIR_FIELDS, allow_extra=True)
    errors += _basic_errors(pair, "pair_id", "caption")
    return [f"{name}: {e}" for e in errors]


def validate_retrieval_pairs(pairs: Iterable) -> None:
    """Validate retrieval pairs and reject duplicate pair_ids and an empty list.

    Raises:
        DataValidationError: names the pair (pair_id, index) and the field.
    """
    pairs = list(pairs)
    errors = _empty_errors(pairs, "retrieval pairs")
    errors += [e for i, p in enumerate(pairs) for e in retrieval_pair_errors(p, i)]
    _raise(errors + _duplicate_errors(pairs, "pair_id"))


def _video_table(videos, errors: list[str]) -> dict[str, float]:
    """``vid -> duration`` from the corpus video list, collecting problems in ``errors``."""
    table: dict[str, float] = {}
    if not isinstance(videos, list):
        errors.append(f"corpus: field 'videos': expected a list, got {type(videos).__name__}")
        return table
    errors += [f"corpus: field 'videos': {e}" for e in _empty_errors(videos, "videos")]
    for i, video in enumerate(videos):
        if not isinstance(video, dict):
            errors.append(f"corpus video (index {i}): expected a dict, got {short_repr(video)}")
            continue
        problems = _header_errors(video, ("vid", "duration"), (), allow_extra=True)
        problems += _basic_errors(video, None, None)
        if not problems and video["vid"] in table:
            problems.append(f"field 'vid': duplicate video {short_repr(video['vid'])}")
        name = f"corpus video vid={short_repr(video.get('vid', '?'))} (index {i})"
        errors += [f"{name}: {e}" for e in problems]
        if not problems:
            table[video["vid"]] = float(video["duration"])
    return table


def _corpus_moment_errors(moment, table: dict[str, float], field: str) -> list[str]:
    """Problems with one ``{vid, duration, window, relevance}`` entry of a corpus query."""
    if not isinstance(moment, dict):
        return [f"field '{field}': expected a dict, got {short_repr(moment)}"]
    fields = ("vid", "duration", "window", "relevance")
    errors = [
        e.replace("field '", f"field '{field}.") for e in _header_errors(moment, fields, (), True)
    ]
    if errors:
        return errors
    vid, rel = moment["vid"], moment["relevance"]
    if not isinstance(vid, str) or vid not in table:
        return [f"field '{field}.vid': unknown video {short_repr(vid)} (not in corpus['videos'])"]
    dur = table[vid]
    if not is_number(moment["duration"]) or abs(float(moment["duration"]) - dur) > 1e-3:
        errors.append(
            f"field '{field}.duration': {short_repr(moment['duration'])} != video duration {dur}"
        )
    errors += _one_window_errors(moment["window"], dur, f"{field}.window")
    if not is_int(rel) or not 0 <= rel <= MAX_SCORE:
        errors.append(
            f"field '{field}.relevance': expected an int 0-{MAX_SCORE}, got {value_for_message(rel)}"
        )
    return errors


def corpus_query_errors(query, table: dict[str, float], index: int | None = None) -> list[str]:
    """Problems with one corpus query ``{qid, query, relevant_moments}`` given ``vid -> duration``."""
    name = _name(query, index)
    if not isinstance(query, dict):
        return [f"{name}: expected a dict, got {type(query).__name__}"]
    errors = _header_errors(query, ("qid", "query", "relevant_moments"), (), allow_extra=True)
    errors += _basic_errors(query, "qid", "query")
    moments = query.get("relevant_moments", [])
    if not isinstance(moments, list):
        errors.append(f"field 'relevant_moments': expected a list, got {short_repr(moments)}")
        moments = []
    for j, moment in enumerate(moments):
        errors += _corpus_moment_errors(moment, table, f"relevant_moments[{j}]")
    return [f"{name}: {e}" for e in errors]


def corpus_errors(corpus) -> list[str]:
    """All problems with a corpus ``{"videos": [...], "queries": [...]}``."""
    if not isinstance(corpus, dict) or "videos" not in corpus or "queries" not in corpus:
        return ["corpus: expected a dict with fields 'videos' and 'queries'"]
    errors: list[str] = []
    table = _video_table(corpus["videos"], errors)
    queries = corpus["queries"]
    if not isinstance(queries, list):
        return errors + ["corpus: field 'queries': expected a list"]
    errors += [f"corpus: field 'queries': {e}" for e in _empty_errors(queries, "queries")]
    for i, query in enumerate(queries):
        errors += corpus_query_errors(query, table, i)
    return errors + _duplicate_errors(queries, "qid")


def validate_corpus(corpus) -> None:
    """Validate a TVR-Ranking-like corpus (videos + queries with graded relevant moments).

    Checks: unique vids with positive durations; each query's moments refer to a known vid,
    repeat that video's duration, have ``0 <= st < ed <= duration`` and relevance 0-4;
    qids are unique ints.

    Raises:
        DataValidationError: names the query (qid, index) or video and the field.
    """
    _raise(corpus_errors(corpus))
