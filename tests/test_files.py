"""Tests for course_lib.files: atomic writes and checksums."""

import hashlib

import numpy as np
import pytest

from course_lib.files import atomic_save_npz, atomic_write, sha256_file


def test_atomic_write_replaces_file(tmp_path):
    target = tmp_path / "sub" / "a.txt"
    with atomic_write(target, "w") as handle:
        handle.write("hello")
    assert target.read_text() == "hello"


def test_failed_write_keeps_old_content_and_leaves_no_temp(tmp_path):
    target = tmp_path / "a.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_write(target, "wb") as handle:
        handle.write(b"half of the new")
        raise RuntimeError("crash mid-write")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.bin"]


def test_atomic_save_npz_keeps_exact_name(tmp_path):
    target = tmp_path / "vid.npz"
    atomic_save_npz(target, features=np.arange(6, dtype=np.float16).reshape(2, 3))
    with np.load(target, allow_pickle=False) as data:
        assert data["features"].dtype == np.float16
        assert data["features"].shape == (2, 3)


def test_sha256_matches_hashlib(tmp_path):
    target = tmp_path / "x"
    payload = bytes(range(256)) * 5000
    target.write_bytes(payload)
    assert sha256_file(target, chunk_bytes=4096) == hashlib.sha256(payload).hexdigest()


def test_bad_mode_rejected(tmp_path):
    with pytest.raises(ValueError, match="mode"), atomic_write(tmp_path / "x", "a"):
        pass


def test_atomic_write_respects_umask(tmp_path):
    import os

    previous = os.umask(0o022)
    try:
        with atomic_write(tmp_path / "m.txt", "w") as handle:
            handle.write("x")
    finally:
        os.umask(previous)
    assert (tmp_path / "m.txt").stat().st_mode & 0o777 == 0o644
