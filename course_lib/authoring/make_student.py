"""Generate the student notebooks (notebooks/) from the solution notebooks (solutions/).

Exercise code in a solution notebook sits between two marker lines::

    def cosine_similarity_matrix(a, b):
        ### BEGIN SOLUTION
        a = a / a.norm(dim=-1, keepdim=True)
        ...
        ### END SOLUTION

The generator replaces each block by a stub that raises ``NotImplementedError("Exercise N.M:
<name>")`` (N from the notebook's file-name prefix, M counting blocks in the notebook, <name>
the enclosing ``def`` or the text after ``### BEGIN SOLUTION:``), clears every output, tags the
exercise cells ``raises-exception`` (so nbval accepts the stub's error) and points the Colab
badge at notebooks/. Running it twice gives byte-identical files.

Usage::

    python -m course_lib.authoring.make_student            # write notebooks/
    python -m course_lib.authoring.make_student --check    # exit 1 if notebooks/ is out of sync
"""

from __future__ import annotations

import argparse
import copy
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import nbformat

from course_lib.errors import NotebookFormatError
from course_lib.files import atomic_write

BEGIN = "### BEGIN SOLUTION"
END = "### END SOLUTION"
STUB_TAG = "raises-exception"
_DEF = re.compile(r"^\s*(?:async\s+)?def\s+([A-Za-z_]\w*)\s*\(")


@dataclass
class Exercise:
    """One solution block found in a notebook."""

    number: str  # "N.M"
    name: str
    cell_index: int


def chapter_number(notebook: Path) -> str:
    """Chapter label from the file name: ``03_metrics.ipynb`` -> ``"3"``, ``00b_x`` -> ``"0b"``."""
    prefix = notebook.stem.split("_", 1)[0]
    stripped = prefix.lstrip("0")
    if not stripped or not stripped[0].isdigit():
        stripped = "0" + stripped
    return stripped


def stub_lines(indent: str, label: str) -> list[str]:
    """The two lines that replace a solution block."""
    return [f"{indent}# YOUR CODE HERE", f'{indent}raise NotImplementedError("{label}")']


def strip_solutions(
    source: str, where: str, chapter: str, first_number: int
) -> tuple[str, list[str]]:
    """Replace every solution block in one cell's source by a stub.

    Args:
        source: the cell source.
        where: "notebook.ipynb, cell K" used in error messages.
        chapter: chapter label for exercise numbers.
        first_number: exercise number M of the first block in this cell.

    Returns:
        The new source and the labels ("Exercise N.M: name") of the blocks replaced.

    Raises:
        NotebookFormatError: BEGIN without END, END without BEGIN, or nested BEGIN.
    """
    out: list[str] = []
    labels: list[str] = []
    block_start: int | None = None  # line number of the open BEGIN marker
    last_def = "exercise"
    for line_no, line in enumerate(source.splitlines(), start=1):
        stripped = line.strip()
        match = _DEF.match(line)
        if match and block_start is None:
            last_def = match.group(1)
        # 1. an opening marker: emit the stub, then skip until END
        if stripped.startswith(BEGIN):
            if block_start is not None:
                raise NotebookFormatError(
                    f"{where}: nested '{BEGIN}' on line {line_no} (the block opened on line "
                    f"{block_start} is not closed)"
                )
            block_start = line_no
            explicit = stripped[len(BEGIN) :].lstrip(" :").strip()
            label = f"Exercise {chapter}.{first_number + len(labels)}: {explicit or last_def}"
            labels.append(label)
            out.extend(stub_lines(line[: len(line) - len(line.lstrip())], label))
        # 2. a closing marker must close an open block
        elif stripped.startswith(END):
            if block_start is None:
                raise NotebookFormatError(f"{where}: '{END}' on line {line_no} without a '{BEGIN}'")
            block_start = None
        # 3. ordinary lines survive outside blocks only
        elif block_start is None:
            out.append(line)
    if block_start is not None:
        raise NotebookFormatError(f"{where}: '{BEGIN}' on line {block_start} has no '{END}'")
    return "\n".join(out), labels


def make_student_notebook(solution: Path) -> tuple[nbformat.NotebookNode, list[Exercise]]:
    """Build the student version of one solution notebook (nothing is written)."""
    nb = nbformat.read(solution, as_version=4)
    student = copy.deepcopy(nb)
    # saved widget state belongs to the solution's outputs, which students do not get
    student.metadata.pop("widgets", None)
    chapter = chapter_number(solution)
    exercises: list[Exercise] = []
    for index, cell in enumerate(student.cells):
        where = f"{solution.name}, cell {index}"
        if cell.cell_type == "markdown":
            if BEGIN in cell.source or END in cell.source:
                raise NotebookFormatError(f"{where}: solution markers belong in code cells only")
            cell.source = cell.source.replace("/blob/main/solutions/", "/blob/main/notebooks/")
            continue
        if cell.cell_type != "code":
            continue
        # every code cell loses its outputs and run timestamps (so re-running a solution does not
        # change the student copy); exercise cells get the stub and the tag
        cell.outputs = []
        cell.execution_count = None
        cell.metadata.pop("execution", None)
        new_source, labels = strip_solutions(cell.source, where, chapter, len(exercises) + 1)
        if labels:
            cell.source = new_source
            tags = list(cell.metadata.get("tags", []))
            if STUB_TAG not in tags:
                tags.append(STUB_TAG)
            cell.metadata["tags"] = tags
            for label in labels:
                number, name = label.removeprefix("Exercise ").split(": ", 1)
                exercises.append(Exercise(number=number, name=name, cell_index=index))
    return student, exercises


def render_notebook(nb: nbformat.NotebookNode) -> str:
    """Canonical text of a notebook (what is written to disk)."""
    return nbformat.writes(nb) + "\n"


def generate(src: Path, dst: Path) -> dict[str, str]:
    """Render the student version of every ``src/*.ipynb``; returns {file name: text}."""
    solutions = sorted(src.glob("*.ipynb"))
    if not solutions:
        raise FileNotFoundError(f"no solution notebooks found in {src}")
    return {path.name: render_notebook(make_student_notebook(path)[0]) for path in solutions}


def write_all(src: Path, dst: Path) -> list[Path]:
    """Write student notebooks for every solution; returns the paths written."""
    written = []
    for name, text in generate(src, dst).items():
        target = dst / name
        with atomic_write(target, "w") as handle:
            handle.write(text)
        written.append(target)
    return written


def out_of_sync(src: Path, dst: Path) -> list[str]:
    """List the differences between ``dst`` and what the generator would write (empty = in sync)."""
    expected = generate(src, dst)
    problems = []
    for name, text in expected.items():
        path = dst / name
        if not path.exists():
            problems.append(f"{path} is missing")
        elif path.read_text(encoding="utf-8") != text:
            problems.append(f"{path} differs from the version generated from {src / name}")
    for path in sorted(dst.glob("*.ipynb")):
        if path.name not in expected:
            problems.append(f"{path} has no solution notebook in {src}")
    return problems


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--src", type=Path, default=Path("solutions"))
    parser.add_argument("--dst", type=Path, default=Path("notebooks"))
    parser.add_argument("--check", action="store_true", help="only report differences")
    args = parser.parse_args(argv)
    if args.check:
        problems = out_of_sync(args.src, args.dst)
        for problem in problems:
            print(f"OUT OF SYNC: {problem}")
        if problems:
            print("Run `make notebooks` to regenerate notebooks/ from solutions/.")
            return 1
        print(f"notebooks in sync: {len(list(args.src.glob('*.ipynb')))} notebooks")
        return 0
    for path in write_all(args.src, args.dst):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
