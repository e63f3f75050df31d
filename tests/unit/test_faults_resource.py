"""Fault injection, class "resource" of issue #21: no input makes the library allocate without
a cap, or echo a huge value whole.

Cases: segment-index metadata whose ``.npy`` headers declare a huge shape or whose arrays
decompress far beyond their size on disk (refused before anything is allocated, naming the file
and array; the search engine then rebuilds the index instead of failing), feature files and
metadata whose ``.npy`` header itself declares 20 KB or 64 MB (refused unread, without numpy's
advice to trust the file with ``allow_pickle=True``), and queries of 10 KB or
5 MB echoed in a warning or an error (cut to 200 characters). Each case asserts the course error
type and that the message names the file / array / query.
"""

from __future__ import annotations

import io
import struct
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
from fault_helpers import MiB, peak_allocation

from course_lib.clip import TINY_MODEL_NAME, ClipEncoder
from course_lib.corpus import SegmentIndex
from course_lib.corpus import index as corpus_index
from course_lib.corpus.index import metadata_path
from course_lib.datasets import load_video_features
from course_lib.datasets.safe_read import MAX_ECHO_CHARS
from course_lib.errors import DataValidationError
from course_lib.search.engine import INDEX_FILE, MomentSearch, _read_index

VIDS = ("v0", "v1", "v2")


@pytest.fixture(scope="module")
def encoder() -> ClipEncoder:
    """A random-weight tiny CLIP: its tokenizer is the one queries go through."""
    return ClipEncoder.from_config(TINY_MODEL_NAME, device="cpu", progress=False)


# ----------------------------------------------------------------------------- helpers
def saved_index(folder: Path) -> Path:
    """A 3-video segment index saved as ``folder/segments.faiss`` (+ its ``.meta.npz``)."""
    rng = np.random.default_rng(0)
    feats = {vid: rng.standard_normal((6, 8)).astype(np.float32) for vid in VIDS}
    path = folder / INDEX_FILE
    SegmentIndex.build(feats).save(path)
    return path


