"""Tests for course_lib.files: atomic writes and checksums."""

import hashlib
from pathlib import Path

import numpy as np
import pytest

from course_lib.errors import CheckpointError
from course_lib.files import (
    atomic_path,
    atomic_save_npz,
    atomic_write,
    manifest_path,
    read_manifest,
    sha256_file,
    verify_manifest,
    write_manifest,
)


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


def test_manifest_is_sha256sum_format_and_verifies(tmp_path):
    weights = tmp_path / "m.safetensors"
    weights.write_bytes(b"weights")
    digest = write_manifest(weights)
    assert manifest_path(weights) == tmp_path / "m.sha256"
    # exactly what `sha256sum m.safetensors` prints, so `sha256sum -c m.sha256` checks it
    expected = f"{hashlib.sha256(b'weights').hexdigest()}  m.safetensors\n"
    assert (tmp_path / "m.sha256").read_text() == expected
    assert read_manifest(weights) == verify_manifest(weights) == digest
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp left


def test_manifest_problems_name_the_file(tmp_path):
    weights = tmp_path / "m.safetensors"
    weights.write_bytes(b"weights")
    with pytest.raises(CheckpointError, match="m.sha256.*is missing"):
        verify_manifest(weights)
    write_manifest(weights)
    weights.write_bytes(b"tampered")
    with pytest.raises(CheckpointError, match="corrupted or was modified") as refused:
        verify_manifest(weights)
    assert str(weights) in str(refused.value)
    (tmp_path / "m.sha256").write_text(f"{'0' * 64}  other.safetensors\n")
    with pytest.raises(CheckpointError, match="names 'other.safetensors'"):
        read_manifest(weights)
    (tmp_path / "m.sha256").write_text("not a hash\n")
    with pytest.raises(CheckpointError, match="malformed"):
        read_manifest(weights)
    with pytest.raises(CheckpointError, match="not found"):
        verify_manifest(tmp_path / "absent.safetensors")


def test_bad_mode_rejected(tmp_path):
    with pytest.raises(ValueError, match="mode"), atomic_write(tmp_path / "x", "a"):
        pass


def _write_text(path):
    with atomic_write(path, "w") as handle:
        handle.write("x")


def _write_video(path):
    from course_lib.video import write_video

    write_video(path, np.zeros((4, 16, 16, 3), np.uint8), fps=2)


@pytest.mark.parametrize("writer", [_write_text, _write_video])
def test_atomic_writers_respect_umask(tmp_path, writer):
    import os

    previous = os.umask(0o022)
    try:
        writer(tmp_path / "m.mp4")
    finally:
        os.umask(previous)
    assert (tmp_path / "m.mp4").stat().st_mode & 0o777 == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["m.mp4"]  # no temporary file left


def test_atomic_path_failure_keeps_old_file(tmp_path):
    target = tmp_path / "old.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        Path(tmp).write_bytes(b"half")
        raise RuntimeError("crash mid-write")
    assert target.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["old.bin"]
