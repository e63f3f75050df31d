"""Fault injection, class "small" of issue #21.

Cases: ``write_submission`` given NaN / inf (names the line, qid and field; the previous file is
kept), ground truth whose clip ids are numpy integers (accepted) or of another type (the type is
named), qids that repeat or cannot be keys, empty and whitespace-only queries, an empty dataset,
and a path swapped for a FIFO or a dangling link between the reader's check and its open (named
as what it is, under its own path, never waited on). The quadratic submission validation is
measured by hand, not here (no timed unit tests; see benchmarks/README.md).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from fault_helpers import good_record, returns_within

from course_lib.clip import TINY_MODEL_NAME, ClipEncoder
from course_lib.clip.features import file_identity
from course_lib.datasets import load_video_features, read_jsonl, safe_read
from course_lib.datasets.__main__ import main as validate_cli
from course_lib.errors import (
    CheckpointError,
    DataValidationError,
    MetricInputError,
    VideoReadError,
)
from course_lib.metrics import eval_qvhighlights, validate_submission, write_submission
from course_lib.training.checkpoint import read_checkpoint_info

NAN, INF = float("nan"), float("inf")


# ----------------------------------------------------------------------------- write_submission
def line(qid: int = 7, **fields) -> dict:
    """A valid submission line of a 20-s video, with ``fields`` replaced."""
    good = {
        "qid": qid,
        "vid": "vidA",
        "pred_relevant_windows": [[2.0, 6.0, 0.9], [10.0, 12.0, 0.4]],
        "pred_saliency_scores": [0.1] * 10,
    }
    return {**good, **fields}


@pytest.mark.parametrize(
    "bad, field, shown",
    [
        (
            line(pred_relevant_windows=[[2, 6, 0.9], [1, 3, NAN]]),
            "pred_relevant_windows[1][2]",
            "nan",
        ),
        (
            line(pred_relevant_windows=np.array([[2, INF, 0.9]])),
            "pred_relevant_windows[0][1]",
            "inf",
        ),
        (
            line(pred_saliency_scores=[0.1] * 4 + [np.float32(-INF)]),
            "pred_saliency_scores[4]",
            "-inf",
        ),
        (line(pred_saliency_scores=torch.tensor([0.1, NAN])), "pred_saliency_scores[1]", "nan"),
    ],
    ids=["NaN score", "inf end (numpy)", "-inf saliency (numpy scalar)", "NaN saliency (torch)"],
)
def test_write_submission_names_qid_and_field_of_a_non_finite_number(tmp_path, bad, field, shown):
    path = tmp_path / "preds.jsonl"
    write_submission(path, [line(1), line(2)])
    before = path.read_bytes()
    with pytest.raises(MetricInputError) as info:
        write_submission(path, [line(1), bad])
    assert f"submission line 1 (qid 7): field {field} is {shown}" in str(info.value)
    assert "nothing was written" in str(info.value)
    assert path.read_bytes() == before  # nothing lost
    assert [json.loads(text)["qid"] for text in before.decode().splitlines()] == [1, 2]


# ----------------------------------------------------------------------------- validation
def gt_record(qid: int = 7, **fields) -> dict:
    """A ground-truth moment record of a 20-s video (clips 1, 2, 5 relevant)."""
    return {**good_record(qid), **fields}


def test_numpy_clip_ids_are_accepted_in_ground_truth():
    ids = np.array([1, 2, 5])
    gt = [gt_record(7, relevant_clip_ids=list(ids)), gt_record(8, relevant_clip_ids=ids)]
    preds = [line(7), line(8)]
    assert isinstance(gt[0]["relevant_clip_ids"][0], np.int64)
    validate_submission(preds, gt)
    expected = eval_qvhighlights(preds, [gt_record(7), gt_record(8)])["brief"]
    assert json.dumps(eval_qvhighlights(preds, gt)["brief"]) == json.dumps(expected)  # NaN-safe


@pytest.mark.parametrize(
    "cid, said",
    [(2.0, "2.0 of type float"), ("2", "'2' of type str"), (np.float32(2), "of type float32")],
)
def test_clip_ids_of_another_type_are_named_with_their_type(cid, said):
    gt = [gt_record(7, relevant_clip_ids=[1, cid, 5])]
    with pytest.raises(MetricInputError, match="qid 7: relevant_clip_ids holds") as info:
        validate_submission([line(7)], gt)
    assert said in str(info.value) and "expected an int" in str(info.value)


def test_repeated_or_unusable_qids_are_named_with_their_lines():
    gt = [gt_record(1), gt_record(2), gt_record(3)]
    with pytest.raises(MetricInputError, match=r"qid 2 more than once \(lines 1 and 3\)"):
        validate_submission([line(1), line(2), line(3), line(2)], gt)
    with pytest.raises(MetricInputError, match=r"submission line 1: field 'qid' is list \[2\]"):
        validate_submission([line(1), line([2])], gt)
    with pytest.raises(MetricInputError, match=r"ground truth record 0: field 'qid' is dict"):
        validate_submission([line(1)], [gt_record({"a": 1})])


@pytest.fixture(scope="module")
def encoder() -> ClipEncoder:
    return ClipEncoder.from_config(TINY_MODEL_NAME, device="cpu", progress=False)


@pytest.mark.parametrize(
    "query, problem",
    [("", "empty"), ("  \t\n", "empty (whitespace only, 4 characters)"), (None, "not a string")],
)
def test_empty_or_whitespace_query_gets_a_clear_error_naming_it(encoder, query, problem):
    with pytest.raises(DataValidationError) as info:
        encoder.tokenize(["a red circle", "a star", query])
    assert str(info.value).startswith(f"query 2 is {problem}")
    assert isinstance(info.value, ValueError)  # callers catching ValueError still do


def test_empty_datasets_name_the_file(tmp_path, capsys):
    with pytest.raises(MetricInputError, match="non-empty"):
        validate_submission([], [gt_record()])
    with pytest.raises(MetricInputError, match="ground truth must be a non-empty"):
        validate_submission([line()], [])
    blank = tmp_path / "blank.jsonl"
    blank.write_text("\n  \n")
    assert validate_cli(["validate", str(blank)]) == 1
    assert f"{blank}: no records: the file is empty" in capsys.readouterr().out


# ----------------------------------------------------------------------- checked, then swapped
def swap_after_check(monkeypatch, swap: Callable[[Path], None]) -> None:
    """Make every safe reader's path check pass, then ``swap`` the path before it is opened."""
    check = safe_read.check_regular_file

    def checked_then_swapped(path, what, error):
        checked = check(path, what, error)
        swap(checked)
        return checked

    monkeypatch.setattr(safe_read, "check_regular_file", checked_then_swapped)


