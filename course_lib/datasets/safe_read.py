"""Readers that fail clearly: the checks every file reader of the course shares.

Bad input gets a :class:`~course_lib.errors.CourseError` subclass (the caller chooses which) whose
message names the file, and the line, field or array where there is one; never a hang, a kernel
crash, a ``MemoryError`` or an exception of the parser underneath.

* :func:`check_regular_file` - before anything opens a path: a missing file, a dangling symbolic
  link (named by its own path, its target given), a link loop, a folder, a FIFO, a socket or a
  device is refused and never opened (opening a FIFO for reading blocks until a writer comes).
* :func:`open_regular_file` - that check, then an open that cannot block (``O_NONBLOCK``) and a
  second check of the opened descriptor (``fstat``), so a path swapped for a FIFO between the
  check and the open is named as a FIFO, never waited on. Every reader here opens through it.
* :func:`read_json_file` / :func:`parse_json` / :func:`decode_utf8` - JSON with the file and
  line of bad UTF-8, invalid JSON, JSON nested too deeply (``RecursionError`` underneath) or a
  number too long to convert; the top-level type is checked.
* :func:`load_npz_array` / :func:`load_npz_arrays` - arrays of an ``.npz`` archive. The ``.npy``
  header of each member is read first (:func:`numpy.lib.format.read_magic`,
  ``read_array_header_1_0`` / ``_2_0``; a header declaring more than
  :data:`MAX_NPY_HEADER_BYTES` is refused unread), and its dtype and declared shape are checked
  *before* any data is read: pickled (object) arrays are refused, and so is an array larger than
  ``max_bytes`` (default :data:`MAX_ARRAY_BYTES`; :func:`load_npz_arrays` also caps the arrays'
  total), so neither a header declaring ``(10**12, 512)`` nor a small archive that decompresses
  to hundreds of MB allocates anything.
* :func:`load_torch_file` - ``torch.load(weights_only=True)`` whose refusals say what the file is
  and that it is not a plain tensor file (torch's own advice to retry with
  ``weights_only=False``, which could run code from the file, is never repeated).
* :func:`short_repr` - a value echoed in a message, cut to :data:`MAX_ECHO_CHARS` characters;
  :func:`path_text` - a file name for a message, printable even when it is not valid UTF-8.
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import math
import os
import re
import stat
import struct
import sys
import zipfile
import zlib
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

from course_lib.errors import CheckpointError, CourseError, DataValidationError, printable

#: Values echoed in error messages are cut to this many characters (:func:`short_repr`).
MAX_ECHO_CHARS = 200
#: Largest array :func:`load_npz_array` loads by default, in bytes (decompressed), 128 MiB. A
#: 10-hour video holds 18,000 clips: its 768-d fp16 clip features take 26 MiB and its 48-pixel
#: thumbnails 119 MiB. Change it here, or pass ``max_bytes=`` to the loaders.
MAX_ARRAY_BYTES = 128 * 2**20
#: Longest ``.npy`` header :func:`load_npz_arrays` reads, in bytes (numpy's own default limit;
#: ``np.save`` writes headers of about 128 bytes).
MAX_NPY_HEADER_BYTES = 10_000
#: Largest JSON file :func:`read_json_file` reads by default, in bytes (256 MiB).
MAX_JSON_BYTES = 256 * 2**20

_NPY_MAGIC = b"\x93NUMPY"
# opening a FIFO with O_NONBLOCK returns at once; O_NOCTTY: a terminal never becomes ours
_NO_WAIT = getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
_JSON_NAMES = {
    dict: "object",
    list: "array",
    str: "string",
    bool: "boolean",
    int: "number",
    float: "number",
    type(None): "null",
}
# torch's refusal names the Python object it met; the rest of its text is advice we do not repeat
# (on the same line, or after blank lines: "WeightsUnpickler error: \n\nUnsupported operand 103")
_UNPICKLER_REASON = re.compile(r"WeightsUnpickler error:\s*(.*?)(?: Please |\n|$)")

ErrorType = type[CourseError]
# what zipfile / numpy raise on a damaged archive (RuntimeError: encrypted member,
# NotImplementedError: unknown compression)
_NPZ_FAILURES = (
    OSError,
    EOFError,
    ValueError,
    zipfile.BadZipFile,
    zlib.error,
    RuntimeError,
    NotImplementedError,
)


# ----------------------------------------------------------------------------- messages
def short_repr(value: Any, limit: int = MAX_ECHO_CHARS) -> str:
    """``repr(value)`` cut to ``limit`` characters, for echoing bad input in a message.

    Args:
        value: any value (a whole record, a 5 MB string ...).
        limit: characters kept.

    Returns:
        The repr, or its first ``limit`` characters followed by ``... (N characters)`` where N is
        the length of the whole repr.
    """
    return cut_text(repr(value), limit)


def cut_text(text: str, limit: int = MAX_ECHO_CHARS) -> str:
    """``text`` cut to ``limit`` characters, followed by ``... (N characters)`` when it was cut.

    Args:
        text: any text (e.g. a query to quote in a warning).
        limit: characters kept.

    Returns:
        ``text`` itself when short enough.
    """
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text)} characters)"


def path_text(path: str | bytes | os.PathLike) -> str:
    """A file name for a message or a printed line, printable even when it is not valid UTF-8.

    Args:
        path: a path (``str`` with surrogate escapes as :func:`os.listdir` gives, ``bytes``, or
            :class:`~pathlib.Path`).

    Returns:
        The name with bytes that are not valid UTF-8 shown as ``\\xNN`` (``bad\\xff.jsonl``).
    """
    return printable(os.fsdecode(path))


def type_phrase(value: Any) -> str:
    """How a JSON value's type reads in a message: ``an object``, ``an array``, ``a number`` ..."""
    return _with_article(_JSON_NAMES.get(type(value), type(value).__name__))


