"""Packaging: one repository setting for every link, the install extras, and wheel installs.

* The Colab badges, the clone cells' ``REPO_URL`` and the README's Colab links all come from
  :mod:`course_lib.project`; rewriting them from the setting changes no committed byte.
* ``pyproject.toml``: the library's runtime dependencies hold no notebook tools and no faiss
  build; the Makefile installs the extras that the tests and notebooks need.
* ``setup_check`` reports a wheel install's missing ``data/`` instead of ``[OK]``.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")
from packaging.requirements import Requirement

from course_lib import env, project, setup_check
from course_lib.authoring import make_student
from course_lib.authoring.links import (
    COLAB_LINK,
    REPO_URL_LINE,
    notebook_link_problems,
    readme_link_problems,
    relink_notebook,
)

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
FOLDERS = (make_student.SOLUTIONS_FOLDER, make_student.NOTEBOOKS_FOLDER)
NOTEBOOK_TOOLS = {"jupyterlab", "nbclient", "nbformat", "ipykernel", "ipywidgets"}
FAISS_BUILDS = {"faiss-cpu", "faiss-gpu-cu12"}


def _name(requirement: str) -> str:
    """Normalised project name of a requirement string (``open_clip_torch>=2`` -> ``open-clip-torch``)."""
    return re.sub(r"[-_.]+", "-", Requirement(requirement).name).lower()


def _committed_notebooks() -> list[tuple[str, Path]]:
    """(folder, path) of every committed solution and student notebook."""
    return [
        (folder, path) for folder in FOLDERS for path in sorted((ROOT / folder).glob("*.ipynb"))
    ]


# --- one repository setting --------------------------------------------------------------------


def test_project_links_are_built_from_the_one_setting():
    slug = project.github_slug()
    assert project.REPOSITORY == f"https://github.com/{slug}"
    assert project.colab_url("notebooks", "00_welcome.ipynb") == (
        f"https://colab.research.google.com/github/{slug}/blob/{project.BRANCH}/notebooks/"
        "00_welcome.ipynb"
    )
    assert project.colab_badge("solutions", "x.ipynb").endswith(
        f"({project.colab_url('solutions', 'x.ipynb')})"
    )


@pytest.mark.parametrize("bad", ["https://gitlab.com/a/b", "https://github.com/only-owner"])
def test_a_repository_that_colab_cannot_open_is_refused(bad):
    with pytest.raises(ValueError, match="owner/name"):
        project.github_slug(bad)


@pytest.mark.parametrize(("folder", "path"), _committed_notebooks(), ids=lambda v: str(v))
def test_relinking_a_committed_notebook_changes_no_byte(folder, path):
    # the badge/REPO_URL rewrite, applied in memory and written as the generator and runner write
    nb = nbformat.read(path, as_version=4)
    assert notebook_link_problems(nb, folder, path.name) == []
    original = path.read_text(encoding="utf-8")
    assert make_student.render_like(relink_notebook(nb, folder), original) == original


@pytest.mark.parametrize(("folder", "path"), _committed_notebooks(), ids=lambda v: str(v))
def test_every_notebook_has_its_badge_and_clone_url(folder, path):
    nb = nbformat.read(path, as_version=4)
    markdown = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    assert project.colab_badge(folder, path.name) in markdown
    assert [m.group("url") for m in REPO_URL_LINE.finditer(code)] == [project.REPOSITORY]


def test_generator_run_into_a_copy_rewrites_no_byte(tmp_path):
    # copy solutions/ and notebooks/, regenerate (relinking the solutions first) and compare bytes
    for folder in FOLDERS:
        shutil.copytree(ROOT / folder, tmp_path / folder)
    src, dst = tmp_path / "solutions", tmp_path / "notebooks"
    assert make_student.main(["--relink", "--src", str(src), "--dst", str(dst)]) == 0
    for folder in FOLDERS:
        for path in sorted((ROOT / folder).glob("*.ipynb")):
            assert (tmp_path / folder / path.name).read_bytes() == path.read_bytes(), path.name


def test_readme_colab_links_follow_the_setting():
    readme = ROOT / "README.md"
    assert readme_link_problems(readme, ROOT / "notebooks") == []
    linked = {m.group("name") for m in COLAB_LINK.finditer(readme.read_text(encoding="utf-8"))}
    assert linked == {path.name for path in (ROOT / "notebooks").glob("*.ipynb")}


def test_check_mode_reports_in_sync_for_the_repository(monkeypatch, capsys):
    monkeypatch.chdir(ROOT)
    assert make_student.main(["--check"]) == 0
    assert "notebooks in sync" in capsys.readouterr().out


def test_a_changed_setting_fails_the_check_until_relinked(tmp_path, monkeypatch, capsys):
    # a fork: copies of the notebooks and README, then another repository in the setting
    for folder in FOLDERS:
        shutil.copytree(ROOT / folder, tmp_path / folder)
    shutil.copy(ROOT / "README.md", tmp_path / "README.md")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(project, "REPOSITORY", "https://github.com/a-fork/moments")
    # 1. every solution, student notebook and README link now differs
    assert make_student.main(["--check"]) == 1
    out = capsys.readouterr().out
    assert "REPO_URL = 'https://github.com/c2f-course" in out and "README.md: Colab link" in out
    assert "notebooks/00_welcome.ipynb differs" in out
    # 2. --relink rewrites solutions and notebooks; only the README (hand-written) still differs
    assert make_student.main(["--relink"]) == 0
    capsys.readouterr()
    assert make_student.main(["--check"]) == 1
    problems = [line for line in capsys.readouterr().out.splitlines() if "OUT OF SYNC" in line]
    assert problems and all("README.md" in line for line in problems)
    welcome = (tmp_path / "notebooks" / "00_welcome.ipynb").read_text(encoding="utf-8")
    assert "github/a-fork/moments/blob/main/notebooks/00_welcome.ipynb" in welcome
    assert 'REPO_URL = \\"https://github.com/a-fork/moments\\"' in welcome


def test_check_names_a_hand_edited_badge_in_a_solution(tmp_path):
    src, dst = tmp_path / "solutions", tmp_path / "notebooks"
    shutil.copytree(ROOT / "solutions", src)
    shutil.copytree(ROOT / "notebooks", dst)
    victim = src / "03_moments_and_metrics.ipynb"
    victim.write_text(
        victim.read_text(encoding="utf-8").replace("/blob/main/solutions/", "/blob/dev/solutions/"),
        encoding="utf-8",
    )
    problems = make_student.out_of_sync(src, dst)
    assert len(problems) == 1 and "solutions/03_moments_and_metrics.ipynb, cell 0" in problems[0]


def test_the_repository_url_is_written_nowhere_else():
    # the URL may appear only in the setting and in the files generated or checked from it
    allowed = {ROOT / "course_lib" / "project.py", ROOT / "README.md"}
    allowed |= {path for _, path in _committed_notebooks()}
    suffixes = {".py", ".md", ".toml", ".txt", ".yml", ".yaml", ".cfg", ".ipynb", ".json", ".sh"}
    skipped = {".git", ".venv", "build", ".cache", "data"}
    found = []
    for path in ROOT.rglob("*"):
        parts = set(path.relative_to(ROOT).parts)
        if parts & skipped or any(part.endswith(".egg-info") for part in parts):
            continue
        if path.is_file() and (path.suffix in suffixes or path.name in {"Makefile", "run"}):
            if project.REPOSITORY in path.read_text(encoding="utf-8", errors="replace"):
                found.append(path)
    assert sorted(set(found) - allowed) == []


# --- dependencies and extras -------------------------------------------------------------------


def _extras() -> dict[str, list[str]]:
    return PYPROJECT["project"]["optional-dependencies"]


def _makefile_extras() -> set[str]:
    """The extras the Makefile's install step asks for (``-e ".[a,b]"``)."""
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    match = re.search(r'pip install [^\n]*-e "\.\[([^\]]+)\]"', makefile)
    assert match, "the Makefile no longer installs the course with extras"
    return {extra.strip() for extra in match.group(1).split(",")}


