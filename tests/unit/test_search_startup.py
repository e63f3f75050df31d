"""``python -m course_lib.search`` answers ``--help`` and argument errors without heavy imports.

Behavioural, not timed: each test runs the CLI in a fresh interpreter through :mod:`runpy` and
reports which heavy modules ended up in ``sys.modules``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

HEAVY = ("torch", "open_clip", "faiss", "av", "pandas")

#: Runs the CLI as ``python -m course_lib.search ARGS`` would, then prints its exit code and the
#: heavy modules it imported as one JSON line.
PROBE = """
import json, runpy, sys
args, heavy_names = json.loads(sys.argv[1]), json.loads(sys.argv[2])
sys.argv = ["course_lib.search", *args]
try:
    runpy.run_module("course_lib.search", run_name="__main__", alter_sys=True)
    code = 0
except SystemExit as exc:
    code = exc.code
heavy = [m for m in heavy_names if m in sys.modules]
print(json.dumps({"code": code, "heavy": heavy}))
"""


def _probe(*args: str) -> dict:
    """Run the CLI with ``args`` in a subprocess.

    Args:
        args: command-line arguments after ``python -m course_lib.search``.

    Returns:
        ``{"code": exit code, "heavy": heavy modules imported}``.
    """
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COURSE_OFFLINE": "1"}
    cmd = [sys.executable, "-c", PROBE, json.dumps(list(args)), json.dumps(HEAVY)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(
    "args",
    [
        ("--help",),
        ("query", "--help"),
        ("index", "--help"),
        ("query", "some_index", "a query", "-k", "0"),  # bad argument: exit 2
        ("frobnicate",),  # unknown sub-command: exit 2
    ],
    ids=["help", "query-help", "index-help", "bad-k", "bad-command"],
)
def test_help_and_argument_errors_import_no_heavy_module(args: tuple[str, ...]) -> None:
    result = _probe(*args)
    assert result["code"] == (0 if "--help" in args else 2)
    assert result["heavy"] == [], f"{args} imported {result['heavy']}"


def test_package_import_is_lazy_but_names_resolve() -> None:
    code = (
        "import sys, course_lib.search as s; before = 'torch' in sys.modules; "
        "from course_lib.search import VIDEO_EXTENSIONS; "
        "print(before, 'torch' in sys.modules, '.mp4' in VIDEO_EXTENSIONS)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    # neither the package nor its build module (manifest, discovery) imports torch
    assert proc.stdout.split() == ["False", "False", "True"]


def test_unknown_package_attribute_is_an_attribute_error() -> None:
    import course_lib.search

    with pytest.raises(AttributeError, match="no_such_name"):
        course_lib.search.no_such_name  # noqa: B018
    assert "MomentSearch" in dir(course_lib.search)
