"""Safe file writing and checksums, shared by every cache, index and checkpoint writer.

Nothing written is lost: :func:`atomic_write` writes to a temporary file in the target's
directory and renames it over the target only after a successful flush+fsync, so a crash
mid-way leaves either the old file or the new one, never half of one.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[str]:
    """A temporary file name next to ``path``; on success the file is fsynced and renamed to it.

    For writers that need a file name rather than a handle (e.g. a video encoder that re-reads
    what it wrote). The temporary file gets the permissions a plain ``open()`` would give.

    Args:
        path: final destination; its parent directory is created if missing.

    Yields:
        The temporary file's path (the file exists, empty). If the ``with`` body raises, it is
        deleted and ``path`` is untouched.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    # the temporary file lives in the same directory so the final rename is atomic
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        # mkstemp creates 0600 files; give the result the permissions a plain open() would
        os.chmod(tmp_name, _default_file_mode())
        yield tmp_name
        with open(tmp_name, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp_name, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO]:
    """Open a temporary file next to ``path``; on success rename it to ``path``.

    Args:
        path: final destination; its parent directory is created if missing.
        mode: ``"wb"`` (bytes) or ``"w"`` (text, UTF-8).

    Yields:
        The open temporary file. If the ``with`` body raises, the temporary file is deleted
        and ``path`` is untouched.
    """
    if mode not in {"w", "wb"}:
        raise ValueError(f"atomic_write mode must be 'w' or 'wb', got {mode!r}")
    with atomic_path(path) as tmp_name:
        encoding = {"encoding": "utf-8"} if mode == "w" else {}
        with open(tmp_name, mode, **encoding) as handle:
            yield handle
            handle.flush()


def _default_file_mode() -> int:
    """Permissions of a new file under the current umask (0o644 under the usual 022)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def atomic_save_npz(path: str | os.PathLike, **arrays) -> None:
    """Write ``numpy.savez`` output atomically (``np.savez`` would append ``.npz`` to a name)."""
    import numpy as np

    with atomic_write(path, "wb") as handle:
        np.savez(handle, **arrays)


def sha256_file(path: str | os.PathLike, chunk_bytes: int = 1 << 20) -> str:
    """Hex SHA256 of a file, read in chunks so large files do not fill memory."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(chunk_bytes), b""):
            digest.update(chunk)
    return digest.hexdigest()