def to_fifo(path: Path) -> None:
    path.unlink()
    os.mkfifo(path)


def to_dangling_link(path: Path) -> None:
    path.unlink()
    path.symlink_to(path.with_name("moved-away"))


READERS = {
    "jsonl": ("r.jsonl", read_jsonl, DataValidationError),
    "json": ("c.json", lambda p: safe_read.read_json_file(p, "corpus", DataValidationError), None),
    "npz": ("vid.npz", lambda p: load_video_features(p.parent, "vid"), DataValidationError),
    "torch": ("s.pt", lambda p: safe_read.load_torch_file(p, "training state"), CheckpointError),
    "sidecar": ("ckpt.json", lambda p: read_checkpoint_info(p.with_suffix("")), CheckpointError),
    "file_identity": ("v.mp4", file_identity, VideoReadError),  # the feature cache's entry name
}


@pytest.mark.parametrize("reader", READERS)
@pytest.mark.parametrize("swap", [to_fifo, to_dangling_link], ids=["fifo", "dangling link"])
def test_path_swapped_after_the_check_is_named_never_waited_on(tmp_path, monkeypatch, reader, swap):
    name, read, error = READERS[reader]
    path = tmp_path / name
    path.write_bytes(b"{}")
    swap_after_check(monkeypatch, swap)
    outcome = returns_within(lambda: read(path), 10)  # a blocking open would hang here
    assert isinstance(outcome.get("error"), error or DataValidationError), outcome
    message = str(outcome["error"])
    if swap is to_fifo:
        assert f"{path} is a FIFO (named pipe), not a regular file" in message
        assert "directory" not in message
    else:
        assert f"{path} is a dangling symbolic link" in message
        assert "moved-away does not exist" in message


@pytest.mark.parametrize("reader", ["probe", "iter_frames"])
def test_video_swapped_for_a_fifo_after_the_check_is_named_never_waited_on(
    tmp_path, monkeypatch, reader
):
    import course_lib.video as video

    path = video.write_video(tmp_path / "v.mp4", np.zeros((4, 16, 16, 3), np.uint8), fps=2)
    # the video module's own check sees the file; the reader's open-time check swaps it
    swap_after_check(monkeypatch, to_fifo)
    read = {
        "probe": lambda: video.probe(path),
        "iter_frames": lambda: list(video.iter_frames(path, 1)),
    }
    outcome = returns_within(read[reader], 10)  # FFmpeg opening the FIFO would hang here
    assert isinstance(outcome.get("error"), VideoReadError), outcome
    assert f"{path} is a FIFO (named pipe), not a regular file" in str(outcome["error"])
