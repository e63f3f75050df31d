"""Execute notebooks headlessly and report one line per notebook (wall time, PASS/FAIL).

Usage::

    python -m course_lib.authoring.run_notebooks                      # solutions/ -> build/solutions/
    python -m course_lib.authoring.run_notebooks --inplace 02_x.ipynb  # refresh stored outputs

Without ``--inplace`` the committed notebooks are never modified: executed copies go to the
output directory. Cells tagged ``raises-exception`` may raise; any other error fails the notebook.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

from course_lib.files import atomic_write


@dataclass
class RunResult:
    """Outcome of executing one notebook."""

    name: str
    seconds: float
    ok: bool
    error: str = ""


def execute_notebook(path: Path, out_path: Path, timeout_s: int = 600) -> RunResult:
    """Execute ``path`` with its own directory as working directory and write it to ``out_path``.

    Args:
        path: notebook to run.
        out_path: where the executed notebook is written (may equal ``path``).
        timeout_s: limit for one cell.

    Returns:
        A :class:`RunResult`; errors are caught and summarised, never raised.
    """
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb,
        timeout=timeout_s,
        kernel_name="python3",
        resources={"metadata": {"path": str(path.parent.resolve())}},
    )
    start = time.perf_counter()
    try:
        client.execute()
        ok, error = True, ""
    except (CellExecutionError, CellTimeoutError, DeadKernelError) as exc:
        ok, error = False, _first_line_of_error(exc)
    seconds = time.perf_counter() - start
    with atomic_write(out_path, "w") as handle:
        handle.write(nbformat.writes(nb) + "\n")
    return RunResult(path.name, seconds, ok, error)


def _first_line_of_error(exc: Exception) -> str:
    """The most telling line of an nbclient error (the exception name and message)."""
    lines = [line for line in str(exc).splitlines() if line.strip()]
    for line in reversed(lines):
        if "Error" in line or "Exception" in line:
            return line.strip()[:300]
    return lines[-1][:300] if lines else type(exc).__name__


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; exit status 1 if any notebook failed."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("names", nargs="*", help="notebook file names (default: all)")
    parser.add_argument("--src", type=Path, default=Path("solutions"))
    parser.add_argument("--out", type=Path, default=Path("build/solutions"))
    parser.add_argument("--inplace", action="store_true", help="write outputs into --src")
    parser.add_argument("--timeout", type=int, default=600, help="seconds per cell")
    args = parser.parse_args(argv)
    paths = [args.src / n for n in args.names] if args.names else sorted(args.src.glob("*.ipynb"))
    if not paths:
        print(f"no notebooks found in {args.src}")
        return 1
    results = []
    for path in paths:
        target = path if args.inplace else args.out / path.name
        result = execute_notebook(path, target, timeout_s=args.timeout)
        status = "PASS" if result.ok else "FAIL"
        print(f"{status}  {result.name:<40} {result.seconds:7.1f} s  {result.error}", flush=True)
        results.append(result)
    failed = [r for r in results if not r.ok]
    total = sum(r.seconds for r in results)
    print(f"{len(results) - len(failed)} passed, {len(failed)} failed in {total:.1f} s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
