"""The appendix notebook A1 is registered wherever the course lists its notebooks.

Every place enumerates notebooks by globbing ``solutions/*.ipynb`` (the Makefile, ``.ci/run``,
``run_notebooks``, ``make_student``, nbval), except two tables: :mod:`course_lib.course_map`
(chapters and appendices) and the README's course map. These tests keep the tables and the folders
in step, and pin what A1 promises: it runs on the fake release of the library (the one the
command's tests use) unless ``COURSE_QVH_RELEASE`` names a real one, and it makes no GPU claim.
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat

from course_lib import project
from course_lib.authoring.make_student import chapter_number
from course_lib.course_map import APPENDICES, CHAPTERS

ROOT = Path(__file__).resolve().parents[2]
A1 = "A1_qvhighlights_on_a_gpu.ipynb"


def _prefixes(folder: str) -> set[str]:
    return {path.name.split("_", 1)[0] for path in (ROOT / folder).glob("*.ipynb")}


def test_course_map_tables_and_notebook_folders_agree():
    numbers = [c.number for c in CHAPTERS + APPENDICES]
    assert len(numbers) == len(set(numbers))
    assert _prefixes("solutions") == _prefixes("notebooks") == set(numbers)
    assert [c.number for c in APPENDICES] == ["A1"]
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for chapter in CHAPTERS + APPENDICES:
        (path,) = (ROOT / "notebooks").glob(f"{chapter.number}_*.ipynb")
        row = f"| {chapter.number} | [{chapter.title}](notebooks/{path.name})"
        assert row in readme, row
        assert project.colab_url("notebooks", path.name) in readme


def test_the_appendix_label_keeps_its_letter():
    assert chapter_number(Path(A1)) == "A1"
    assert chapter_number(Path("00b_toyworld.ipynb")) == "0b"  # chapters unchanged
    assert chapter_number(Path("07_x.ipynb")) == "7"


def test_a1_follows_the_notebook_conventions_and_runs_on_the_library_fake_release():
    nb = nbformat.read(ROOT / "solutions" / A1, as_version=4)
    title = nb.cells[0].source
    assert title.startswith("# A1 · Reproduce COREBA on QVHighlights on a GPU")
    assert project.colab_badge("solutions", A1) in title
    assert "unmeasured on a T4 here" in title
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    assert f'REPO_URL = "{project.REPOSITORY}"' in code
    assert "from course_lib.qvhighlights.fake_release import write_fake_release" in code
    assert 'os.environ.get("COURSE_QVH_RELEASE"' in code
    for step in ("train", "predict", "eval"):
        assert re.search(rf'qvh\("{step}"', code), step
    # every code cell ran and kept its output (nbval compares them); timing cells are tagged
    for cell in (c for c in nb.cells if c.cell_type == "code"):
        assert cell.execution_count is not None
        if "TIMES.items()" in cell.source or 'qvh("train"' in cell.source:
            assert "nbval-ignore-output" in cell.metadata.get("tags", []), cell.source[:60]
    text = "\n".join(c.source for c in nb.cells)
    assert not re.search(r"\b[0-9a-f]{64}\b", text)  # no checksum typed into the notebook


def test_the_readme_links_the_appendix_from_the_qvhighlights_section():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    after = readme.split("## Reproduce COREBA on QVHighlights on a GPU", 1)[1]
    section = after.split("\n## ", 1)[0]
    assert f"(notebooks/{A1})" in section
    assert "unmeasured on a T4" in section and "not measured yet" not in readme