def _expanded(extras: set[str]) -> set[str]:
    """Project names the given extras install, following ``course_lib[...]`` self-references."""
    names: set[str] = set()
    todo = list(extras)
    while todo:
        for requirement in _extras()[todo.pop()]:
            parsed = Requirement(requirement)
            if _name(requirement) == _name(PYPROJECT["project"]["name"]):
                todo.extend(parsed.extras)
            else:
                names.add(_name(requirement))
    return names


def test_runtime_dependencies_hold_no_notebook_tools_and_no_faiss_build():
    runtime = {_name(r) for r in PYPROJECT["project"]["dependencies"]}
    assert not runtime & NOTEBOOK_TOOLS
    assert not runtime & FAISS_BUILDS
    assert {"torch", "numpy", "open-clip-torch", "safetensors"} <= runtime


def test_extras_split_notebook_tools_and_the_two_faiss_builds():
    extras = _extras()
    assert {_name(r) for r in extras["notebooks"]} == NOTEBOOK_TOOLS
    assert [_name(r) for r in extras["faiss-cpu"]] == ["faiss-cpu"]
    assert [_name(r) for r in extras["faiss-gpu"]] == ["faiss-gpu-cu12"]
    # environment.yml installs `.[dev]` alone: dev must bring the notebook tools and faiss-cpu
    assert {"nbval", "pytest", "hypothesis", "ruff"} | NOTEBOOK_TOOLS | {"faiss-cpu"} <= (
        _expanded({"dev"})
    )


