"""Parse and check ``data/README.md``, the index of every committed file under ``data/``.

The index is a Markdown table with the columns ``file | role | read by | produced by | sha256``:
one row per file under ``data/`` (recursively; the README itself and hidden files excepted), the
file cell holding the path relative to ``data/`` in backticks and the sha256 cell the first
:data:`PREFIX_LENGTH` hex digits of the file's SHA256 in backticks.

:func:`check_index` lists what is wrong (a file with no row, a row naming no file, a stale
checksum, a ``.safetensors`` file whose ``.sha256`` manifest is missing or does not verify);
:func:`rewrite_checksums` refreshes the sha256 column and nothing else. The command line is
``scripts/update_data_index.py``; ``tests/test_data_index.py`` runs the same checks.

Only the standard library and :mod:`course_lib.files` (itself standard-library only, the one
home of the checksum-manifest convention) are imported, so the checks run without torch.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import NamedTuple

from course_lib.errors import CheckpointError
from course_lib.files import sha256_file, verify_manifest

#: The committed data folder, next to this script's folder.
DATA_DIR = Path(__file__).resolve().parents[1] / "data"
#: The index's file name inside the data folder (it is not indexed itself: its own hash would
#: change every time the table is written).
INDEX_NAME = "README.md"
#: The table's header cells, in order.
COLUMNS = ("file", "role", "read by", "produced by", "sha256")
#: Hex digits of the SHA256 the table shows.
PREFIX_LENGTH = 16
#: A table cell separator: a ``|`` not escaped as ``\|``.
_CELL_SPLIT = re.compile(r"(?<!\\)\|")


class Row(NamedTuple):
    """One file's row of the index table.

    Attributes:
        file: path relative to the data folder, with ``/`` separators.
        sha256: the checksum prefix the row shows (without backticks).
        line: index of the row in the README's lines (0-based).
        command: the first backtick-quoted command of the "produced by" cell ("" if none).
    """

    file: str
    sha256: str
    line: int
    command: str = ""


def split_cells(line: str) -> list[str] | None:
    """The stripped cells of a Markdown table line.

    Args:
        line: one line of Markdown.

    Returns:
        The cells between the outer pipes, or None when the line is not a table row.
    """
    stripped = line.strip()
    if not (stripped.startswith("|") and stripped.endswith("|") and len(stripped) > 1):
        return None
    # the outer pipes leave an empty piece at each end
    return [cell.strip() for cell in _CELL_SPLIT.split(stripped)[1:-1]]


def unquote(cell: str) -> str:
    """A cell's text without the backticks around it.

    Args:
        cell: a stripped table cell, e.g. ``"`bench/index_scale.csv`"``.

    Returns:
        ``"bench/index_scale.csv"`` for that example.
    """
    return cell.strip("`").strip()


def parse_index(text: str) -> list[Row]:
    """The rows of the index table in a README.

    Args:
        text: the README's text.

    Returns:
        One :class:`Row` per table row, in order.

    Raises:
        ValueError: no table with the :data:`COLUMNS` header, or a row with another cell count.
    """
    lines = text.splitlines()
    header = [i for i, line in enumerate(lines) if split_cells(line) == list(COLUMNS)]
    if not header:
        raise ValueError(f"no table with the header | {' | '.join(COLUMNS)} |")
    rows = []
    # the line after the header is the |---| separator; the table ends at the first non-row
    for number in range(header[0] + 2, len(lines)):
        cells = split_cells(lines[number])
        if cells is None:
            break
        if len(cells) != len(COLUMNS):
            raise ValueError(f"line {number + 1}: {len(cells)} cells, expected {len(COLUMNS)}")
        command = re.search(r"`([^`]+)`", cells[COLUMNS.index("produced by")])
        rows.append(
            Row(
                file=unquote(cells[0]),
                sha256=unquote(cells[-1]),
                line=number,
                command=command.group(1) if command else "",
            )
        )
    return rows


def data_files(data_dir: Path) -> list[str]:
    """Every file the index must list.

    Args:
        data_dir: the data folder.

    Returns:
        Paths relative to ``data_dir`` (``/`` separators), sorted; hidden files or folders (e.g.
        an interrupted atomic write's temporary file) and the index itself are left out.
    """
    found = []
    for path in data_dir.rglob("*"):
        relative = path.relative_to(data_dir)
        hidden = any(part.startswith(".") for part in relative.parts)
        if path.is_file() and not hidden and relative.as_posix() != INDEX_NAME:
            found.append(relative.as_posix())
    return sorted(found)


def checksum_prefix(path: Path) -> str:
    """The first :data:`PREFIX_LENGTH` hex digits of a file's SHA256.

    Args:
        path: the file.

    Returns:
        The lower-case hex prefix.
    """
    return sha256_file(path)[:PREFIX_LENGTH]


def manifest_problems(data_dir: Path) -> list[str]:
    """What ``cd data && sha256sum -c *.sha256`` would object to, and weights with no manifest.

    Args:
        data_dir: the data folder.

    Returns:
        One message per ``.safetensors`` file whose manifest is missing, malformed or does not
        match it, and per ``.sha256`` manifest with no weights file next to it.
    """
    problems = []
    for weights in sorted(data_dir.rglob("*.safetensors")):
        try:
            verify_manifest(weights)
        except CheckpointError as error:
            problems.append(str(error))
    # a manifest left behind by a deleted or renamed weights file
    for manifest in sorted(data_dir.rglob("*.sha256")):
        if not manifest.with_suffix(".safetensors").is_file():
            problems.append(f"manifest {manifest} has no {manifest.stem}.safetensors next to it")
    return problems


def index_problems(data_dir: Path, rows: list[Row]) -> list[str]:
    """Where the index table and the data folder disagree.

    Args:
        data_dir: the data folder.
        rows: the table's rows (:func:`parse_index`).

    Returns:
        One message per unlisted file, row listed twice, row naming a missing file and row whose
        checksum prefix is not the file's.
    """
    problems = []
    index = data_dir / INDEX_NAME
    listed = {row.file for row in rows}
    for name in data_files(data_dir):
        if name not in listed:
            problems.append(f"{data_dir / name} has no row in {index}")
    seen = set()
    for row in rows:
        path = data_dir / row.file
        if row.file in seen:
            problems.append(f"{index}:{row.line + 1}: {row.file} has more than one row")
        elif not path.is_file():
            problems.append(f"{index}:{row.line + 1}: {row.file} does not exist")
        elif (actual := checksum_prefix(path)) != row.sha256.lower():
            problems.append(
                f"{index}:{row.line + 1}: sha256 of {row.file} starts {actual}, "
                f"the table says {row.sha256!r} (run scripts/update_data_index.py)"
            )
        seen.add(row.file)
    return problems


def check_index(data_dir: Path = DATA_DIR) -> list[str]:
    """Every problem of the data folder's index and checksum manifests.

    Args:
        data_dir: the data folder (its index is ``data_dir / INDEX_NAME``).

    Returns:
        Human-readable problems, empty when everything is listed, current and verified.
    """
    index = data_dir / INDEX_NAME
    if not index.is_file():
        return [f"{index} is missing"]
    try:
        rows = parse_index(index.read_text(encoding="utf-8"))
    except ValueError as error:
        return [f"{index}: {error}"]
    return index_problems(data_dir, rows) + manifest_problems(data_dir)


def rewrite_checksums(text: str, data_dir: Path) -> str:
    """The README with every existing file's sha256 cell refreshed, everything else unchanged.

    Args:
        text: the README's text.
        data_dir: the folder the rows' paths are relative to.

    Returns:
        The new text (rows naming a missing file keep their cell).

    Raises:
        ValueError: the text has no index table (see :func:`parse_index`).
    """
    lines = text.splitlines(keepends=True)
    for row in parse_index(text):
        path = data_dir / row.file
        if not path.is_file():
            continue
        # replace only the last cell: the pieces are '', the cells, then the rest of the line
        pieces = _CELL_SPLIT.split(lines[row.line])
        pieces[-2] = f" `{checksum_prefix(path)}` "
        lines[row.line] = "|".join(pieces)
    return "".join(lines)
