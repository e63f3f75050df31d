"""Every reader fails clearly (#21): bad input gets a course error naming the file and the line,
record or field, never a hang, a crash, a huge allocation or the parser's own exception.

One test per case found by fault injection; each writes the bad file in ``tmp_path``. The
"unsafe hint" cases (torch's advice to load with ``weights_only=False``) are in
``test_faults_unsafe_hint.py``.
"""

from __future__ import annotations

import io
import json
import os
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from fault_helpers import MiB, good_record, peak_allocation, returns_within, saved_run
from torch import nn

from course_lib.clip.features import file_identity
from course_lib.datasets import (
    load_query_features,
    load_video_features,
    read_jsonl,
    safe_read,
    validate_corpus,
    validate_moment_record,
    validate_moment_records,
    validate_retrieval_pairs,
)
from course_lib.datasets.__main__ import main as validate_cli
from course_lib.errors import CheckpointError, CourseError, DataValidationError, VideoReadError
from course_lib.training.checkpoint import (
    STATE_FILE,
    load_checkpoint,
    load_training_state,
    read_checkpoint_info,
    read_history,
    save_checkpoint,
)
from course_lib.training.config import MomentTrainingConfig
from course_lib.video import probe, read_frames


def npz_with_header(path: Path, key: str, shape: tuple, data: bytes = b"", descr="<f4") -> Path:
    """An .npz whose member ``key`` has an .npy header declaring ``shape``, then ``data`` only."""
    header = io.BytesIO()
    meta = {"descr": descr, "fortran_order": False, "shape": shape}
    np.lib.format.write_array_header_1_0(header, meta)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(f"{key}.npy", header.getvalue() + data)
    return path


