"""Command line: ``python -m course_lib.datasets validate FILE [--kind K] [--no-labels]``.

Prints ``OK: N records`` and exits 0, or prints the first problems (file, line, qid, field)
and exits 1. The record kind is detected from the first record unless ``--kind`` is given;
a ``.json`` file holding ``{"videos", "queries"}`` is validated as a corpus.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from course_lib.datasets.records import is_int, iter_jsonl
from course_lib.datasets.safe_read import path_text, read_json_file
from course_lib.datasets.validate import (
    corpus_errors,
    moment_record_errors,
    retrieval_pair_errors,
)
from course_lib.errors import DataValidationError

KINDS = ("auto", "moment", "pair", "corpus")


def _detect(record: dict) -> str:
    """Guess the record kind from its fields."""
    return "pair" if isinstance(record, dict) and "pair_id" in record else "moment"


def jsonl_errors(
    path: Path, kind: str = "auto", require_labels: bool = True
) -> tuple[int, list[str]]:
    """Validate a jsonl file line by line: ``(n_records, messages with file and line)``.

    A file without records is an error too (an empty dataset validates nothing). The file is
    named printably even when its name is not valid UTF-8 (:func:`path_text`).
    """
    errors, seen, n, name = [], {}, 0, path_text(path)
    for lineno, record in iter_jsonl(path):
        n += 1
        kind = _detect(record) if kind == "auto" else kind
        key = "pair_id" if kind == "pair" else "qid"
        if kind == "pair":
            problems = retrieval_pair_errors(record, n - 1)
        else:
            problems = moment_record_errors(record, n - 1, require_labels=require_labels)
        ident = record.get(key)
        if is_int(ident) or (isinstance(ident, str) and ident):  # others are reported above
            if ident in seen:
                problems.append(
                    f"record {key}={ident!r}: field '{key}': duplicate of line {seen[ident]}"
                )
            seen.setdefault(ident, lineno)
        errors += [f"{name}:{lineno}: {p}" for p in problems]
    if n == 0:
        errors.append(f"{name}: no records: the file is empty (or holds blank lines only)")
    return n, errors


def validate_file(
    path: Path, kind: str = "auto", require_labels: bool = True
) -> tuple[int, list[str]]:
    """Validate a jsonl file or a corpus ``.json``: ``(n_records, error messages)``.

    Raises:
        DataValidationError: the file cannot be read as JSON (lines): missing or not a regular
            file, bad UTF-8 or JSON (names file and line), or a corpus that is not an object.
    """
    if kind == "corpus" or (kind == "auto" and path.suffix == ".json"):
        corpus = read_json_file(path, "corpus file", DataValidationError)  # a dict
        queries = corpus.get("queries")
        n = len(queries) if isinstance(queries, list) else 0
        return n, [f"{path_text(path)}: {e}" for e in corpus_errors(corpus)]
    return jsonl_errors(path, kind, require_labels)


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    parser = argparse.ArgumentParser(prog="python -m course_lib.datasets")
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser("validate", help="validate a .jsonl records file or a corpus .json")
    check.add_argument("file", type=Path)
    check.add_argument("--kind", choices=KINDS, default="auto")
    check.add_argument("--no-labels", action="store_true", help="allow unlabelled (test) records")
    check.add_argument("--max-errors", type=int, default=10)
    args = parser.parse_args(argv)
    try:
        n, errors = validate_file(args.file, args.kind, not args.no_labels)
    except DataValidationError as exc:  # missing or special file, bad JSON (line), bad UTF-8
        print(f"ERROR: {exc}")
        return 1
    if errors:
        for line in errors[: args.max_errors]:
            print(f"ERROR: {line}")
        if len(errors) > args.max_errors:
            print(f"... and {len(errors) - args.max_errors} more errors")
        return 1
    print(f"OK: {n} records")
    return 0


if __name__ == "__main__":
    sys.exit(main())