def test_makefile_installs_every_extra_the_tests_and_notebooks_need():
    installed = _makefile_extras()
    assert {"dev", "notebooks", "faiss-cpu"} <= installed
    names = _expanded(installed)
    assert NOTEBOOK_TOOLS | {"nbval", "pytest", "ruff", "faiss-cpu"} <= names
    # never both faiss builds: they overwrite one module
    assert "faiss-gpu-cu12" not in names


def test_constraints_pin_every_direct_requirement_the_makefile_installs():
    pinned = set()
    for line in (ROOT / "constraints.txt").read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            pinned.add(_name(line))
    runtime = {_name(r) for r in PYPROJECT["project"]["dependencies"]}
    assert sorted((runtime | _expanded(_makefile_extras())) - pinned) == []


def test_this_environment_has_every_package_the_makefile_installs():
    missing = []
    for name in sorted(_expanded(_makefile_extras())):
        try:
            importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            missing.append(name)
    assert missing == [], f"not installed: {missing}; run `make setup`"


def test_setup_check_advice_names_existing_extras():
    extras = re.search(r"\.\[([^\]]+)\]", setup_check.EDITABLE_INSTALL).group(1).split(",")
    assert set(extras) <= set(_extras()) and "faiss-gpu" not in extras


# --- setup_check and a wheel's missing data/ ---------------------------------------------------


def test_required_data_files_are_the_library_checkpoints():
    from course_lib.clip.clip_encoder import VIDEO_CHECKPOINT
    from course_lib.clip.encoder import TINY_CHECKPOINT
    from course_lib.experiments import ch05_coreba_toy as ch05

    expected = {TINY_CHECKPOINT, VIDEO_CHECKPOINT, f"{ch05.CHECKPOINT_STEM}.safetensors"}
    assert set(setup_check.REQUIRED_DATA_FILES) == expected
    assert all((ROOT / "data" / name).is_file() for name in expected)
    assert setup_check.data_status().ok


def test_a_wheel_install_reports_the_missing_data_folder(monkeypatch, capsys):
    # an installed wheel has no checkout, so env.data_dir() has nowhere to point
    monkeypatch.setattr(env, "repo_root", lambda: None)
    monkeypatch.delenv(env.DATA_ENV, raising=False)
    assert setup_check.main() == 1
    out = capsys.readouterr().out
    assert "[FAIL] data/" in out and "wheel" in out
    assert all(name in out for name in setup_check.REQUIRED_DATA_FILES)
    assert project.clone_command() in out and setup_check.EDITABLE_INSTALL in out
    assert "[OK]   data/" not in out
    # the other way out: keep the wheel and point COURSE_DATA_DIR at a clone's data/ folder
    assert "point COURSE_DATA_DIR at a clone's data/ folder" in out
    assert 'export COURSE_DATA_DIR="$PWD/data"' in out