def _with_article(name: str) -> str:
    """``an object``, ``a string``; ``null`` stays bare."""
    return name if name == "null" else f"{'an' if name[0] in 'aeiou' else 'a'} {name}"


def _type_names(expect: type | tuple[type, ...]) -> list[str]:
    """The JSON names of accepted Python types, each once: ``["object", "null"]``."""
    kinds = expect if isinstance(expect, tuple) else (expect,)
    return list(dict.fromkeys(_JSON_NAMES.get(k, k.__name__) for k in kinds))


def json_type_problem(value: Any, expect: type | tuple[type, ...]) -> str | None:
    """Why a parsed JSON value is not of type ``expect``: ``"an array, expected an object"``.

    ``true``/``false`` is never a number here (Python's ``bool`` is an ``int``).

    Args:
        value: the parsed value.
        expect: the accepted Python type(s): ``dict``, ``list``, ``str``, ``int``, ``float``,
            ``type(None)``.

    Returns:
        The problem in words, or None when ``value`` has an accepted type.
    """
    kinds = expect if isinstance(expect, tuple) else (expect,)
    if isinstance(value, kinds) and (bool in kinds or not isinstance(value, bool)):
        return None
    wanted = " or ".join(_with_article(name) for name in _type_names(kinds))
    return f"{type_phrase(value)}, expected {wanted}"


# ----------------------------------------------------------------------------- paths
def check_regular_file(path: str | os.PathLike, what: str, error: ErrorType) -> Path:
    """Refuse, without opening it, a path that is not an existing regular file (links followed).

    Args:
        path: the file to read.
        what: what the file is, for the message (``"video file"``, ``"checkpoint sidecar"``).
        error: the exception type to raise.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        error: ``"<what> not found: <path>"``, or a message naming the path and saying what it
            is instead: a dangling symbolic link (with its target), a link loop, a folder, a
            FIFO, a socket or a device, or unreadable (permission denied).
    """
    p = Path(path)
    try:
        mode = p.stat().st_mode  # follows links
    except OSError as exc:
        raise error(_stat_problem(p, what, exc)) from None
    if not stat.S_ISREG(mode):
        raise error(f"{what} {p} is {_file_kind(mode)}, not a regular file; it was not opened")
    return p


