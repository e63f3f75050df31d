"""Tests for course_lib.files: atomic writes and checksums."""

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from course_lib import files
from course_lib.errors import CheckpointError, LockTimeoutError
from course_lib.files import (
    LOCK_NAME,
    atomic_path,
    atomic_save_npz,
    atomic_write,
    folder_lock,
    host_tag,
    lock_holder,
    manifest_path,
    owner_tag,
    read_manifest,
    remove_stale_temporaries,
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


# ----------------------------------------------------------------------------- temporaries, locks
def _dead_pid() -> int:
    """The pid of a process that has exited and been reaped."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_temporaries_carry_their_owner_and_only_stale_ones_are_removed(tmp_path):
    with atomic_write(tmp_path / "a.txt", "w") as handle:
        handle.write("x")
        (tmp,) = [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
        assert tmp.name.startswith(f".a.txt.{owner_tag()}.")
        assert remove_stale_temporaries(tmp_path) == []  # ours: its writer is alive
    dead = tmp_path / f".b.npz.{_dead_pid()}-{host_tag()}.x1y2.tmp"
    elsewhere = tmp_path / f".c.npz.{_dead_pid()}-someotherhost.x1y2.tmp"
    young, old = tmp_path / ".d.npz.x1y2.tmp", tmp_path / ".e.npz.x1y2.tmp"
    for path in (dead, elsewhere, young, old):
        path.write_bytes(b"half")
    os.utime(old, (1e9, 1e9))  # no owner recorded and written long ago
    assert sorted(remove_stale_temporaries(tmp_path)) == sorted([dead, old])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["a.txt", elsewhere.name, young.name]
    )


def test_folder_lock_is_reentrant_and_records_its_holder(tmp_path):
    with folder_lock(tmp_path) as outer, folder_lock(tmp_path) as inner:
        assert outer and inner
        assert lock_holder(tmp_path / LOCK_NAME).startswith(f"process {os.getpid()} on ")
    assert (tmp_path / LOCK_NAME).read_text() == ""  # released: no holder recorded


def test_folder_lock_times_out_naming_folder_and_pid(tmp_path):
    code = (
        "import sys, time\nfrom course_lib.files import folder_lock\n"
        "with folder_lock(sys.argv[1]):\n    print('locked', flush=True)\n    time.sleep(60)\n"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(LockTimeoutError) as refused, folder_lock(tmp_path, timeout_s=0.2):
            pass
        message = str(refused.value)
        assert str(tmp_path) in message and f"process {holder.pid}" in message
    finally:
        holder.kill()
        holder.wait()
    with folder_lock(tmp_path, timeout_s=5) as locked:  # a killed holder leaves no stale lock
        assert locked


def test_folder_lock_optional_on_a_read_only_folder(tmp_path, monkeypatch):
    def read_only(lock_file):
        raise PermissionError(13, "Permission denied", str(lock_file))

    monkeypatch.setattr(files, "_open_lock_file", read_only)
    with folder_lock(tmp_path, required=False) as locked:  # a reader: goes on unlocked
        assert locked is False
    with pytest.raises(PermissionError), folder_lock(tmp_path):  # a writer: refused
        pass


def test_hashing_a_fifo_is_refused_at_once(tmp_path):
    import os

    import pytest

    from course_lib.errors import CheckpointError
    from course_lib.files import sha256_file

    fifo = tmp_path / "weights.safetensors"
    os.mkfifo(fifo)  # nobody writes to it: a blocking open would wait forever
    with pytest.raises(CheckpointError, match=r"weights\.safetensors: it is a FIFO"):
        sha256_file(fifo)
