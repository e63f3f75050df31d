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
exercise cells ``raises-exception`` (so nbval accepts the stub's error) and writes the Colab
badge and the clone cell's ``REPO_URL`` from the one setting in :mod:`course_lib.project`, the
badge opening notebooks/. Running it twice gives byte-identical files.

``--check`` also fails when a solution notebook or the README names another repository, branch
or folder in a Colab link or ``REPO_URL`` than :mod:`course_lib.project` says (after changing the
setting, ``--relink`` rewrites the solutions' links in place and regenerates notebooks/).

Usage::

    python -m course_lib.authoring.make_student            # write notebooks/
    python -m course_lib.authoring.make_student --check    # exit 1 if anything is out of sync
    python -m course_lib.authoring.make_student --relink   # solutions' links, then notebooks/
"""

from __future__ import annotations

import argparse
import copy
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import nbformat

from course_lib import project
from course_lib.authoring.links import (
    notebook_link_problems,
    readme_link_problems,
    relink_notebook,
)
from course_lib.errors import NotebookFormatError
from course_lib.files import atomic_write

BEGIN = "### BEGIN SOLUTION"
END = "### END SOLUTION"
STUB_TAG = "raises-exception"
#: The repository folders the Colab badges open (solutions keep theirs, students get notebooks/).
SOLUTIONS_FOLDER = "solutions"
NOTEBOOKS_FOLDER = "notebooks"
_DEF = re.compile(r"^\s*(?:async\s+)?def\s+([A-Za-z_]\w*)\s*\(")


@dataclass
class Exercise:
    """One solution block found in a notebook."""

    number: str  # "N.M"
    name: str
    cell_index: int


def chapter_number(notebook: Path) -> str:
    """Chapter label from the file name: ``03_metrics.ipynb`` -> ``"3"``, ``00b_x`` -> ``"0b"``,
    an appendix ``A1_x`` -> ``"A1"``."""
    prefix = notebook.stem.split("_", 1)[0]
    if prefix[:1].isalpha():  # appendices (course_lib.course_map.APPENDICES) keep their letter
        return prefix
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
            cell.source = cell.source.replace(
                f"/blob/{project.BRANCH}/{SOLUTIONS_FOLDER}/",
                f"/blob/{project.BRANCH}/{NOTEBOOKS_FOLDER}/",
            )
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
    # the badge and the clone cell's REPO_URL come from the one setting in course_lib.project
    relink_notebook(student, NOTEBOOKS_FOLDER)
    return student, exercises


def render_notebook(nb: nbformat.NotebookNode) -> str:
    """Canonical text of a notebook (what is written to disk)."""
    return nbformat.writes(nb) + "\n"


def render_like(nb: nbformat.NotebookNode, original: str) -> str:
    """Text of ``nb`` ending as ``original`` does (the runner adds a final newline, nbformat not)."""
    text = nbformat.writes(nb)
    return text + "\n" if original.endswith("\n") else text


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


def solution_link_problems(src: Path) -> list[str]:
    """Colab links and ``REPO_URL`` lines of ``src/*.ipynb`` that differ from the setting."""
    problems: list[str] = []
    for path in sorted(src.glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        problems += notebook_link_problems(nb, SOLUTIONS_FOLDER, path.name)
    return problems


def out_of_sync(src: Path, dst: Path) -> list[str]:
    """List the differences between ``dst`` and what the generator would write (empty = in sync).

    Also lists every Colab link or ``REPO_URL`` of the solutions in ``src`` that differs from
    :mod:`course_lib.project` (the student copies are compared byte for byte, links included).
    """
    expected = generate(src, dst)
    # 1. the solutions' own badges and clone cells follow the setting
    problems = solution_link_problems(src)
    # 2. every student notebook is exactly what the generator writes
    for name, text in expected.items():
        path = dst / name
        if not path.exists():
            problems.append(f"{path} is missing")
        elif path.read_text(encoding="utf-8") != text:
            problems.append(f"{path} differs from the version generated from {src / name}")
    # 3. and has a solution to be generated from
    for path in sorted(dst.glob("*.ipynb")):
        if path.name not in expected:
            problems.append(f"{path} has no solution notebook in {src}")
    return problems


def relink_solutions(src: Path) -> list[Path]:
    """Rewrite the Colab links and ``REPO_URL`` of each solution that differs from the setting.

    Only notebooks with a differing link are written (as ``nbformat`` writes them), so with the
    links already right no file is touched. Returns the paths written.
    """
    written = []
    for path in sorted(src.glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        # 1. leave a solution whose links are right alone
        if not notebook_link_problems(nb, SOLUTIONS_FOLDER, path.name):
            continue
        # 2. otherwise rewrite its badge and clone cell, keeping every other cell as it is
        text = render_like(relink_notebook(nb, SOLUTIONS_FOLDER), path.read_text(encoding="utf-8"))
        with atomic_write(path, "w") as handle:
            handle.write(text)
        written.append(path)
    return written


def _check(src: Path, dst: Path, readme: Path) -> int:
    """``--check``: print every difference; 0 when notebooks/, solutions/ and README agree."""
    problems = out_of_sync(src, dst)
    if readme.is_file():
        problems += readme_link_problems(readme, dst)
    for problem in problems:
        print(f"OUT OF SYNC: {problem}")
    if problems:
        print(
            "Run `make notebooks` to regenerate notebooks/ from solutions/; for Colab links or "
            "REPO_URL, set the repository in course_lib/project.py and run "
            "`python -m course_lib.authoring.make_student --relink` (README links by hand)."
        )
        return 1
    print(f"notebooks in sync: {len(list(src.glob('*.ipynb')))} notebooks")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--src", type=Path, default=Path("solutions"))
    parser.add_argument("--dst", type=Path, default=Path("notebooks"))
    parser.add_argument("--readme", type=Path, default=Path("README.md"))
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true", help="only report differences")
    mode.add_argument(
        "--relink", action="store_true", help="first rewrite the solutions' Colab links/REPO_URL"
    )
    args = parser.parse_args(argv)
    if args.check:
        return _check(args.src, args.dst, args.readme)
    if args.relink:
        for path in relink_solutions(args.src):
            print(f"relinked {path}")
    for path in write_all(args.src, args.dst):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