def _stat_problem(p: Path, what: str, exc: OSError) -> str:
    """Why ``stat`` of a path failed, naming the path itself (never a link's target only)."""
    if exc.errno == errno.ELOOP:
        return f"{what} {p} is a symbolic link loop"
    if exc.errno == errno.ENOENT and p.is_symlink():
        return (
            f"{what} {p} is a dangling symbolic link (its target {os.readlink(p)} does not exist)"
        )
    if exc.errno in (errno.ENOENT, errno.ENOTDIR):
        return f"{what} not found: {p}"
    return f"{what} {p} cannot be read ({exc.strerror or exc})"


def _file_kind(mode: int) -> str:
    """What a non-regular file is, in words."""
    kinds = (
        (stat.S_ISDIR, "a folder"),
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
    )
    return next((phrase for test, phrase in kinds if test(mode)), "a special file")


@contextlib.contextmanager
def open_regular_file(path: str | os.PathLike, what: str, error: ErrorType) -> Iterator[IO[bytes]]:
    """Open a regular file for reading in binary mode, never blocking on a FIFO.

    The path is checked first (:func:`check_regular_file`: special files are never opened), then
    opened with ``O_NONBLOCK`` and the opened descriptor checked again with ``fstat``: a path
    swapped for a FIFO (or a folder, a device ...) between the check and the open is refused under
    its own name instead of blocking until a writer comes. The handle reads in blocking mode.

    Args:
        path: the file.
        what: what the file is, for messages.
        error: the exception type to raise.

    Returns:
        A context manager giving the open binary handle (closed on exit).

    Raises:
        error: not a regular file (before or after the open), or the open failed (the path
            vanished, became a dangling link, permission denied ...).
    """
    p = check_regular_file(path, what, error)
    try:
        fd = os.open(p, os.O_RDONLY | _NO_WAIT)
    except OSError as exc:
        raise error(_stat_problem(p, what, exc)) from None
    with os.fdopen(fd, "rb") as handle:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise error(
                f"{what} {p} is {_file_kind(mode)}, not a regular file (it was replaced after it "
                "was checked); nothing was read"
            )
        if hasattr(os, "O_NONBLOCK"):
            os.set_blocking(fd, True)
        yield handle


def read_bytes(
    path: str | os.PathLike, what: str, error: ErrorType, max_bytes: int | None = None
) -> bytes:
    """The whole content of a regular file, refusing special files and files over ``max_bytes``.

    The file is opened by :func:`open_regular_file`, so a path swapped for a FIFO between the
    check and the open cannot block.

    Args:
        path: the file.
        what: what the file is, for messages.
        error: the exception type to raise.
        max_bytes: largest size accepted (None: no limit).

    Returns:
        The bytes.

    Raises:
        error: not a regular file (see :func:`check_regular_file`), too large, or unreadable.
    """
    p = Path(path)
    with open_regular_file(p, what, error) as handle:
        size = os.fstat(handle.fileno()).st_size
        if max_bytes is not None and size > max_bytes:
            raise error(f"{what} {p} has {size} bytes, over the limit of {max_bytes} bytes")
        try:
            return handle.read()
        except OSError as exc:
            raise error(f"{what} {p} cannot be read ({exc.strerror or exc})") from None


# ----------------------------------------------------------------------------- JSON
def decode_utf8(
    data: bytes, source: str | os.PathLike, error: ErrorType, first_line: int = 1
) -> str:
    """Decode UTF-8, naming the file and the line of the first bad byte.

    Args:
        data: the bytes (a whole file, or one line of it).
        source: the file, for the message.
        error: the exception type to raise.
        first_line: line number of the first line of ``data`` in the file.

    Returns:
        The text.

    Raises:
        error: ``"<file>: line N: not valid UTF-8 (byte 0xff at byte C of the line)"``.
    """
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = first_line + data.count(b"\n", 0, exc.start)
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise error(
            f"{source}: line {line}: not valid UTF-8 (byte {data[exc.start]:#04x} at byte "
            f"{column} of the line)"
        ) from None


