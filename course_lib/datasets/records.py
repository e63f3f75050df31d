"""JSON-lines files: one record (a JSON object) per line, as in the QVHighlights release.

Reading reports the file and line number of the first bad line; writing is atomic
(through :func:`course_lib.files.atomic_write`), so a crash never leaves half a file.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from course_lib.errors import DataValidationError
from course_lib.files import atomic_write


def iter_jsonl(path: str | os.PathLike) -> Iterator[tuple[int, dict]]:
    """Yield ``(line_number, record)`` for each non-blank line (line numbers start at 1).

    Raises:
        DataValidationError: missing file, bad UTF-8, invalid JSON, or a line that is not a
            JSON object (names the file and line).
    """
    p = Path(path)
    if not p.is_file():
        raise DataValidationError(f"jsonl file not found: {p}")
    with open(p, encoding="utf-8") as handle:
        lineno = 0
        try:
            for lineno, line in enumerate(handle, start=1):  # noqa: B007 (used in except)
                if not line.strip():
                    continue  # blank lines (e.g. a trailing newline) are allowed
                yield lineno, _parse_line(line, p, lineno)
        except UnicodeDecodeError as exc:
            raise DataValidationError(f"{p}: line {lineno + 1}: not valid UTF-8 ({exc})") from exc


def _parse_line(line: str, p: Path, lineno: int) -> dict:
    """Parse one jsonl line into a dict, naming file and line on failure."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        raise DataValidationError(f"{p}: line {lineno}: invalid JSON ({exc.msg})") from exc
    if not isinstance(record, dict):
        raise DataValidationError(
            f"{p}: line {lineno}: expected a JSON object, got {type(record).__name__}"
        )
    return record


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