def rewrite_member(archive_path: Path, key: str, member: bytes) -> None:
    """Replace array ``key`` of an ``.npz`` by raw ``member`` bytes, keeping the other arrays."""
    with np.load(archive_path, allow_pickle=False) as data:
        arrays = {name: data[name] for name in data.files}
    with zipfile.ZipFile(archive_path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, array in arrays.items():
            if name == key:
                archive.writestr(f"{name}.npy", member)
            else:
                buffer = io.BytesIO()
                np.lib.format.write_array(buffer, array)
                archive.writestr(f"{name}.npy", buffer.getvalue())


def npy_header(shape: tuple[int, ...], descr: str = "<i8") -> bytes:
    """An ``.npy`` header declaring ``shape`` (no data follows)."""
    buffer = io.BytesIO()
    meta = {"descr": descr, "fortran_order": False, "shape": shape}
    np.lib.format.write_array_header_1_0(buffer, meta)
    return buffer.getvalue()


def bomb_member(n_bytes: int) -> bytes:
    """A complete ``.npy`` of int64 zeros, ``n_bytes`` long (deflates to a few KB)."""
    return npy_header((n_bytes // 8,)) + bytes(n_bytes)


def npy_with_long_header(n_bytes: int) -> bytes:
    """A complete ``.npy`` (format 2.0) of a (2, 2) float32 array whose header is padded to
    ``n_bytes`` (spaces: it deflates to a few KB)."""
    text = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2), }"
    header = (text + " " * (n_bytes - len(text) - 1) + "\n").encode("latin1")
    return b"\x93NUMPY\x02\x00" + struct.pack("<I", len(header)) + header + bytes(16)


def refusal_and_peak(read) -> tuple[str, int]:
    """The message of the DataValidationError ``read()`` raises, and its peak allocation."""
    messages: list[str] = []

    def attempt() -> None:
        with pytest.raises(DataValidationError) as info:
            read()
        messages.append(str(info.value))

    peak = peak_allocation(attempt)
    return messages[0], peak


# ----------------------------------------------------------------------------- index metadata
def test_metadata_header_declaring_a_huge_shape_is_refused_before_loading(tmp_path):
    path = saved_index(tmp_path)
    meta_file = metadata_path(path)
    rewrite_member(meta_file, "ids", npy_header((10**12, 512)))
    refused: list[DataValidationError] = []

    def load() -> None:
        with pytest.raises(DataValidationError) as info:
            SegmentIndex.load(path)
        refused.append(info.value)

    assert peak_allocation(load) < 4 * MiB  # never a MemoryError, nothing allocated
    message = str(refused[0])
    assert f"{meta_file}: array 'ids' declares shape (1000000000000, 512)" in message
    assert "MAX_METADATA_BYTES" in message and "nothing was loaded" in message


def test_metadata_that_decompresses_far_beyond_the_cap_is_refused(tmp_path, monkeypatch):
    path = saved_index(tmp_path)
    meta_file = metadata_path(path)
    rewrite_member(meta_file, "ids", bomb_member(64 * MiB))
    assert meta_file.stat().st_size < MiB
    monkeypatch.setattr(corpus_index, "MAX_METADATA_BYTES", 16 * MiB)  # configurable
    refuse = lambda: pytest.raises(DataValidationError, SegmentIndex.load, path)  # noqa: E731
    assert peak_allocation(refuse) < 4 * MiB
    with pytest.raises(DataValidationError, match=rf"{meta_file}: array 'ids' declares shape"):
        SegmentIndex.load(path)


def test_metadata_cap_counts_all_arrays_together(tmp_path, monkeypatch):
    path = saved_index(tmp_path)
    meta_file = metadata_path(path)
    with np.load(meta_file, allow_pickle=False) as data:
        sizes = {key: data[key].nbytes for key in data.files}
    # every array fits on its own, all of them do not
    monkeypatch.setattr(corpus_index, "MAX_METADATA_BYTES", sum(sizes.values()) - 1)
    with pytest.raises(DataValidationError, match="declare .* bytes together") as info:
        SegmentIndex.load(path)
    assert str(meta_file) in str(info.value)
    monkeypatch.setattr(corpus_index, "MAX_METADATA_BYTES", sum(sizes.values()))
    assert sorted(SegmentIndex.load(path).vids) == list(VIDS)


def test_search_engine_rebuilds_an_index_whose_metadata_declares_a_huge_shape(tmp_path):
    path = saved_index(tmp_path)
    rewrite_member(metadata_path(path), "starts", npy_header((10**12,), "<f8"))
    index, reason = _read_index(tmp_path, {"index": {"file": INDEX_FILE, "vids": list(VIDS)}})
    assert index is None  # the caller rebuilds it from the stored features, with a warning
    assert f"{metadata_path(path)}: array 'starts' declares shape" in reason


@pytest.mark.parametrize("n_bytes", [20_000, 64 * MiB], ids=["20 KB header", "64 MB header"])
def test_npy_header_declaring_a_long_header_is_refused_unread(tmp_path, n_bytes):
    member = npy_with_long_header(n_bytes)
    features = tmp_path / "vid.npz"
    with zipfile.ZipFile(features, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("features.npy", member)
    index = saved_index(tmp_path)
    rewrite_member(metadata_path(index), "ids", member)
    del member
    readers = {
        features: lambda: load_video_features(tmp_path, "vid"),
        metadata_path(index): lambda: SegmentIndex.load(index),
    }
    for path, read in readers.items():
        assert path.stat().st_size < MiB
        message, peak = refusal_and_peak(read)
        assert peak < 4 * MiB  # the header is never read, let alone parsed
        assert f"{path}: array " in message, message
        assert f"header declares {n_bytes} bytes, over the limit" in message
        assert "allow_pickle" not in message  # numpy's advice to trust the file


# ----------------------------------------------------------------------------- queries
def test_truncation_warning_quotes_at_most_200_characters_of_a_10_kb_query(encoder):
    query = "a red circle moves left " * 420  # 10,080 characters
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        encoder.tokenize(["a star", query])
    [warning] = [w for w in caught if "truncated" in str(w.message)]
    message = str(warning.message)
    assert message.startswith("query 1 'a red circle moves left") and len(message) < 400
    assert f"... ({len(repr(query))} characters)" in message


@pytest.mark.parametrize(
    "query, problem",
    [
        (" " * 10_000, "empty (whitespace only, 10000 characters)"),
        (["word"] * 1_000_000, "not a string (list: ['word', "),
        (b"x" * 5_000_000, "not a string (bytes: b'xxx"),
    ],
    ids=["10 KB of spaces", "a list of a million words", "5 MB of bytes"],
)
def test_bad_long_queries_are_named_not_echoed_whole(encoder, query, problem):
    with pytest.raises(DataValidationError, match="query 1 is ") as info:
        encoder.tokenize(["a star", query])
    message = str(info.value)
    assert problem in message and len(message) < 2 * MAX_ECHO_CHARS + 100, message[:300]
    engine = MomentSearch.__new__(MomentSearch)  # the check runs before the engine is used
    with pytest.raises(DataValidationError, match="the query is ") as info:
        engine.encode_query(query)
    assert problem in str(info.value) and len(str(info.value)) < 2 * MAX_ECHO_CHARS + 100
