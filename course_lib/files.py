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

Temporary files carry their owner: ``.<name>.<pid>-<host>.<random>.tmp``, so that a clean-up
(:func:`remove_stale_temporaries`) deletes only those whose process is gone and never the
temporary file of a writer that is still running.

Folder locks (:func:`folder_lock`): one exclusive ``fcntl.flock`` on a lock file inside the
folder, re-entrant within a process, released by the kernel when its process dies (so a killed
process never leaves a stale lock). The holder writes its pid into the lock file; a process that
waits past its timeout raises :class:`~course_lib.errors.LockTimeoutError` naming the folder and
that pid. POSIX only (Linux, macOS).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from course_lib.errors import CheckpointError, LockTimeoutError

#: Suffix of a checksum manifest: ``X.safetensors`` -> ``X.sha256``.
MANIFEST_SUFFIX = ".sha256"
#: Suffix of every temporary file written here (hidden name: ``.<name>.<owner>.<random>.tmp``).
TEMP_SUFFIX = ".tmp"
#: A temporary file without an owner tag (written before owners were recorded) counts as stale
#: after this many seconds.
UNOWNED_TEMP_STALE_S = 3600.0
#: Name of the lock file :func:`folder_lock` creates inside a folder.
LOCK_NAME = "index.lock"
_LOCK_POLL_S = 0.05
_OWNER_RE = re.compile(r"\.(?P<pid>\d+)-(?P<host>[A-Za-z0-9]*)\.[^.]+\.tmp$")


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
    # the temporary file lives in the same directory so the final rename is atomic; its name
    # carries this process's pid and host so that only a dead owner's leftovers are removed
    fd, tmp_name = tempfile.mkstemp(
        prefix=f".{target.name}.{owner_tag()}.", suffix=TEMP_SUFFIX, dir=target.parent
    )
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
    """Hex SHA256 of a regular file, read in chunks so large files do not fill memory.

    The file is opened without blocking and the *opened* file is checked, so a path that is (or
    is swapped after a check for) a FIFO or a device never makes the hash wait forever.

    Args:
        path: the file.
        chunk_bytes: bytes read at a time.

    Returns:
        The hex digest.

    Raises:
        CheckpointError: ``path`` is not a regular file (message names it and what it is).
        OSError: it cannot be opened or read.
    """
    import stat

    digest = hashlib.sha256()
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    with os.fdopen(fd, "rb") as handle:
        mode = os.fstat(handle.fileno()).st_mode
        if not stat.S_ISREG(mode):
            kind = "a FIFO (named pipe)" if stat.S_ISFIFO(mode) else "not a regular file"
            raise CheckpointError(f"cannot hash {os.fsdecode(path)}: it is {kind}")
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
    data = manifest.read_bytes()[:4096]  # a manifest is one short line
    text = data.decode("utf-8", errors="replace")
    lines = [line for line in text.splitlines() if line.strip()]
    # sha256sum's line: digest, a space, then a space (text mode) or '*' (binary mode), name
    parts = lines[0].split(maxsplit=1) if len(lines) == 1 else []
    digest = parts[0].lower() if parts else ""
    if len(parts) != 2 or len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise CheckpointError(
            f"checksum manifest {manifest} is malformed: expected one line "
            f"'<64 hex digits>  {path.name}', got {[line[:100] for line in lines[:2]]}"
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


# ----------------------------------------------------------------------------- temporaries
def host_tag() -> str:
    """This machine's host name reduced to at most 20 letters and digits (part of owner tags)."""
    return "".join(ch for ch in socket.gethostname() if ch.isascii() and ch.isalnum())[:20]


def owner_tag() -> str:
    """``<pid>-<host>``: who writes a temporary file (see :func:`remove_stale_temporaries`)."""
    return f"{os.getpid()}-{host_tag()}"


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists on this machine (signal 0 probes it).

    Args:
        pid: process id.

    Returns:
        True when the process exists (also when it belongs to another user), else False.
    """
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def temporary_is_stale(path: str | os.PathLike, now: float | None = None) -> bool:
    """Whether a temporary file's writer is gone, so the file can be deleted.

    Args:
        path: a temporary file (``.<name>.<pid>-<host>.<random>.tmp``).
        now: current time (``time.time()``), for files without an owner tag.

    Returns:
        True when its owner ran on this host and is no longer alive, or, for a file without an
        owner tag, when it is older than :data:`UNOWNED_TEMP_STALE_S`. A file written on
        another host is never stale: that host's processes cannot be seen from here.
    """
    path = Path(path)
    match = _OWNER_RE.search(path.name)
    if match is None:
        now = time.time() if now is None else now
        try:
            return now - path.stat().st_mtime > UNOWNED_TEMP_STALE_S
        except FileNotFoundError:
            return False
    return match["host"] == host_tag() and not pid_alive(int(match["pid"]))


def remove_stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Delete the temporary files in ``folder`` whose writer is gone (:func:`temporary_is_stale`).

    Temporaries of running processes (this one included) are kept: they are about to be renamed
    into place.

    Args:
        folder: the directory to clean (not recursive); a missing folder is fine.

    Returns:
        The deleted files.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    for path in folder.glob(f".*{TEMP_SUFFIX}"):
        if temporary_is_stale(path):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                removed.append(path)
    return removed


# ----------------------------------------------------------------------------- folder locks
@dataclass
class _Held:
    """A lock this process holds: the lock file's descriptor and the nesting depth."""

    fd: int
    depth: int = 1


# both keyed by the lock file's real path: the lock this process holds, and the lock that keeps
# this process's threads out of each other's way
_HELD: dict[str, _Held] = {}
_THREAD_LOCKS: dict[str, threading.RLock] = {}
_REGISTRY = threading.Lock()


def _forget_locks_after_fork() -> None:
    """In a forked child: the parent's locks are not the child's (close the inherited copies).

    The registry's own lock is made anew too: another thread of the parent may have held it.
    """
    global _REGISTRY
    for held in _HELD.values():
        with contextlib.suppress(OSError):
            os.close(held.fd)
    _HELD.clear()
    _THREAD_LOCKS.clear()
    _REGISTRY = threading.Lock()


os.register_at_fork(after_in_child=_forget_locks_after_fork)


def lock_holder(lock_file: str | os.PathLike) -> str:
    """Who holds a lock according to its lock file: ``"process <pid> on <host>"`` or a fallback.

    Args:
        lock_file: the lock file of a folder.

    Returns:
        A phrase for an error message.
    """
    try:
        words = Path(lock_file).read_text(encoding="utf-8").split()
    except OSError:
        words = []
    if len(words) >= 2 and words[0].isdigit():
        return f"process {words[0]} on {words[1]}"
    return "another process (pid not yet recorded)"


def _thread_lock(key: str) -> threading.RLock:
    """The per-process lock that keeps this process's threads out of each other's way."""
    with _REGISTRY:
        return _THREAD_LOCKS.setdefault(key, threading.RLock())


def _flock_until(fd: int, deadline: float) -> bool:
    """Try an exclusive flock on ``fd`` until ``deadline`` (monotonic); True when taken."""
    import fcntl

    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(_LOCK_POLL_S)


def _write_owner(fd: int) -> None:
    """Record this process as the holder in the lock file (``<pid> <host>``)."""
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()} {host_tag() or 'localhost'}\n".encode(), 0)


