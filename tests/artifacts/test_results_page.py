"""RESULTS.md is generated from the committed result files and stays in sync with them."""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "make_results.py"
#: The result files the page is generated from (weights files are not needed).
RESULT_PATTERNS = ("*.json", "*.csv", "*.sha256", "README.md")


@pytest.fixture(scope="module")
def make_results() -> ModuleType:
    """scripts/make_results.py imported by path (scripts/ is not a package; it imports its sibling
    ``data_index`` as it does when run from the shell)."""
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        spec = importlib.util.spec_from_file_location("make_results", SCRIPT)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(SCRIPT.parent))
    return module


def copy_results(src: Path, dst: Path) -> None:
    """Copy the result files of ``src`` (a data/ directory) to ``dst``, keeping subfolders."""
    for pattern in RESULT_PATTERNS:
        for path in src.rglob(pattern):
            target = dst / path.relative_to(src)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)


def test_results_page_matches_committed_files(make_results):
    expected = make_results.render(REPO / "data")
    current = (REPO / "RESULTS.md").read_text(encoding="utf-8")
    assert current == expected, "RESULTS.md is out of date: run `python scripts/make_results.py`"


def test_changed_result_changes_page_and_fails_check(make_results, tmp_path):
    data = tmp_path / "data"
    copy_results(REPO / "data", data)
    page = tmp_path / "RESULTS.md"
    assert make_results.main(["--data", str(data), "--out", str(page)]) == 0
    before = page.read_text(encoding="utf-8")
    assert before == make_results.render(REPO / "data")  # the copy reads like the original
    assert make_results.main(["--data", str(data), "--out", str(page), "--check"]) == 0

    run_file = data / "coreba_toy.json"
    run = json.loads(run_file.read_text(encoding="utf-8"))
    run["test_metrics"]["MR-full-mAP"] = 98.76
    run_file.write_text(json.dumps(run, indent=2), encoding="utf-8")

    after = make_results.render(data)
    assert after != before
    assert "98.76" in after and "98.76" not in before
    assert make_results.main(["--data", str(data), "--out", str(page), "--check"]) == 1
    assert page.read_text(encoding="utf-8") == before  # --check never writes
