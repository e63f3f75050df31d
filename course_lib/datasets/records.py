"""JSON-lines files: one record (a JSON object) per line, as in the QVHighlights release.

Reading reports the file and line number of the first bad line (invalid JSON or UTF-8, nesting
too deep, a line too long or not an object; :mod:`course_lib.datasets.safe_read`); writing is atomic
(through :func:`course_lib.files.atomic_write`), so a crash never leaves half a file.
"""

from __future__ import annotations

import itertools
import json
import math
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO

import numpy as np

from course_lib.datasets.safe_read import (
    check_json_type,
    decode_utf8,
    open_regular_file,
    parse_json,
)
from course_lib.errors import DataValidationError
from course_lib.files import atomic_write

#: Longest line :func:`iter_jsonl` reads, in bytes (64 MiB; a QVHighlights record is ~1 KB).
MAX_LINE_BYTES = 64 * 2**20


def iter_jsonl(
    path: str | os.PathLike, max_line_bytes: int | None = None
) -> Iterator[tuple[int, dict]]:
    """Yield ``(line_number, record)`` for each non-blank line (line numbers start at 1).

    Lines are read as bytes and decoded one by one, so a bad byte is reported on its own line.

    Args:
        path: ``.jsonl`` file.
        max_line_bytes: longest line accepted; default :data:`MAX_LINE_BYTES`.

    Raises:
        DataValidationError: not a regular file (missing, a dangling link, a FIFO ...), bad
            UTF-8, invalid JSON, JSON nested too deeply, a line over the length limit, or a line
            that is not a JSON object (names the file and line).
    """
    p = Path(path)
    limit = MAX_LINE_BYTES if max_line_bytes is None else max_line_bytes
    with open_regular_file(p, "jsonl file", DataValidationError) as handle:
        for lineno, raw in enumerate(_lines(handle, p, limit), start=1):
            if not raw.strip():
                continue  # blank lines (e.g. a trailing newline) are allowed
            yield lineno, _parse_line(raw, p, lineno)


def _lines(handle: IO[bytes], p: Path, limit: int) -> Iterator[bytes]:
    """The lines of a binary file, refusing one longer than ``limit`` bytes (names its number)."""
    for lineno in itertools.count(1):
        raw = handle.readline(limit + 1)
        if not raw:
            return
        if len(raw) > limit:
            raise DataValidationError(
                f"{p}: line {lineno}: longer than {limit} bytes (MAX_LINE_BYTES); "
                "is this a JSON-lines file?"
            )
        yield raw


def _parse_line(raw: bytes, p: Path, lineno: int) -> dict:
    """Decode and parse one jsonl line into a dict, naming file and line on failure."""
    text = decode_utf8(raw, p, DataValidationError, first_line=lineno).rstrip("\r\n")
    record = parse_json(text, p, DataValidationError, first_line=lineno)
    return check_json_type(record, dict, f"{p}: line {lineno}", DataValidationError)


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    """Read a JSON-lines file into a list of dicts.

    Args:
        path: ``.jsonl`` file, one JSON object per line (blank lines are skipped).

    Returns:
        The records in file order.

    Raises:
        DataValidationError: missing file or a bad line (names the file and line number).
    """
    return [record for _, record in iter_jsonl(path)]


def _to_json(value):
    """``json.dumps`` fallback: numpy scalars and arrays become Python numbers and lists."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def write_jsonl(path: str | os.PathLike, records: Iterable[dict]) -> Path:
    """Write records as JSON lines, atomically (temporary file + rename).

    Args:
        path: destination ``.jsonl`` file (parent directories are created).
        records: dicts; numpy numbers/arrays are converted to plain JSON.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        DataValidationError: a record that is not a dict, contains NaN/inf, or cannot be
            serialised (names the record index); the old file is left untouched.
    """
    p = Path(path)
    with atomic_write(p, "w") as handle:
        for index, record in enumerate(records):
            if not isinstance(record, dict):
                raise DataValidationError(
                    f"{p}: record {index}: expected a dict, got {type(record).__name__}"
                )
            try:
                line = json.dumps(record, ensure_ascii=False, allow_nan=False, default=_to_json)
            except (TypeError, ValueError) as exc:
                raise DataValidationError(f"{p}: record {index}: {exc}") from exc
            handle.write(line + "\n")
    return p


def is_number(value) -> bool:
    """True for a finite int/float (bools excluded)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        return False
    return math.isfinite(float(value))


def is_int(value) -> bool:
    """True for an int (bools excluded)."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)