def _timeout_error(folder: Path, lock_file: Path, timeout_s: float) -> LockTimeoutError:
    """The error raised when a lock stays held past the timeout (names folder and holder)."""
    holder = lock_holder(lock_file)
    return LockTimeoutError(
        f"folder {folder} is locked by {holder} (lock file {lock_file}); gave up after "
        f"{timeout_s:g} s. Wait for that process to finish, or retry with a longer lock timeout.",
        folder=folder,
        holder=holder,
    )


def _open_lock_file(lock_file: Path) -> int:
    """Open (create) a lock file for locking; raises OSError on a read-only folder."""
    return os.open(lock_file, os.O_RDWR | os.O_CREAT, _default_file_mode())


def _acquire(folder: Path, lock_file: Path, timeout_s: float) -> None:
    """Take the lock of ``folder`` (nested calls of this process only count a depth)."""
    key = os.path.realpath(lock_file)  # one lock however the folder is spelled
    deadline = time.monotonic() + max(0.0, timeout_s)
    tlock = _thread_lock(key)
    if not tlock.acquire(timeout=max(0.0, timeout_s)):
        raise _timeout_error(folder, lock_file, timeout_s)
    try:
        held = _HELD.get(key)
        if held is not None:
            held.depth += 1
            return
        fd = _open_lock_file(lock_file)
        try:
            if not _flock_until(fd, deadline):
                raise _timeout_error(folder, lock_file, timeout_s)
            _write_owner(fd)
        except BaseException:
            os.close(fd)  # closing the only descriptor also drops a lock taken above
            raise
        _HELD[key] = _Held(fd)
    except BaseException:
        tlock.release()
        raise


def _release(lock_file: Path) -> None:
    """Undo one :func:`_acquire`; the outermost release unlocks the file."""
    import fcntl

    key = os.path.realpath(lock_file)
    held = _HELD[key]
    held.depth -= 1
    if held.depth == 0:
        del _HELD[key]
        try:
            os.ftruncate(held.fd, 0)  # no holder recorded any more
            fcntl.flock(held.fd, fcntl.LOCK_UN)
        finally:
            os.close(held.fd)
    _thread_lock(key).release()


@contextlib.contextmanager
def folder_lock(
    folder: str | os.PathLike,
    timeout_s: float = 60.0,
    required: bool = True,
    name: str = LOCK_NAME,
) -> Iterator[bool]:
    """Hold the exclusive lock of a folder for the ``with`` body.

    Waits (polling) until the lock is free or ``timeout_s`` has passed. Re-entrant: a process
    that already holds the lock (in the same thread) just enters. The lock belongs to the open
    lock file, so it disappears with its process; a crash never leaves a stale lock.

    Args:
        folder: the locked folder (it must exist); the lock file is ``folder / name``.
        timeout_s: seconds to wait for another holder.
        required: when False, a folder where the lock file cannot be created (read-only
            media, no permission) is entered unlocked instead of raising: readers of a
            read-only folder need no lock, since nobody can write it.
        name: name of the lock file.

    Yields:
        True when the lock is held, False when entered unlocked (``required=False`` only).

    Raises:
        LockTimeoutError: another process held the lock for ``timeout_s`` seconds (the message
            names the folder and the holder's pid).
        OSError: the lock file cannot be created and ``required`` is True, or the file system
            does not support ``flock`` (some network mounts).
    """
    folder = Path(folder)
    lock_file = folder / name
    try:
        _acquire(folder, lock_file, timeout_s)
        locked = True
    except OSError as exc:  # a read-only folder, or (LockTimeoutError) a busy one
        if required or isinstance(exc, LockTimeoutError):
            raise
        locked = False
    try:
        yield locked
    finally:
        if locked:
            _release(lock_file)
