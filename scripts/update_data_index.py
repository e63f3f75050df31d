"""Refresh or check the sha256 column of ``data/README.md``, the index of the committed data files.

Every file under ``data/`` has a row in the README's table (file, role, read by, produced by,
sha256 prefix), and every ``X.safetensors`` has a ``sha256sum``-format manifest ``X.sha256``
(:mod:`course_lib.files`). After replacing a committed file::

    python scripts/update_data_index.py           # rewrite the sha256 column in place (atomic)
    python scripts/update_data_index.py --check   # change nothing; exit 1 listing any problem

Without ``--check`` only the sha256 cells of rows whose file exists are rewritten; the other
problems (a file with no row, a row naming a missing file, a manifest that does not verify)
need a hand edit or a rerun of the producing command, and are listed with exit status 1.
The parsing and checking live in ``scripts/data_index.py`` (tested by
``tests/test_data_index.py``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from data_index import DATA_DIR, INDEX_NAME, check_index, rewrite_checksums

from course_lib.files import atomic_write


def refresh(data_dir: Path) -> bool:
    """Rewrite the index's sha256 column from the files on disk.

    Args:
        data_dir: the data folder holding the index.

    Returns:
        True when the file changed (it is written atomically, and only then).
    """
    index = data_dir / INDEX_NAME
    text = index.read_text(encoding="utf-8")
    updated = rewrite_checksums(text, data_dir)
    if updated == text:
        return False
    # a temporary file renamed over the index: a crash leaves the old table or the new one
    with atomic_write(index, "w") as handle:
        handle.write(updated)
    return True


def main(argv: list[str] | None = None) -> int:
    """Command line entry point.

    Args:
        argv: arguments (default: ``sys.argv[1:]``).

    Returns:
        0 when the index lists every file with its current checksum and every manifest
        verifies, 1 otherwise (the problems are printed to stderr).
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="change nothing, report problems")
    parser.add_argument("--data-dir", type=Path, default=DATA_DIR, help="default: %(default)s")
    args = parser.parse_args(argv)
    # 1. refresh the checksum column unless only checking (a malformed table is reported below)
    if not args.check and (args.data_dir / INDEX_NAME).is_file():
        try:
            if refresh(args.data_dir):
                print(f"updated the sha256 column of {args.data_dir / INDEX_NAME}")
        except ValueError:
            pass  # check_index names the malformed table
    # 2. list whatever is still wrong
    problems = check_index(args.data_dir)
    for problem in problems:
        print(problem, file=sys.stderr)
    if not problems:
        print(f"{args.data_dir / INDEX_NAME}: every file listed, checksums current")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
