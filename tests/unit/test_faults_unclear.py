"""Fault injection, class "unclear / crash" of issue #21: every failure is a course error that
names the file (and line, array or field), and printing it never raises.

Cases: data files whose names are not valid UTF-8 (the error and the ``validate`` command's
output show them with ``\\xNN`` escapes instead of raising ``UnicodeEncodeError``), segment-index
metadata that lacks arrays or is not a regular file, a ``segments.faiss`` that faiss cannot read
or that is a FIFO (the search engine rebuilds it from the stored features, naming the file, never
waiting), and submission lines ``write_submission`` cannot serialise (a previous file is kept
whole).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from fault_helpers import (
    TOY,
    assert_every_video_indexed_with_its_features,
    encoder_fixture,  # noqa: F401 (the encoder fixture)
    returns_within,
)

from course_lib.corpus import SegmentIndex
from course_lib.corpus.index import metadata_path
from course_lib.datasets import load_video_features, read_jsonl
from course_lib.datasets.__main__ import main as validate_cli
from course_lib.datasets.safe_read import path_text
from course_lib.errors import DataValidationError, MetricInputError, printable
from course_lib.metrics import write_submission
from course_lib.search import MomentSearch
from course_lib.search.build import update_manifest
from course_lib.search.engine import INDEX_FILE


def undecodable(folder: Path, name: bytes) -> Path:
    """``folder/name`` for a name that is not valid UTF-8 (skips where the file system refuses)."""
    path = folder / os.fsdecode(name)
    try:
        path.touch()
    except OSError as exc:  # e.g. a file system that only takes UTF-8 names
        pytest.skip(f"the file system refuses names that are not UTF-8: {exc}")
    return path


def shown(path: Path) -> str:
    """How a message shows a path whose name is not valid UTF-8: ``bad\\xff.jsonl``."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


# ----------------------------------------------------------------------------- file names
def test_records_file_with_an_undecodable_name_is_named_printably(tmp_path):
    path = undecodable(tmp_path, b"train\xff.jsonl")
    path.write_text('{"qid": 1}\n{oops\n', encoding="utf-8")
    with pytest.raises(DataValidationError) as info:
        read_jsonl(path)
    message = str(info.value)
    message.encode("utf-8")  # never UnicodeEncodeError
    assert message.startswith(f"{shown(path)}: line 2: invalid JSON"), message


def test_missing_or_special_file_with_an_undecodable_name_is_named_printably(tmp_path):
    missing = tmp_path / os.fsdecode(b"gone\xfe.jsonl")
    with pytest.raises(DataValidationError, match="not found") as info:
        read_jsonl(missing)
    assert shown(missing) in str(info.value) and str(info.value).encode("utf-8")
    folder = tmp_path / os.fsdecode(b"feat\xfe")
    fifo = folder / os.fsdecode(b"clip\xff.npz")
    folder.mkdir()
    try:
        os.mkfifo(fifo)
    except OSError as exc:
        pytest.skip(f"the file system refuses names that are not UTF-8: {exc}")
    outcome = returns_within(lambda: load_video_features(folder, os.fsdecode(b"clip\xff")), 10)
    assert isinstance(outcome.get("error"), DataValidationError), outcome
    assert f"{shown(fifo)} is a FIFO (named pipe)" in str(outcome["error"])


def test_validate_command_prints_undecodable_names(tmp_path, capsys):
    """capsys's stdout is strict UTF-8, as a UTF-8 terminal is: printing a surrogate raises."""
    empty = undecodable(tmp_path, b"empty\xff.jsonl")
    assert validate_cli(["validate", str(empty)]) == 1
    assert f"{shown(empty)}: no records" in capsys.readouterr().out
    bad = undecodable(tmp_path, b"bad\xfe.jsonl")
    bad.write_bytes(b'{"qid": "\xff"}\n')
    assert validate_cli(["validate", str(bad)]) == 1
    assert f"{shown(bad)}: line 1: not valid UTF-8" in capsys.readouterr().out
    corpus = undecodable(tmp_path, b"corpus\xfd.json")
    corpus.write_text(json.dumps({"videos": [], "queries": []}), encoding="utf-8")
    assert validate_cli(["validate", str(corpus)]) == 1
    assert f"{shown(corpus)}: corpus: field 'queries': no queries" in capsys.readouterr().out


