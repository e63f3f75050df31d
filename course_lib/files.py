"""Safe file writing and checksums, shared by every cache, index and checkpoint writer.

Nothing written is lost: :func:`atomic_write` writes to a temporary file in the target's
directory and renames it over the target only after a successful flush+fsync, so a crash
mid-way leaves either the old file or the new one, never half of one.

Checksum manifests (the one convention for every weights file, tiny CLIP and COREBA alike):
a file ``X.safetensors`` has a manifest ``X.sha256`` next to it in ``sha256sum`` format, one
line ``<64 hex digits>  X.safetensors``, so ``cd data && sha256sum -c *.sha256`` checks every
committed file from a shell. :func:`write_manifest` writes it atomically, :func:`read_manifest`
parses it and :func:`verify_manifest` refuses a file whose hash differs, raising
:class:`~course_lib.errors.CheckpointError` with a message naming the file.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from course_lib.errors import CheckpointError

#: Suffix of a checksum manifest: ``X.safetensors`` -> ``X.sha256``.
MANIFEST_SUFFIX = ".sha256"


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


def manifest_path(path: str | os.PathLike) -> Path:
    """The checksum manifest of a file: same stem, suffix ``.sha256``.

    Args:
        path: the checked file, e.g. ``data/coreba_toy.safetensors``.

    Returns:
        ``data/coreba_toy.sha256`` for that example.
    """
    return Path(path).with_suffix(MANIFEST_SUFFIX)


def write_manifest(path: str | os.PathLike) -> str:
    """Hash ``path`` and write its ``sha256sum``-format manifest atomically.

    Args:
        path: the file to describe; the manifest names it by its base name, so the pair can
            be moved together and still pass ``sha256sum -c``.

    Returns:
        The hex SHA256 of the file.
    """
    path = Path(path)
    digest = sha256_file(path)
    # two spaces = text mode in sha256sum's format; the manifest holds exactly one line
    with atomic_write(manifest_path(path), "w") as handle:
        handle.write(f"{digest}  {path.name}\n")
    return digest


def read_manifest(path: str | os.PathLike) -> str:
    """The expected SHA256 of ``path`` from its manifest.

    Args:
        path: the checked file (the manifest is :func:`manifest_path` of it).

    Returns:
        The lower-case hex digest the manifest records.

    Raises:
        CheckpointError: the manifest is missing, is not one ``<hex>  <name>`` line, or names
            another file.
    """
    path = Path(path)
    manifest = manifest_path(path)
    if not manifest.is_file():
        raise CheckpointError(
            f"checksum manifest {manifest} for {path} is missing; write it with "
            f"`sha256sum {path.name} > {manifest.name}` once you trust the file"
        )
    lines = [line for line in manifest.read_text(encoding="utf-8").splitlines() if line.strip()]
    # sha256sum's line: digest, a space, then a space (text mode) or '*' (binary mode), name
    parts = lines[0].split(maxsplit=1) if len(lines) == 1 else []
    digest = parts[0].lower() if parts else ""
    if len(parts) != 2 or len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise CheckpointError(
            f"checksum manifest {manifest} is malformed: expected one line "
            f"'<64 hex digits>  {path.name}', got {lines[:2]}"
        )
    named = parts[1].lstrip("*")
    if named != path.name:
        raise CheckpointError(f"checksum manifest {manifest} names {named!r}, not {path.name!r}")
    return digest


def verify_sha256(path: str | os.PathLike, expected: str) -> str:
    """Check a file's SHA256 against ``expected``.

    Args:
        path: the file to hash.
        expected: hex digest it must have (case-insensitive).

    Returns:
        The actual hex digest (equal to ``expected``).

    Raises:
        CheckpointError: the file is missing or its hash differs (message names file and both
            hashes).
    """
    if not Path(path).is_file():
        raise CheckpointError(f"checkpoint {path} not found")
    actual = sha256_file(path)
    if actual != expected.lower():
        raise CheckpointError(
            f"checkpoint {path} is corrupted or was modified: SHA256 is {actual}, "
            f"expected {expected.lower()}"
        )
    return actual


def verify_manifest(path: str | os.PathLike) -> str:
    """Check a file against its manifest (what ``sha256sum -c X.sha256`` does).

    Args:
        path: the checked file, e.g. ``data/tiny_clip.safetensors``.

    Returns:
        The verified hex digest.

    Raises:
        CheckpointError: missing file or manifest, malformed manifest, or a hash mismatch.
    """
    if not Path(path).is_file():
        raise CheckpointError(f"checkpoint {path} not found")
    return verify_sha256(path, read_manifest(path))