def parse_json(
    text: str, source: str | os.PathLike, error: ErrorType, first_line: int | None = None
) -> Any:
    """``json.loads`` whose every failure names the file (and line).

    Args:
        text: JSON text: a whole file, or one line of a JSON-lines file.
        source: the file, for the message.
        error: the exception type to raise.
        first_line: line number of ``text`` in the file (JSON lines); None for a whole file.

    Returns:
        The parsed value.

    Raises:
        error: invalid JSON (line and column), nesting too deep for Python's recursion limit,
            or a value Python refuses (an integer of more than 4300 digits).
    """
    where = f"{source}: line {first_line}" if first_line is not None else str(source)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        line = exc.lineno + (first_line or 1) - 1
        raise error(
            f"{source}: line {line}: invalid JSON ({exc.msg}, column {exc.colno})"
        ) from None
    except RecursionError:
        raise error(
            f"{where}: JSON nested too deeply (over about {sys.getrecursionlimit()} levels)"
        ) from None
    except ValueError as exc:  # e.g. an integer too long to convert
        raise error(f"{where}: JSON value refused ({exc})") from None


def check_json_type(
    value: Any, expect: type | tuple[type, ...], where: str, error: ErrorType
) -> Any:
    """Refuse a parsed JSON value of another type than ``expect`` (e.g. a list for a dict).

    Args:
        value: the parsed value.
        expect: the accepted Python type(s): ``dict`` (object) or ``list`` (array).
        where: the file (and field), for the message.
        error: the exception type to raise.

    Returns:
        ``value``.
    """
    if json_type_problem(value, expect):
        wanted = " or ".join(_type_names(expect))
        raise error(f"{where}: expected a JSON {wanted}, got {type_phrase(value)}")
    return value


def read_json_file(
    path: str | os.PathLike,
    what: str,
    error: ErrorType,
    expect: type | tuple[type, ...] = dict,
    max_bytes: int | None = None,
) -> Any:
    """Read a whole JSON file safely (see the module docstring).

    Args:
        path: the file.
        what: what the file is (``"index manifest"``), for messages.
        error: the exception type to raise.
        expect: the accepted top-level type(s).
        max_bytes: largest file accepted; default :data:`MAX_JSON_BYTES`.

    Returns:
        The parsed value, of type ``expect``.

    Raises:
        error: every failure, naming the file (and line).
    """
    limit = MAX_JSON_BYTES if max_bytes is None else max_bytes
    data = read_bytes(path, what, error, limit)
    text = decode_utf8(data, path, error)
    return check_json_type(parse_json(text, path, error), expect, f"{what} {path}", error)


# ----------------------------------------------------------------------------- npz arrays
def load_npz_array(
    path: str | os.PathLike,
    key: str,
    what: str = "feature file",
    error: ErrorType = DataValidationError,
    dtypes: Collection[type] | None = None,
    ndim: int | None = None,
    max_bytes: int | None = None,
) -> np.ndarray:
    """One array of an ``.npz`` archive, its header checked before any data is read.

    Args:
        path: the ``.npz`` file.
        key: the array's name in it.
        what: what the file is, for messages.
        error: the exception type to raise.
        dtypes: accepted scalar types (e.g. ``(np.float16, np.float32)``); None accepts any
            numeric dtype. Object (pickled) arrays are always refused.
        ndim: required number of dimensions (None: any).
        max_bytes: largest array accepted (decompressed bytes); default :data:`MAX_ARRAY_BYTES`.

    Returns:
        The array as stored.

    Raises:
        error: see :func:`load_npz_arrays`. The message names the file and array.
    """
    return load_npz_arrays(path, [key], what, error, dtypes, ndim, max_bytes)[key]


