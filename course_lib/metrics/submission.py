"""QVHighlights submissions: validation of predictions and ground truth, and writing jsonl.

Submission line (official QVHighlights format)::

    {"qid": int, "query": str, "vid": str,
     "pred_relevant_windows": [[st, ed, score], ...],          # seconds, best first
     "pred_saliency_scores": [float, ...]}                      # one per 2-s clip of the video

The official evaluation (moment_detr ``standalone_eval/eval.py``) reads the windows in list order:
it keeps the first 10 and takes the first as the top-1, so a file should list them best first
(:func:`write_submission` does). A saliency list should hold ``int(duration / 2)`` scores; the
official script cuts a longer one and zero-pads a shorter one (``compute_ap_from_tuple``), and so
does :func:`~course_lib.metrics.qvhighlights.eval_qvhighlights` by default, with a warning
(``strict_saliency_length=True`` refuses them instead).

Either prediction field may be left out by every line (moment retrieval only / highlight
detection only), but not by some lines only. Ground-truth lines use the moment-record format
of ``course_lib.datasets`` (``qid, query, vid, duration, relevant_windows, relevant_clip_ids,
saliency_scores``).

Every check raises :class:`course_lib.errors.MetricInputError` naming the qid and field.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np

from course_lib.datasets.records import is_int
from course_lib.datasets.safe_read import short_repr
from course_lib.errors import DataValidationError, MetricInputError
from course_lib.files import atomic_write
from course_lib.spans import num_clips

N_ANNOTATORS = 3
"""QVHighlights saliency: three annotators score every relevant clip 0-4."""

WINDOW_KEY = "pred_relevant_windows"
SALIENCY_KEY = "pred_saliency_scores"


_SEQUENCE = (list, tuple, np.ndarray)


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, bool)


def _check_window(w: Any, qid: Any, field: str, index: int, with_score: bool) -> None:
    """One ``[st, ed]`` (or ``[st, ed, score]``) window: finite numbers with st < ed."""
    n = 3 if with_score else 2
    where = f"qid {qid!r}: {field}[{index}]"
    if not isinstance(w, _SEQUENCE) or len(w) != n:
        raise MetricInputError(f"{where} must be a list of {n} numbers, got {w!r}")
    if not all(_is_number(v) for v in w):
        raise MetricInputError(f"{where} must hold numbers only, got {w!r}")
    if with_score and math.isnan(w[2]):
        raise MetricInputError(f"{where} has a NaN score")
    if not (math.isfinite(w[0]) and math.isfinite(w[1])):
        raise MetricInputError(f"{where} has a non-finite time, got {w!r}")
    if not w[0] < w[1]:
        raise MetricInputError(f"{where} must have st < ed, got st={w[0]}, ed={w[1]}")


def validate_ground_truth(ground_truth: Sequence[Mapping], need_saliency: bool = True) -> None:
    """Check ground-truth moment records for the QVHighlights metrics.

    Args:
        ground_truth: moment records (see module docstring).
        need_saliency: also check ``relevant_clip_ids`` / ``saliency_scores``.

    Raises:
        MetricInputError: a malformed record (names qid and field) or a duplicate qid.
    """
    if not isinstance(ground_truth, Sequence) or len(ground_truth) == 0:
        raise MetricInputError("ground truth must be a non-empty list of records")
    seen: set = set()
    for i, rec in enumerate(ground_truth):
        qid = _qid(rec, f"ground truth record {i}")
        if qid in seen:
            raise MetricInputError(f"ground truth has qid {qid!r} twice")
        seen.add(qid)
        duration = rec.get("duration")
        if not _is_number(duration) or not duration > 0:
            raise MetricInputError(
                f"ground truth qid {qid!r}: duration must be > 0, got {duration!r}"
            )
        windows = rec.get("relevant_windows", [])
        if not isinstance(windows, (list, tuple)):
            raise MetricInputError(f"ground truth qid {qid!r}: relevant_windows must be a list")
        for j, w in enumerate(windows):
            _check_window(w, qid, "ground truth relevant_windows", j, with_score=False)
        if need_saliency:
            _check_gt_saliency(rec, qid, num_clips(duration))


def _qid(line: Any, where: str) -> Hashable:
    """The qid of a submission or ground-truth line, refusing a line without a usable one.

    Args:
        line: one prediction or ground-truth record.
        where: the line, for the message (``"submission line 3"``).

    Returns:
        ``line["qid"]``.

    Raises:
        MetricInputError: not a dict, no ``qid``, or a qid that cannot be a key (a list ...).
    """
    if not isinstance(line, Mapping) or "qid" not in line:
        raise MetricInputError(f"{where} has no 'qid'")
    qid = line["qid"]
    if not isinstance(qid, Hashable):
        raise MetricInputError(
            f"{where}: field 'qid' is {type(qid).__name__} {short_repr(qid)}, expected an int"
        )
    return qid


def _check_gt_saliency(rec: Mapping, qid: Any, n_clips: int) -> None:
    """relevant_clip_ids inside the video, one triple of ints 0-4 per clip id."""
    ids, scores = rec.get("relevant_clip_ids"), rec.get("saliency_scores")
    if ids is None or scores is None:
        # records of MR-only releases (Charades-STA, ActivityNet Captions, TaCoS) say what they are
        hint = (
            f"; it is an MR-only record of the {rec.get('dataset', '?')} release: score it with "
            "course_lib.metrics.grounding.eval_grounding (R@K at IoU, mIoU)"
            if rec.get("mr_only")
            else ""
        )
        raise MetricInputError(
            f"ground truth qid {qid!r} lacks relevant_clip_ids/saliency_scores (needed for "
            f"highlights){hint}"
        )
    if len(ids) != len(scores):
        raise MetricInputError(
            f"ground truth qid {qid!r}: {len(ids)} relevant_clip_ids but {len(scores)} saliency_scores"
        )
    for cid, triple in zip(ids, scores):
        if not is_int(cid):  # numpy integers are ints too
            raise MetricInputError(
                f"ground truth qid {qid!r}: relevant_clip_ids holds {short_repr(cid)} of type "
                f"{type(cid).__name__}, expected an int"
            )
        if not 0 <= cid < n_clips:
            raise MetricInputError(
                f"ground truth qid {qid!r}: clip id {cid!r} outside the video's {n_clips} clips"
            )
        if len(triple) != N_ANNOTATORS or not all(_is_number(s) and 0 <= s <= 4 for s in triple):
            raise MetricInputError(
                f"ground truth qid {qid!r}: saliency of clip {cid} must be {N_ANNOTATORS} scores "
                f"in 0..4, got {triple!r}"
            )


def validate_submission(
    predictions: Sequence[Mapping],
    ground_truth: Sequence[Mapping],
    strict_saliency_length: bool = False,
) -> None:
    """Check a submission against its ground truth before any metric runs.

    Checks: the ground truth itself (:func:`validate_ground_truth`), qids unique and equal to the
    ground-truth qids (missing and extra qids are named), ``vid`` agrees with the ground truth
    where given, windows ``[st, ed, score]`` are finite with ``st < ed`` and a non-NaN score,
    saliency lists are non-empty 1-D lists of finite numbers, and the prediction fields are
    present in all lines or in none.

    Saliency lists whose length is not ``int(duration / 2)``: by default one warning names how many
    there are and the first qid, and the metrics cut or zero-pad them as moment_detr's
    ``standalone_eval`` does (``compute_ap_from_tuple``); ``strict_saliency_length=True`` refuses
    them.

    Args:
        predictions: submission lines (see module docstring).
        ground_truth: moment records.
        strict_saliency_length: option: a saliency list of the wrong length is an error.

    Raises:
        MetricInputError: naming the first bad qid / field.
    """
    if not isinstance(predictions, Sequence) or len(predictions) == 0:
        raise MetricInputError("submission must be a non-empty list of prediction dicts")
    first = predictions[0] if isinstance(predictions[0], Mapping) else {}
    validate_ground_truth(ground_truth, need_saliency=SALIENCY_KEY in first)
    gt_by_qid = {rec["qid"]: rec for rec in ground_truth}
    _check_qids(predictions, gt_by_qid)
    for key in (WINDOW_KEY, SALIENCY_KEY):
        present = [key in p for p in predictions]
        if any(present) and not all(present):
            qid = predictions[present.index(False)]["qid"]
            raise MetricInputError(f"qid {qid!r} lacks {key!r} while other lines have it")
    if not any(k in predictions[0] for k in (WINDOW_KEY, SALIENCY_KEY)):
        raise MetricInputError(f"submission has neither {WINDOW_KEY!r} nor {SALIENCY_KEY!r}")
    mismatched = [
        message
        for pred in predictions
        if (message := _check_prediction(pred, gt_by_qid[pred["qid"]])) is not None
    ]
    if mismatched and strict_saliency_length:
        raise MetricInputError(mismatched[0])
    if mismatched:
        warnings.warn(
            f"{len(mismatched)} of {len(predictions)} lines have a saliency list of the wrong "
            f"length (first: {mismatched[0]}); scored as moment_detr's standalone_eval does: "
            "cut or zero-padded at the end for HL-mAP, the list as given for HL-Hit1 "
            "(strict_saliency_length=True refuses them)",
            UserWarning,
            stacklevel=2,
        )


def _check_qids(predictions: Sequence[Mapping], gt_by_qid: Mapping) -> None:
    """Every line has a qid, none twice, and the qids are exactly those of the ground truth.

    Linear in the number of lines (one dict of the qids seen, set lookups).
    """
    line_of: dict = {}
    for i, pred in enumerate(predictions):
        qid = _qid(pred, f"submission line {i}")
        if qid in line_of:
            raise MetricInputError(
                f"submission has qid {qid!r} more than once (lines {line_of[qid]} and {i})"
            )
        line_of[qid] = i
    missing = [q for q in gt_by_qid if q not in line_of]
    extra = [q for q in line_of if q not in gt_by_qid]
    if missing:
        raise MetricInputError(
            f"submission lacks predictions for qids {missing[:5]} ({len(missing)} missing)"
        )
    if extra:
        raise MetricInputError(f"submission has qids not in the ground truth: {extra[:5]}")


def _check_prediction(pred: Mapping, gt: Mapping) -> str | None:
    """One submission line against its ground-truth record.

    Returns:
        None, or a message naming the qid when the saliency list has the wrong length.

    Raises:
        MetricInputError: a malformed field (the saliency length alone is not an error here).
    """
    qid = pred["qid"]
    if "vid" in pred and pred["vid"] != gt.get("vid", pred["vid"]):
        raise MetricInputError(
            f"qid {qid!r}: vid {pred['vid']!r} but ground truth has {gt['vid']!r}"
        )
    if WINDOW_KEY in pred:
        windows = pred[WINDOW_KEY]
        if not isinstance(windows, _SEQUENCE):
            raise MetricInputError(f"qid {qid!r}: {WINDOW_KEY} must be a list")
        for j, w in enumerate(windows):
            _check_window(w, qid, WINDOW_KEY, j, with_score=True)
    if SALIENCY_KEY not in pred:
        return None
    scores = pred[SALIENCY_KEY]
    if not isinstance(scores, _SEQUENCE) or np.ndim(scores) != 1 or len(scores) == 0:
        got = (
            type(scores).__name__
            if not isinstance(scores, _SEQUENCE)
            else f"shape {np.shape(scores)}"
        )
        raise MetricInputError(f"qid {qid!r}: {SALIENCY_KEY} must be a non-empty list, got {got}")
    if not all(_is_number(s) and math.isfinite(s) for s in scores):
        raise MetricInputError(f"qid {qid!r}: {SALIENCY_KEY} must hold finite numbers")
    expected = num_clips(gt["duration"])
    if len(scores) == expected:
        return None
    return (
        f"qid {qid!r}: {SALIENCY_KEY} needs {expected} scores (one per 2-s clip of a "
        f"{gt['duration']} s video), got {len(scores)}"
    )


def _to_builtin(x: Any) -> Any:
    """numpy / torch scalars and arrays -> plain python for json."""
    if hasattr(x, "tolist"):
        return x.tolist()
    if isinstance(x, Mapping):
        return {k: _to_builtin(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_to_builtin(v) for v in x]
    return x


def _sorted_windows(prediction: dict) -> dict:
    """The prediction with its windows in score order (stable), the order the official script trusts."""
    windows = prediction.get(WINDOW_KEY)
    if isinstance(windows, list) and all(
        isinstance(w, list) and len(w) == 3 and _is_number(w[2]) for w in windows
    ):
        prediction[WINDOW_KEY] = sorted(windows, key=lambda w: -w[2])
    return prediction


def write_submission(path: str | os.PathLike, predictions: Sequence[Mapping]) -> None:
    """Write predictions as official-format jsonl (one json object per line), atomically.

    ``pred_relevant_windows`` are written sorted by score, highest first (ties keep their order):
    moment_detr's ``standalone_eval`` (and :func:`eval_qvhighlights` by default) reads windows in
    list order (top-10 cut, first window for R1), so the file's order must be the ranking.
    numpy / torch numbers are converted to plain python. Nothing is written if a line cannot be
    serialised (the previous file, if any, stays intact).

    Args:
        path: the ``.jsonl`` file to write.
        predictions: one dict per query (see the module docstring).

    Raises:
        MetricInputError: a line that is not a dict, or holds NaN / inf or a value JSON cannot
            hold; the message names the line, its qid and the field (``pred_saliency_scores[4]``).
    """
    lines = [_submission_line(p, i) for i, p in enumerate(predictions)]
    with atomic_write(path, "w") as handle:
        for line in lines:
            handle.write(line + "\n")


def _submission_line(prediction: Any, index: int) -> str:
    """One prediction as a JSON line, or an error naming the line, qid and field JSON refuses.

    Args:
        prediction: one submission line.
        index: its position in the submission (0-based), for the message.

    Returns:
        The JSON text, windows sorted by score.

    Raises:
        MetricInputError: not a dict, a NaN / inf number, or a value of a type JSON cannot hold.
    """
    if not isinstance(prediction, Mapping):
        raise MetricInputError(
            f"submission line {index}: expected a dict, got {type(prediction).__name__}; "
            "nothing was written"
        )
    plain = _to_builtin(dict(prediction))
    where = f"submission line {index} (qid {short_repr(prediction.get('qid'))})"
    bad = _first_non_finite(plain)
    if bad is not None:
        field, value = bad
        raise MetricInputError(
            f"{where}: field {field} is {value}, which JSON cannot hold; nothing was written"
        )
    try:
        return json.dumps(_sorted_windows(plain), allow_nan=False)
    except (TypeError, ValueError) as exc:  # e.g. a set, an object, a key that is a tuple
        raise MetricInputError(f"{where}: {exc}; nothing was written") from None


def _first_non_finite(value: Any, field: str = "") -> tuple[str, float] | None:
    """Where plain-Python ``value`` first holds NaN or inf: ``("pred_saliency_scores[4]", nan)``.

    Args:
        value: a prediction after :func:`_to_builtin` (dicts, lists, numbers, strings).
        field: the path of ``value`` in the prediction ("" for the prediction itself).

    Returns:
        ``(field path, the number)``, or None when every number is finite.
    """
    if isinstance(value, float):
        return None if math.isfinite(value) else (field, value)
    if isinstance(value, Mapping):
        items = ((f"{field}[{k!r}]" if field else str(k), v) for k, v in value.items())
    elif isinstance(value, (list, tuple)):
        items = ((f"{field}[{i}]", v) for i, v in enumerate(value))
    else:
        return None
    return next(
        (found for path, v in items if (found := _first_non_finite(v, path)) is not None), None
    )


def read_submission(path: str | os.PathLike) -> list[dict]:
    """Read a jsonl submission (or ground-truth) file, one JSON object per non-blank line.

    The file is read as :func:`course_lib.datasets.records.iter_jsonl` reads records: a path that
    is not a regular file (missing, a dangling link, a FIFO ...) is never opened, and bad UTF-8,
    invalid or too deeply nested JSON and lines that are not objects are named by file and line.

    Raises:
        MetricInputError: any of the above (the message names the file and line).
    """
    from course_lib.datasets.records import iter_jsonl

    try:
        return [record for _, record in iter_jsonl(path)]
    except DataValidationError as err:
        raise MetricInputError(str(err)) from None