def test_printable_keeps_good_text_and_escapes_every_surrogate():
    assert printable("café ✓") == "café ✓"
    assert printable(os.fsdecode(b"a\xffb")) == "a\\xffb"
    assert printable("lone \ud800") == "lone \\ud800"  # not a file name's escape: still printable
    assert path_text(Path(os.fsdecode(b"x\x80.mp4"))) == "x\\x80.mp4"
    assert path_text(b"x\x80.mp4") == "x\\x80.mp4"


# ----------------------------------------------------------------------------- index metadata
def saved_index(folder: Path) -> Path:
    """A 2-video segment index ``folder/segments.faiss`` (+ its ``.meta.npz``)."""
    rng = np.random.default_rng(0)
    feats = {vid: rng.standard_normal((6, 8)).astype(np.float32) for vid in ("v0", "v1")}
    path = folder / "segments.faiss"
    SegmentIndex.build(feats).save(path)
    return path


def test_metadata_lacking_arrays_names_the_file_and_every_missing_array(tmp_path):
    path = saved_index(tmp_path)
    meta_file = metadata_path(path)
    with np.load(meta_file, allow_pickle=False) as data:
        kept = {key: data[key] for key in data.files if key not in ("vids", "starts")}
    np.savez(meta_file, **kept)
    with pytest.raises(DataValidationError, match=r"no arrays \['starts', 'vids'\]") as info:
        SegmentIndex.load(path)
    assert str(info.value).startswith(f"{meta_file}: ")


@pytest.mark.parametrize("kind", ["fifo", "folder", "not a zip"])
def test_metadata_that_is_not_an_npz_file_is_named_never_waited_on(tmp_path, kind):
    path = saved_index(tmp_path)
    meta_file = metadata_path(path)
    meta_file.unlink()
    if kind == "fifo":
        os.mkfifo(meta_file)
    elif kind == "folder":
        meta_file.mkdir()
    else:
        meta_file.write_bytes(b"PK\x03\x04 not really a zip")
    outcome = returns_within(lambda: SegmentIndex.load(path), 10)
    assert isinstance(outcome.get("error"), DataValidationError), outcome
    assert str(meta_file) in str(outcome["error"])


@pytest.mark.parametrize("kind", ["random bytes", "fifo"])
def test_search_engine_rebuilds_an_index_file_faiss_cannot_read(tmp_path, encoder, kind):
    out = tmp_path / "index"
    MomentSearch.build(TOY, out, encoder=encoder, progress=False)
    # an index recorded before checksums were: nothing tells it is damaged before faiss reads it
    update_manifest(out, lambda m: m["index"].pop("sha256"))
    index_file = out / INDEX_FILE
    index_file.unlink()
    if kind == "fifo":
        os.mkfifo(index_file)  # faiss opening it would wait for a writer forever
    else:
        index_file.write_bytes(np.random.default_rng(0).bytes(300))

    def load() -> MomentSearch:
        with pytest.warns(UserWarning, match=f"rebuilding .*: segment index file .*{INDEX_FILE}"):
            return MomentSearch.load(out, encoder=encoder)

    outcome = returns_within(load, 60)
    assert "value" in outcome, outcome
    assert sorted(outcome["value"].vids) == sorted(TOY) and index_file.is_file()  # saved again
    assert_every_video_indexed_with_its_features(out, encoder, [])  # toy videos: no files


# ----------------------------------------------------------------------------- submissions
@pytest.mark.parametrize(
    "line, problem",
    [
        ([("qid", 3)], "submission line 1: expected a dict, got list"),
        ({"qid": 3, "pred_saliency_scores": {0.5, 0.7}}, "submission line 1 (qid 3): Object of"),
    ],
    ids=["a list for a line", "a set for a field"],
)
def test_unserialisable_submission_lines_are_named_and_nothing_is_lost(tmp_path, line, problem):
    path = tmp_path / "preds.jsonl"
    write_submission(path, [{"qid": 1, "pred_saliency_scores": [0.1]}])
    before = path.read_bytes()
    with pytest.raises(MetricInputError, match="nothing was written") as info:
        write_submission(path, [{"qid": 2, "pred_saliency_scores": [0.2]}, line])
    assert problem in str(info.value)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["preds.jsonl"]  # no temporary left behind