def load_npz_arrays(
    path: str | os.PathLike,
    keys: Sequence[str],
    what: str = "feature file",
    error: ErrorType = DataValidationError,
    dtypes: Collection[type] | None = None,
    ndim: int | None = None,
    max_bytes: int | None = None,
    *,
    limit_name: str = "course_lib.datasets.safe_read.MAX_ARRAY_BYTES, or max_bytes=",
) -> dict[str, np.ndarray]:
    """Several arrays of one ``.npz`` archive, every header checked before any data is read.

    Args:
        path: the ``.npz`` file (opened by :func:`open_regular_file`: never a FIFO).
        keys: the arrays' names in it; all must be there.
        what: what the file is, for messages.
        error: the exception type to raise.
        dtypes: accepted scalar types of every array; None accepts any dtype but objects.
        ndim: required number of dimensions of every array (None: any).
        max_bytes: largest size accepted for each array and for all of them together
            (decompressed bytes); default :data:`MAX_ARRAY_BYTES`.
        limit_name: how to change the limit, said in the message of a refusal.

    Returns:
        ``{key: array}`` in the order of ``keys``.

    Raises:
        error: not a regular file, a bare ``.npy``, not a zip archive, missing arrays (all
            named), an unsupported ``.npy`` version, a pickled array, another dtype or ndim, a
            declared size over the limit, or truncated / corrupt data. The message names the
            file (and the array).
    """
    p = Path(path)
    limit = MAX_ARRAY_BYTES if max_bytes is None else max_bytes
    rule = _ArrayRule(dtypes, ndim, limit, limit_name)
    with open_regular_file(p, what, error) as handle, _npz_failures(p, error):
        if handle.read(len(_NPY_MAGIC)) == _NPY_MAGIC:
            raise error(f"{p}: a bare .npy array, expected an .npz archive")
        handle.seek(0)
        with zipfile.ZipFile(handle) as archive:
            members = _npz_members(archive, p, keys, error)
            sizes = [
                _check_member(archive, member, f"{p}: array {key!r}", error, rule)
                for key, member in members.items()
            ]
            if sum(sizes) > limit:
                raise error(
                    f"{p}: arrays {short_repr(list(members))} declare {sum(sizes)} bytes "
                    f"together, over the limit of {limit} bytes ({rule.limit_name}); nothing "
                    "was loaded"
                )
            return {key: _read_member(archive, member) for key, member in members.items()}


@dataclass(frozen=True)
class _ArrayRule:
    """What a declared array must be: its dtypes, number of dimensions and largest size."""

    dtypes: Collection[type] | None
    ndim: int | None
    max_bytes: int
    limit_name: str  # where the limit is changed, for the message


@contextlib.contextmanager
def _npz_failures(p: Path, error: ErrorType) -> Iterator[None]:
    """Turn what zipfile / numpy raise on a damaged archive into ``error`` naming the file."""
    try:
        yield
    except CourseError:
        raise
    except _NPZ_FAILURES as exc:
        reason = cut_text(f"{type(exc).__name__}: {exc}")
        if "allow_pickle" in reason:  # never repeat numpy's advice to trust the file
            reason = f"{type(exc).__name__}: refused by numpy's safe loader"
        raise error(f"{p}: not a readable .npz file ({reason})") from None


def _npz_members(
    archive: zipfile.ZipFile, p: Path, keys: Sequence[str], error: ErrorType
) -> dict[str, zipfile.ZipInfo]:
    """The zip entries of arrays ``keys`` (``key.npy``), or a message naming every missing one."""
    names = set(archive.namelist())
    missing = [key for key in keys if f"{key}.npy" not in names]
    if missing:
        arrays = sorted(name.removesuffix(".npy") for name in names)
        listed = short_repr(missing[0] if len(missing) == 1 else missing)
        noun = "array" if len(missing) == 1 else "arrays"
        raise error(f"{p}: no {noun} {listed} (has {short_repr(arrays)})")
    return {key: archive.getinfo(f"{key}.npy") for key in keys}


def _check_member(
    archive: zipfile.ZipFile,
    member: zipfile.ZipInfo,
    where: str,
    error: ErrorType,
    rule: _ArrayRule,
) -> int:
    """Read one member's ``.npy`` header only and check it; returns its declared size in bytes."""
    with archive.open(member) as fp:
        shape, dtype = _npy_header(fp, where, error)
    return _check_declared(shape, dtype, where, error, rule)


def _read_member(archive: zipfile.ZipFile, member: zipfile.ZipInfo) -> np.ndarray:
    """The array of one member whose header was checked (never unpickles)."""
    with archive.open(member) as fp:
        return np.lib.format.read_array(
            fp, allow_pickle=False, max_header_size=MAX_NPY_HEADER_BYTES
        )


