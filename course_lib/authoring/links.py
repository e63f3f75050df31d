"""Colab badges and clone-cell URLs in notebooks and the README, written and checked from one setting.

The setting is :data:`course_lib.project.REPOSITORY` (with :data:`~course_lib.project.BRANCH`).
Two kinds of text carry it:

* a **Colab link** ``https://colab.research.google.com/github/<owner>/<name>/blob/<branch>/<folder>/
  <file>.ipynb`` in a Markdown cell (the badge) or in the README (the course map's Colab column);
* the **clone cell**'s ``REPO_URL = "..."`` line in a code cell.

:func:`relink_notebook` rewrites both to the setting; :func:`notebook_link_problems` and
:func:`readme_link_problems` list what differs from it (``make sync`` fails on any). With the links
already as the setting says, rewriting changes no character, so regenerating changes no byte.
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat

from course_lib import project

#: A Colab link to a notebook of a GitHub repository (any owner, branch and folder).
COLAB_LINK = re.compile(
    r"https://colab\.research\.google\.com/github/"
    r"(?P<slug>[\w.-]+/[\w.-]+)/blob/(?P<branch>[\w.-]+)/(?P<folder>[\w.-]+)/"
    r"(?P<name>[\w.-]+\.ipynb)"
)
#: The clone cell's ``REPO_URL = "..."`` assignment (single or double quotes).
REPO_URL_LINE = re.compile(
    r"^(?P<lead>[ \t]*REPO_URL[ \t]*=[ \t]*)(?P<quote>[\"'])(?P<url>[^\"'\n]*)(?P=quote)",
    re.MULTILINE,
)


def relink_markdown(text: str, folder: str) -> str:
    """Point every Colab link in ``text`` at ``folder`` of the configured repository and branch.

    Args:
        text: Markdown (a notebook cell or the README).
        folder: the folder the links must open, ``"notebooks"`` or ``"solutions"``.
    """
    return COLAB_LINK.sub(lambda m: project.colab_url(folder, m.group("name")), text)


def relink_code(source: str) -> str:
    """Set every ``REPO_URL = "..."`` line of a code cell to the configured repository."""
    return REPO_URL_LINE.sub(
        lambda m: f"{m.group('lead')}{m.group('quote')}{project.REPOSITORY}{m.group('quote')}",
        source,
    )


def relink_notebook(nb: nbformat.NotebookNode, folder: str) -> nbformat.NotebookNode:
    """Rewrite the Colab links and ``REPO_URL`` lines of ``nb`` in place; returns ``nb``.

    Args:
        nb: the notebook.
        folder: the folder the notebook lives in (its badge opens that folder's copy).
    """
    for cell in nb.cells:
        # 1. Markdown cells carry the badge
        if cell.cell_type == "markdown":
            cell.source = relink_markdown(cell.source, folder)
        # 2. code cells carry the clone cell's REPO_URL
        elif cell.cell_type == "code":
            cell.source = relink_code(cell.source)
    return nb


def _colab_problems(text: str, folder: str, where: str) -> list[str]:
    """One line per Colab link in ``text`` that differs from the setting."""
    problems = []
    for match in COLAB_LINK.finditer(text):
        expected = project.colab_url(folder, match.group("name"))
        if match.group(0) != expected:
            problems.append(f"{where}: Colab link {match.group(0)} should be {expected}")
    return problems


def _repo_url_problems(source: str, where: str) -> list[str]:
    """One line per ``REPO_URL`` assignment in ``source`` that differs from the setting."""
    return [
        f"{where}: REPO_URL = {match.group('url')!r} should be {project.REPOSITORY!r}"
        for match in REPO_URL_LINE.finditer(source)
        if match.group("url") != project.REPOSITORY
    ]


def notebook_link_problems(nb: nbformat.NotebookNode, folder: str, name: str) -> list[str]:
    """Every Colab link and ``REPO_URL`` of ``nb`` that differs from :mod:`course_lib.project`.

    Args:
        nb: the notebook.
        folder: the folder it lives in (``"notebooks"`` or ``"solutions"``).
        name: its file name, used in the messages.
    """
    problems: list[str] = []
    for index, cell in enumerate(nb.cells):
        where = f"{folder}/{name}, cell {index}"
        if cell.cell_type == "markdown":
            problems += _colab_problems(cell.source, folder, where)
        elif cell.cell_type == "code":
            problems += _repo_url_problems(cell.source, where)
    return problems


def readme_link_problems(readme: Path, notebooks: Path | None = None) -> list[str]:
    """Colab links of the README that differ from the setting or open a notebook that is missing.

    Args:
        readme: the README file.
        notebooks: the student notebook folder; when given, each linked file must exist there.
    """
    text = readme.read_text(encoding="utf-8")
    # 1. each link must be the one the setting gives for notebooks/<name>
    problems = _colab_problems(text, "notebooks", readme.name)
    # 2. and must open a notebook that exists
    if notebooks is not None:
        for match in COLAB_LINK.finditer(text):
            if not (notebooks / match.group("name")).is_file():
                problems.append(f"{readme.name}: Colab link to a missing {match.group('name')}")
    return problems
