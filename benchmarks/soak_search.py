"""Soak test of one search index folder under concurrent builds, adds and queries.

Writes a few short toy-world videos as mp4 files into a folder and indexes them once, then runs,
for ``--seconds`` seconds, in separate processes at the same time:

* builders (``--builders``, default 2): ``MomentSearch.build(folder, index)`` again and again;
* adders (``--adders``, default 1): write a new video into the folder, ``MomentSearch.load`` the
  index and ``add`` the file, again and again;
* queriers (``--queriers``, default 1): ``MomentSearch.load`` and ``search``, again and again,
  checking that each load got files that belong together (index videos = the manifest's record,
  no index rebuilt because of a checksum mismatch).

At the end it checks, without building again, that every video file of the folder is indexed
once, with its own features (:func:`course_lib.search.engine.audit_index`), prints each check,
the number of operations of each kind and every violation, and exits 1 on any violation.

    .venv/bin/python benchmarks/soak_search.py --seconds 60
    .venv/bin/python benchmarks/soak_search.py --seconds 600 --builders 3 --adders 2 --queriers 2
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import tempfile
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

N_FIRST = 4  # videos in the folder before the soak starts
SECONDS_PER_VIDEO = 6  # short videos: many operations per minute
QUERIES = ("a red circle moves left", "the green triangle grows", "a blue square appears")


def write_toy(path: Path, index: int) -> Path:
    """A short mp4 of toy video ``index`` (2 fps, 64 px); each index has its own content."""
    from course_lib import toyworld
    from course_lib.video import write_video

    frames, _ = toyworld.render(toyworld.make_vid("val", "c", 0, index), fps=2, size=64)
    return write_video(path, frames[: 2 * SECONDS_PER_VIDEO], fps=2)


def _encoder():
    """The tiny CLIP on the CPU, one torch thread (the soak's processes share the cores)."""
    import torch

    from course_lib.clip import ClipEncoder

    torch.set_num_threads(1)
    return ClipEncoder.tiny(device="cpu", progress=False)


def _build_once(encoder, folder: Path, out: Path, worker: int, n: int) -> None:
    """One builder step: index the whole folder."""
    from course_lib.search import MomentSearch

    MomentSearch.build(folder, out, encoder=encoder, progress=False)


def _add_once(encoder, folder: Path, out: Path, worker: int, n: int) -> None:
    """One adder step: a new video file in the folder, added to a freshly loaded engine."""
    from course_lib.search import MomentSearch

    path = write_toy(folder / "added" / f"w{worker}-{n}.mp4", 1000 * (worker + 1) + n)
    engine = MomentSearch.load(out, encoder=encoder)
    engine.add([path], progress=False)
    if f"added/{path.name}" not in engine.vids:
        raise AssertionError(f"{path} is not in the index right after add()")


def _query_once(encoder, folder: Path, out: Path, worker: int, n: int) -> None:
    """One querier step: load the folder, check the snapshot, search."""
    from course_lib.search import MomentSearch

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        engine = MomentSearch.load(out, encoder=encoder)
    torn = [str(w.message) for w in caught if "rebuilding" in str(w.message)]
    if torn:
        raise AssertionError(f"a load read files that do not belong together: {torn[0]}")
    if sorted(engine.vids) != sorted(engine.manifest["index"]["vids"]):
        raise AssertionError("loaded index and manifest record list different videos")
    if not set(engine.vids) <= set(engine.manifest["videos"]):
        raise AssertionError("the loaded index holds a video the manifest does not list")
    engine.search(QUERIES[n % len(QUERIES)], k=3, thumbnails=False)


STEPS = {"build": _build_once, "add": _add_once, "query": _query_once}


def worker(role: str, index: int, folder: str, out: str, deadline: float) -> dict:
    """Repeat one role's step until ``deadline`` (``time.time()``); returns counts and errors."""
    encoder = _encoder()
    step, done, errors = STEPS[role], 0, []
    while time.time() < deadline:
        try:
            step(encoder, Path(folder), Path(out), index, done)
        except Exception as exc:  # every failure is a violation: record it and go on
            errors.append(f"{role} #{index}, step {done}: {type(exc).__name__}: {exc}")
        done += 1
    return {"role": role, "ops": done, "errors": errors}


def video_files(folder: Path) -> list[Path]:
    """Every (non-hidden) mp4 file under the folder."""
    return sorted(p for p in folder.rglob("*.mp4") if not p.name.startswith("."))


def run(seconds: float, builders: int, adders: int, queriers: int, work: Path) -> int:
    """Prepare the folder, soak it, audit it; returns the exit code (1 on a violation)."""
    from course_lib.search import MomentSearch
    from course_lib.search.engine import audit_index

    folder, out = work / "videos", work / "index"
    for i in range(N_FIRST):
        write_toy(folder / f"first{i}.mp4", i)
    encoder = _encoder()
    MomentSearch.build(folder, out, encoder=encoder, progress=False)
    roles = ["build"] * builders + ["add"] * adders + ["query"] * queriers
    deadline = time.time() + seconds
    print(
        f"soak: {len(roles)} processes ({builders} build, {adders} add, {queriers} query) "
        f"for {seconds:g} s on {out}"
    )
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(len(roles), mp_context=ctx) as pool:
        jobs = [
            pool.submit(worker, role, roles[:i].count(role), str(folder), str(out), deadline)
            for i, role in enumerate(roles)
        ]
        results = [job.result() for job in jobs]
    for role in STEPS:
        ops = sum(r["ops"] for r in results if r["role"] == role)
        print(f"  {role}: {ops} operations")
    report = audit_index(out, video_files(folder), encoder)
    problems = [e for r in results for e in r["errors"]] + report.problems
    for line in report.checked:
        print(f"checked: {line}")
    for line in problems:
        print(f"VIOLATION: {line}")
    print(f"{len(problems)} violations")
    return 1 if problems else 0


def main(argv: list[str] | None = None) -> int:
    """Parse the arguments and run the soak in a temporary folder (or ``--work``)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="duration of the soak")
    parser.add_argument("--builders", type=int, default=2, help="processes running build")
    parser.add_argument("--adders", type=int, default=1, help="processes running add")
    parser.add_argument("--queriers", type=int, default=1, help="processes running queries")
    parser.add_argument("--work", default=None, help="folder for videos and index (kept)")
    args = parser.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # inherited by the spawned processes
    from course_lib.env import pin_cpu_numerics

    pin_cpu_numerics()
    if args.work is not None:
        return run(args.seconds, args.builders, args.adders, args.queriers, Path(args.work))
    with tempfile.TemporaryDirectory(prefix="soak_search_") as tmp:
        return run(args.seconds, args.builders, args.adders, args.queriers, Path(tmp))


if __name__ == "__main__":
    sys.exit(main())