def _npy_header(fp, where: str, error: ErrorType) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype from an ``.npy`` header (format 1.0 or 2.0), reading no array data.

    The header's declared length is checked before the header is read: numpy would read (and
    decompress) all of it first, so a small archive declaring a header of hundreds of MB would
    allocate them, and its refusal would suggest ``allow_pickle=True``.
    """
    # 1. the version, and the size of the length field that follows it
    version = np.lib.format.read_magic(fp)
    readers = {
        (1, 0): ("<H", np.lib.format.read_array_header_1_0),
        (2, 0): ("<I", np.lib.format.read_array_header_2_0),
    }
    if version not in readers:
        raise error(f"{where}: .npy format version {version} is not supported (1.0 or 2.0)")
    length_format, read_header = readers[version]
    # 2. the declared header length, refused over the cap before the header is read
    length_field = fp.read(struct.calcsize(length_format))
    if len(length_field) < struct.calcsize(length_format):
        raise error(f"{where}: the .npy header is truncated")
    (length,) = struct.unpack(length_format, length_field)
    if length > MAX_NPY_HEADER_BYTES:
        raise error(
            f"{where}: .npy header declares {length} bytes, over the limit of "
            f"{MAX_NPY_HEADER_BYTES} bytes (MAX_NPY_HEADER_BYTES); nothing was loaded"
        )
    # 3. numpy parses the bounded header
    header = io.BytesIO(length_field + fp.read(length))
    shape, _, dtype = read_header(header, max_header_size=MAX_NPY_HEADER_BYTES)
    return tuple(shape), np.dtype(dtype)


def _check_declared(
    shape: tuple[int, ...],
    dtype: np.dtype,
    where: str,
    error: ErrorType,
    rule: _ArrayRule,
) -> int:
    """Refuse a declared array before it is read: pickled, other dtype or ndim, too large.

    Returns:
        The declared size in bytes.
    """
    if dtype.hasobject:
        raise error(f"{where} holds Python objects (pickled data), refused: it could run code")
    if rule.dtypes is not None and dtype.type not in rule.dtypes:
        names = ", ".join(np.dtype(t).name for t in rule.dtypes)
        raise error(f"{where} has dtype {dtype}, expected one of {names}")
    if rule.ndim is not None and len(shape) != rule.ndim:
        raise error(f"{where} has shape {shape}, expected {rule.ndim} dimensions")
    if any(n < 0 for n in shape):
        raise error(f"{where} declares an impossible shape {shape}")
    size = math.prod(shape) * dtype.itemsize  # Python ints: no overflow
    if size > rule.max_bytes:
        raise error(
            f"{where} declares shape {shape} of {dtype} ({size} bytes), over the limit of "
            f"{rule.max_bytes} bytes ({rule.limit_name}); nothing was loaded"
        )
    return size


# ----------------------------------------------------------------------------- torch files
def load_torch_file(path: str | os.PathLike, what: str, error: ErrorType = CheckpointError) -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU, every failure named in our words.

    Args:
        path: a ``torch.save`` file.
        what: what the file is (``"training state"``), for messages.
        error: the exception type to raise.

    Returns:
        The loaded object (tensors, numbers, strings and containers of them).

    Raises:
        error: not a regular file, empty, refused because it holds other Python objects (not a
            plain tensor file), or damaged / not a ``torch.save`` file.
    """
    p = Path(path)
    with open_regular_file(p, what, error) as handle:
        if os.fstat(handle.fileno()).st_size == 0:
            raise error(f"{what} {p} is empty (0 bytes): an interrupted save?")
        return _torch_load(handle, p, what, error)


def _torch_load(handle: IO[bytes], p: Path, what: str, error: ErrorType) -> Any:
    """``torch.load`` of an open file, its failures in our words (see :func:`load_torch_file`)."""
    import pickle

    import torch

    try:
        return torch.load(handle, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = _UNPICKLER_REASON.search(str(exc))
        detail = f" ({found.group(1).strip()})" if found else ""
        raise error(
            f"{what} {p} was refused: it is not a plain tensor file, it stores Python objects "
            f"other than tensors, numbers, strings and containers{detail}, and loading those "
            "could run code from the file"
        ) from None
    except Exception as exc:  # torch raises RuntimeError, KeyError, EOFError ... on damage
        reason = str(exc).splitlines()[0] if str(exc).strip() else ""
        if "weights_only" in reason:  # never repeat torch's advice about weights_only
            reason = "refused by the weights-only loader"
        raise error(
            f"{what} {p} could not be read: damaged or not a torch.save file "
            f"({type(exc).__name__}: {cut_text(reason)})"
        ) from None
