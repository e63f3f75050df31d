"""Tests for the exercise generator and the notebooks/ <-> solutions/ sync check."""

import shutil
from pathlib import Path

import nbformat
import pytest

from course_lib.authoring.make_student import (
    chapter_number,
    make_student_notebook,
    out_of_sync,
    strip_solutions,
    write_all,
)
from course_lib.errors import NotebookFormatError

ROOT = Path(__file__).resolve().parents[2]
EXERCISE = '''def cosine(a, b):
    """Cosine similarity."""
    ### BEGIN SOLUTION
    a = a / a.norm()
    return a @ b
    ### END SOLUTION
'''


def _notebook(tmp_path: Path, name: str, sources: list[str]) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("[badge](https://x/blob/main/solutions/a.ipynb)")]
    for source in sources:
        cell = nbformat.v4.new_code_cell(source)
        cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text="old output\n")]
        cell.execution_count = 3
        nb.cells.append(cell)
    path = tmp_path / name
    nbformat.write(nb, path)
    return path


def test_block_becomes_named_stub_keeping_indentation():
    source, labels = strip_solutions(EXERCISE, "nb, cell 1", "2", 1)
    assert labels == ["Exercise 2.1: cosine"]
    assert '    raise NotImplementedError("Exercise 2.1: cosine")' in source
    assert "a.norm()" not in source and '"""Cosine similarity."""' in source


def test_explicit_name_and_numbering_across_cells(tmp_path):
    second = "x = 1\n### BEGIN SOLUTION: top-level answer\ny = 2\n### END SOLUTION"
    path = _notebook(tmp_path, "03_metrics.ipynb", [EXERCISE, "print(1)", second])
    student, exercises = make_student_notebook(path)
    assert [(e.number, e.name) for e in exercises] == [
        ("3.1", "cosine"),
        ("3.2", "top-level answer"),
    ]
    code = [c for c in student.cells if c.cell_type == "code"]
    assert all(c.outputs == [] and c.execution_count is None for c in code)
    assert "raises-exception" in code[0].metadata["tags"]
    assert "tags" not in code[1].metadata
    assert "/blob/main/notebooks/" in student.cells[0].source


def test_run_timestamps_are_dropped(tmp_path):
    path = _notebook(tmp_path, "02_sim.ipynb", ["print(1)"])
    nb = nbformat.read(path, as_version=4)
    nb.cells[1].metadata["execution"] = {"iopub.execute_input": "2026-12-01T12:00:00Z"}
    nb.cells[1].metadata["tags"] = ["nbval-ignore-output"]
    nbformat.write(nb, path)
    student, _ = make_student_notebook(path)
    assert "execution" not in student.cells[1].metadata
    assert student.cells[1].metadata["tags"] == ["nbval-ignore-output"]  # other metadata stays


def test_saved_widget_state_is_dropped(tmp_path):
    path = _notebook(tmp_path, "07_engine.ipynb", ["print(1)"])
    nb = nbformat.read(path, as_version=4)
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {"m": {}}}}
    nbformat.write(nb, path)
    student, _ = make_student_notebook(path)
    assert "widgets" not in student.metadata
    assert "widgets" in nbformat.read(path, as_version=4).metadata  # the solution keeps it


@pytest.mark.parametrize(
    ("source", "words"),
    [
        ("### BEGIN SOLUTION\nx = 1", "has no '### END SOLUTION'"),
        ("x = 1\n### END SOLUTION", "without a '### BEGIN SOLUTION'"),
        ("### BEGIN SOLUTION\n### BEGIN SOLUTION\n### END SOLUTION", "nested"),
    ],
)
def test_malformed_markers_name_notebook_and_cell(tmp_path, source, words):
    path = _notebook(tmp_path, "05_bad.ipynb", ["print(0)", source])
    with pytest.raises(NotebookFormatError, match=words) as info:
        make_student_notebook(path)
    assert "05_bad.ipynb, cell 2" in str(info.value)


def test_generator_is_idempotent(tmp_path):
    src, dst = tmp_path / "solutions", tmp_path / "notebooks"
    src.mkdir()
    _notebook(src, "01_x.ipynb", [EXERCISE])
    write_all(src, dst)
    first = (dst / "01_x.ipynb").read_bytes()
    write_all(src, dst)
    assert (dst / "01_x.ipynb").read_bytes() == first
    assert out_of_sync(src, dst) == []


def test_chapter_numbers():
    assert chapter_number(Path("00_welcome.ipynb")) == "0"
    assert chapter_number(Path("00b_toyworld.ipynb")) == "0b"
    assert chapter_number(Path("12_x.ipynb")) == "12"


def test_committed_notebooks_are_in_sync_with_solutions():
    problems = out_of_sync(ROOT / "solutions", ROOT / "notebooks")
    assert problems == [], "\n".join(problems) + "\nRun `make notebooks`."


def test_sync_check_catches_a_hand_edited_student_notebook(tmp_path):
    notebooks = tmp_path / "notebooks"
    shutil.copytree(ROOT / "notebooks", notebooks)
    victim = sorted(notebooks.glob("*.ipynb"))[0]
    nb = nbformat.read(victim, as_version=4)
    nb.cells[-1].source += "\n# a hand edit"
    nbformat.write(nb, victim)
    problems = out_of_sync(ROOT / "solutions", notebooks)
    assert len(problems) == 1 and victim.name in problems[0]


def test_sync_check_catches_missing_and_orphan_notebooks(tmp_path):
    notebooks = tmp_path / "notebooks"
    shutil.copytree(ROOT / "notebooks", notebooks)
    victim = sorted(notebooks.glob("*.ipynb"))[0]
    victim.rename(notebooks / "99_orphan.ipynb")
    problems = "\n".join(out_of_sync(ROOT / "solutions", notebooks))
    assert "is missing" in problems and "99_orphan.ipynb has no solution" in problems