def zip_bomb(path: Path, key: str, n_bytes: int) -> Path:
    """An .npz of float32 zeros that decompresses to ``n_bytes`` (a few KB on disk)."""
    header = io.BytesIO()
    meta = {"descr": "<f4", "fortran_order": False, "shape": (n_bytes // 2048, 512)}
    np.lib.format.write_array_header_1_0(header, meta)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        with archive.open(f"{key}.npy", "w", force_zip64=True) as member:
            member.write(header.getvalue())
            for _ in range(n_bytes // MiB):
                member.write(bytes(MiB))
    return path


# ----------------------------------------------------------------------------- jsonl records
@pytest.mark.parametrize(
    "line, problem",
    [
        ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
        ('{"qid": ' + "9" * 5000 + "}", "JSON value refused"),
    ],
    ids=["deeply nested", "5000-digit integer"],
)
def test_deeply_nested_or_huge_json_line_names_file_and_line(tmp_path, line, problem):
    path = tmp_path / "records.jsonl"
    path.write_text(json.dumps(good_record(1)) + "\n" + line + "\n")
    with pytest.raises(DataValidationError, match=problem) as refused:
        read_jsonl(path)
    assert f"{path}: line 2:" in str(refused.value)
    assert len(str(refused.value)) < 500  # the bad line is not echoed


def test_bad_utf8_is_reported_on_its_own_line(tmp_path):
    path = tmp_path / "records.jsonl"
    lines = [json.dumps(good_record(i)).encode() for i in range(3)]
    lines[1] = lines[1][:-1] + b', "pad": "' + b"x" * 9000 + b'"}'  # longer than a read chunk
    path.write_bytes(b"\n".join(lines) + b'\n{"query": "caf\xe9"}\n')
    with pytest.raises(DataValidationError, match="not valid UTF-8") as refused:
        read_jsonl(path)
    assert f"{path}: line 4:" in str(refused.value) and "0xe9" in str(refused.value)


# ----------------------------------------------------------------------------- search index
MANIFEST_BASE = {  # a valid manifest of an empty index, for the cases below to break
    "format": 1,
    "encoder": {"identity": "x", "spec": None},
    "settings": {"clip_len": 2, "fps": 0.5, "thumb_side": 48, "max_side": 256},
    "videos": {},
    "skipped": {},
}
BAD_MANIFESTS = [
    ("a list", [1, 2], "expected a JSON object, got an array"),
    ("no encoder", {"format": 1, "settings": {}, "videos": {}, "skipped": {}}, "'encoder'"),
    (
        "video without key",
        {**MANIFEST_BASE, "videos": {"a.mp4": {"path": "/v/a.mp4"}}},
        "videos['a.mp4'].key",
    ),
    (
        "video without duration",
        {**MANIFEST_BASE, "videos": {"a.mp4": {"key": "a-1", "path": "/v/a.mp4"}}},
        "videos['a.mp4'].duration' is missing",
    ),
    (
        "checksum that is a number",
        {**MANIFEST_BASE, "index": {"vids": [], "sha256": {"segments.faiss": 5}}},
        "index.sha256['segments.faiss']' is a number",
    ),
    *(
        (
            f"index file {name}",
            {**MANIFEST_BASE, "index": {"file": name, "vids": []}},
            f"field 'index.file' is {name!r}, not a plain file name inside the index folder",
        )
        for name in ("../elsewhere/segments.faiss", "/tmp/segments.faiss", "sub/x.faiss", "..")
    ),
]


@pytest.mark.parametrize("label, manifest, field", BAD_MANIFESTS, ids=[m[0] for m in BAD_MANIFESTS])
def test_bad_search_manifest_names_file_and_field(tmp_path, label, manifest, field):
    from course_lib.search import MomentSearch
    from course_lib.search.build import MANIFEST_NAME

    path = tmp_path / MANIFEST_NAME
    path.write_text(json.dumps(manifest))
    with pytest.raises(DataValidationError) as refused:
        MomentSearch.load(tmp_path)
    assert str(path) in str(refused.value) and field in str(refused.value), refused.value


def test_thumbnails_that_are_not_a_zip_name_the_file(tmp_path):
    from course_lib import toyworld
    from course_lib.clip import TINY_MODEL_NAME, ClipEncoder
    from course_lib.search import MomentSearch
    from course_lib.search.build import THUMBS_DIR

    encoder = ClipEncoder.from_config(TINY_MODEL_NAME, device="cpu", progress=False)
    vid = toyworld.make_vid("val", "c", 0, 0)
    engine = MomentSearch.build([vid], tmp_path / "index", encoder=encoder, progress=False)
    thumbs = tmp_path / "index" / THUMBS_DIR / f"{engine.video_info(vid)['key']}.npz"
    assert engine.thumbnails(vid).dtype == np.uint8
    thumbs.write_bytes(b"not a zip archive at all")
    engine._cache.clear()
    with pytest.raises(DataValidationError, match="not a readable .npz") as refused:
        engine.thumbnails(vid)
    assert str(thumbs) in str(refused.value)


# ----------------------------------------------------------------------------- checkpoints
@pytest.mark.parametrize(
    "content, problem",
    [
        (b"\x80\x04\x95binary\xff\xfe", "not valid UTF-8"),
        (b"[1, 2, 3]", "expected a JSON object, got an array"),
    ],
    ids=["binary", "list"],
)
def test_bad_checkpoint_sidecar_names_the_file(tmp_path, content, problem):
    (tmp_path / "ckpt.json").write_bytes(content)
    with pytest.raises(CheckpointError, match=problem) as refused:
        read_checkpoint_info(tmp_path / "ckpt")
    assert str(tmp_path / "ckpt.json") in str(refused.value)


@pytest.mark.parametrize(
    "content, problem",
    [(b"", "is empty"), (None, "holds list")],
    ids=["empty file", "a list"],
)
def test_bad_training_state_names_the_file(tmp_path, content, problem):
    model, optimizer, scheduler = saved_run(tmp_path)
    state = tmp_path / STATE_FILE
    if content is None:
        torch.save([1, 2], state)
    else:
        state.write_bytes(content)
    with pytest.raises(CheckpointError, match=problem) as refused:
        load_training_state(tmp_path, model, optimizer, scheduler)
    assert str(state) in str(refused.value)


def test_unknown_config_fields_are_named(tmp_path):
    save_checkpoint(tmp_path / "ckpt", nn.Linear(3, 2), None, {"epoch": 0})
    sidecar = tmp_path / "ckpt.json"
    info = json.loads(sidecar.read_text())
    sidecar.write_text(json.dumps({**info, "model_config": {"d": 8, "warp_drive": 9}}))
    with pytest.raises(CheckpointError, match="unknown CorebaConfig field") as refused:
        load_checkpoint(tmp_path / "ckpt")
    assert "warp_drive" in str(refused.value) and str(sidecar) in str(refused.value)
    with pytest.raises(DataValidationError, match="unknown MomentTrainingConfig field.*warp"):
        MomentTrainingConfig.from_dict({"epochs": 3, "warp_drive": 9}, "train_config")
    assert MomentTrainingConfig.from_dict(MomentTrainingConfig(epochs=3).to_dict()).epochs == 3


def test_history_that_is_not_a_list_of_rows_names_the_file(tmp_path):
    (tmp_path / "history.json").write_text('{"epoch": 1}')
    with pytest.raises(CheckpointError, match="expected a JSON array") as refused:
        read_history(tmp_path)
    assert "history.json" in str(refused.value)


# ----------------------------------------------------------------------------- array size caps
def test_npy_header_declaring_a_huge_shape_is_refused_before_loading(tmp_path):
    huge = (10**12, 512)
    npz_with_header(tmp_path / "huge.npz", "features", huge)
    with open(tmp_path / "bare.npz", "wb") as bare:  # an .npy file under an .npz name
        np.lib.format.write_array(bare, np.zeros(1, np.float32))

    def load_huge() -> None:
        with pytest.raises(DataValidationError, match=r"declares shape \(1000000000000, 512\)"):
            load_video_features(tmp_path, "huge")

    assert peak_allocation(load_huge) < 8 * MiB  # nothing of the 2 PB was allocated
    with pytest.raises(DataValidationError, match="bare .npy"):
        load_video_features(tmp_path, "bare")


def test_zip_bomb_is_refused_by_default_without_decompressing(tmp_path):
    # 256 MiB declared (what a 255 KB bomb expands to), above the default cap of 128 MiB
    npz_with_header(tmp_path / "qid3.npz", "last_hidden_state", (131_072, 512), bytes(4096))
    assert safe_read.MAX_ARRAY_BYTES < 256 * MiB

    def load_bomb() -> None:
        with pytest.raises(DataValidationError, match="over the limit") as refused:
            load_query_features(tmp_path, 3)
        assert "qid3.npz" in str(refused.value) and "last_hidden_state" in str(refused.value)

    assert peak_allocation(load_bomb) < 8 * MiB


def test_array_caps_are_configurable(tmp_path, monkeypatch):
    zip_bomb(tmp_path / "bomb.npz", "features", 24 * MiB)
    assert (tmp_path / "bomb.npz").stat().st_size < 256 * 1024
    with pytest.raises(DataValidationError, match=f"limit of {8 * MiB} bytes"):
        load_video_features(tmp_path, "bomb", max_bytes=8 * MiB)
    monkeypatch.setattr(safe_read, "MAX_ARRAY_BYTES", 16 * MiB)
    refuse = lambda: pytest.raises(DataValidationError, load_video_features, tmp_path, "bomb")  # noqa: E731
    assert peak_allocation(refuse) < 4 * MiB
    assert load_video_features(tmp_path, "bomb", max_bytes=32 * MiB).shape == (12_288, 512)


# ----------------------------------------------------------------------------- echoed values
def test_huge_bad_values_are_not_echoed_whole():
    record = dict(good_record(), vid=["x" * 5_000_000])
    with pytest.raises(DataValidationError, match="field 'vid'") as refused:
        validate_moment_record(record)
    message = str(refused.value)
    assert len(message) < 1000 and "characters)" in message, message[:300]


def test_truncation_warning_does_not_repeat_a_long_query():
    from course_lib.clip import TINY_MODEL_NAME, ClipEncoder

    encoder = ClipEncoder.from_config(TINY_MODEL_NAME, device="cpu", progress=False)
    query = "red circle " * 1000  # 11,000 characters
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        encoder.tokenize(["a star", query])
    [warning] = [w for w in caught if "truncated" in str(w.message)]
    assert "query 1" in str(warning.message) and len(str(warning.message)) < 400


# ----------------------------------------------------------------------------- validators
def test_empty_datasets_are_refused(tmp_path, capsys):
    for validate, what in (
        (validate_moment_records, "no moment records"),
        (validate_retrieval_pairs, "no retrieval pairs"),
    ):
        with pytest.raises(DataValidationError, match=f"{what}: the dataset is empty"):
            validate([])
    with pytest.raises(DataValidationError, match="'videos': no videos.*'queries': no queries"):
        validate_corpus({"videos": [], "queries": []})
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n")
    assert validate_cli(["validate", str(empty)]) == 1
    assert f"{empty}: no records" in capsys.readouterr().out


def test_numpy_clip_ids_are_accepted_bools_and_floats_named():
    record = good_record()
    record["relevant_clip_ids"] = np.array([1, 2, 5])
    record["saliency_scores"] = [np.array(row) for row in record["saliency_scores"]]
    validate_moment_record(record)
    validate_moment_record(dict(good_record(), relevant_clip_ids=list(np.array([1, 2, 5]))))
    for bad, shown in ((True, "item 1 is True (a bool)"), (2.0, "item 1 is 2.0 (a float)")):
        with pytest.raises(DataValidationError, match="'relevant_clip_ids'") as refused:
            validate_moment_record(dict(good_record(), relevant_clip_ids=[1, bad, 5]))
        assert shown in str(refused.value)


# ----------------------------------------------------------------------------- paths
def test_dangling_link_is_named_by_its_own_path(tmp_path):
    link = tmp_path / "clip.mp4"
    link.symlink_to(tmp_path / "moved-away.mp4")
    with pytest.raises(VideoReadError, match="dangling symbolic link") as refused:
        probe(link)
    assert f"video file {link} is" in str(refused.value)
    assert "moved-away.mp4 does not exist" in str(refused.value)
    records = tmp_path / "train.jsonl"
    records.symlink_to(tmp_path / "gone.jsonl")
    with pytest.raises(DataValidationError, match=f"{records} is a dangling symbolic link"):
        read_jsonl(records)


@pytest.mark.parametrize(
    "name, read, error",
    [
        ("video.mp4", lambda p: read_frames(p, fps=1), VideoReadError),
        ("video.mp4", probe, VideoReadError),
        ("records.jsonl", read_jsonl, DataValidationError),
        ("vid.npz", lambda p: load_video_features(p.parent, "vid"), DataValidationError),
        ("ckpt.json", lambda p: read_checkpoint_info(p.with_suffix("")), CheckpointError),
        ("video.mp4", file_identity, VideoReadError),
    ],
    ids=["read_frames", "probe", "read_jsonl", "features", "sidecar", "file_identity"],
)
def test_fifo_is_named_and_never_opened(tmp_path, name, read, error):
    fifo = tmp_path / name
    os.mkfifo(fifo)
    outcome = returns_within(lambda: read(fifo))  # opening a FIFO would block forever
    assert isinstance(outcome.get("error"), error), outcome
    assert f"{fifo} is a FIFO (named pipe), not a regular file" in str(outcome["error"])
    assert isinstance(outcome["error"], CourseError)


def test_submission_reader_names_file_and_line_and_never_opens_a_fifo(tmp_path):
    import os

    from course_lib.errors import MetricInputError
    from course_lib.metrics import read_submission

    good = tmp_path / "sub.jsonl"
    good.write_text('{"qid": 1}\n\n{"qid": 2}\n', encoding="utf-8")
    assert read_submission(good) == [{"qid": 1}, {"qid": 2}]
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(b'{"qid": 1}\n{"qid": "\xff"}\n')
    with pytest.raises(MetricInputError, match=r"bad.jsonl: line 2: not valid UTF-8"):
        read_submission(bad)
    deep = tmp_path / "deep.jsonl"
    deep.write_text("[" * 100_000 + "]" * 100_000 + "\n", encoding="utf-8")
    with pytest.raises(MetricInputError, match="deep.jsonl: line 1"):
        read_submission(deep)
    fifo = tmp_path / "pipe.jsonl"
    os.mkfifo(fifo)
    with pytest.raises(MetricInputError, match="FIFO"):
        read_submission(fifo)  # would block forever if it were opened


def test_binary_or_huge_checksum_manifest_is_named_not_decoded(tmp_path):
    from course_lib.errors import CheckpointError
    from course_lib.files import read_manifest

    weights = tmp_path / "w.safetensors"
    weights.write_bytes(b"x")
    (tmp_path / "w.sha256").write_bytes(b"\xff\xfe" + b"\x00" * 10_000_000)
    with pytest.raises(CheckpointError, match=r"w.sha256 is malformed") as info:
        read_manifest(weights)
    assert len(str(info.value)) < 1000  # the 10 MB content is cut to 100 characters


@pytest.mark.parametrize("config", ['{"kind": "flat", "colour": 1}', "[1, 2]", "{not json"])
def test_segment_index_metadata_with_a_bad_config_is_named(tmp_path, config):
    from course_lib.corpus import SegmentIndex
    from course_lib.corpus.index import metadata_path

    rng = np.random.default_rng(0)
    feats = {f"v{i}": rng.standard_normal((6, 8)).astype(np.float32) for i in range(3)}
    path = tmp_path / "segments.faiss"
    SegmentIndex.build(feats).save(path)
    meta_file = metadata_path(path)
    with np.load(meta_file, allow_pickle=False) as data:
        meta = {key: data[key] for key in data.files}
    meta["config"] = np.array(config)
    np.savez(meta_file, **meta)
    with pytest.raises(DataValidationError, match=r"segments.faiss.meta.npz.*field 'config'"):
        SegmentIndex.load(path)


@pytest.mark.parametrize(
    "train_config", ["[1]", '{"patch_size": "x"}', '{"patch_size": 7}', "{oops"]
)
def test_tiny_checkpoint_metadata_that_names_no_architecture_is_refused(train_config):
    from course_lib.clip.encoder import tiny_architecture

    with pytest.raises(CheckpointError, match=r"ckpt.safetensors: metadata 'train_config'"):
        tiny_architecture({"train_config": train_config}, "ckpt.safetensors")