def test_a_wheel_install_with_course_data_dir_finds_the_checkpoints(monkeypatch, tmp_path):
    # the wheel (no checkout) reads the checkout's data/ through COURSE_DATA_DIR
    monkeypatch.setattr(env, "repo_root", lambda: None)
    data = tmp_path / "clone" / "data"
    data.mkdir(parents=True)
    for name in setup_check.REQUIRED_DATA_FILES:
        (data / name).write_bytes(b"")
    monkeypatch.setenv(env.DATA_ENV, str(data))
    status = setup_check.data_status()
    assert status.ok and status.folder == data
    assert setup_check.data_report(status)[0].startswith("[OK]   data/")


def test_course_data_dir_naming_no_folder_is_reported_by_name(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv(env.DATA_ENV, str(tmp_path / "nowhere"))
    status = setup_check.data_status()
    assert status.folder is None and "COURSE_DATA_DIR=" in status.problem
    assert setup_check.main() == 1
    out = capsys.readouterr().out
    assert f"[FAIL] data/        COURSE_DATA_DIR='{tmp_path / 'nowhere'}' is not a folder" in out
    assert "-> export COURSE_DATA_DIR=/path/to/" in out
    # a folder that lacks checkpoints says where it came from
    monkeypatch.setenv(env.DATA_ENV, str(tmp_path))
    assert setup_check.main() == 1
    assert f"{tmp_path} (COURSE_DATA_DIR) lacks tiny_clip.safetensors" in capsys.readouterr().out


def test_an_empty_data_folder_lists_every_missing_checkpoint(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(env, "data_dir", lambda: tmp_path)
    status = setup_check.data_status()
    assert not status.ok and status.missing == list(setup_check.REQUIRED_DATA_FILES)
    assert setup_check.main() == 1
    out = capsys.readouterr().out
    assert f"[FAIL] data/        {tmp_path} lacks tiny_clip.safetensors" in out
    assert "git checkout -- data/" in out


def test_two_faiss_builds_fail_the_check(monkeypatch, capsys):
    assert setup_check.faiss_conflict_report(["faiss-cpu"]) == []
    both = ["faiss-cpu", "faiss-gpu-cu12"]
    (line,) = setup_check.faiss_conflict_report(both)
    assert "pip uninstall -y faiss-cpu faiss-gpu-cu12 && pip install faiss-gpu-cu12" in line
    monkeypatch.setattr(setup_check, "installed_faiss", lambda: both)
    assert setup_check.main() == 1
    assert "[FAIL] faiss" in capsys.readouterr().out


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("setuptools") is None, reason="needs setuptools")
def test_a_built_wheel_lacks_data_and_setup_check_says_so(tmp_path):
    # build the wheel offline from a copy of the package, install it into a folder, run the check
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(
        ROOT / "course_lib", source / "course_lib", ignore=shutil.ignore_patterns("__pycache__")
    )
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--quiet"]
    subprocess.run(
        [
            *pip,
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "-w",
            str(tmp_path / "wheel"),
            str(source),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = (tmp_path / "wheel").glob("*.whl")
    subprocess.run(
        [
            *pip,
            "install",
            "--no-deps",
            "--no-index",
            "--target",
            str(tmp_path / "site"),
            str(wheel),
        ],
        check=True,
        capture_output=True,
    )
    code = "import course_lib, course_lib.setup_check as s; print(course_lib.__file__); s.main()"
    run_env = {**os.environ, "PYTHONPATH": str(tmp_path / "site")}
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, env=run_env
    )
    assert result.stdout.startswith(str(tmp_path / "site")), result.stdout + result.stderr
    assert "[FAIL] data/        not found" in result.stdout
