"""Helpers shared by the fault-injection tests of issue #21 (``tests/unit/test_faults_*.py``,
``test_readers_fail_clearly.py`` and ``test_search_reliability.py``).

Bad input and timing: :func:`good_record`, :func:`returns_within` (fail instead of hanging),
:func:`peak_allocation`, :func:`saved_run`. Index folders: :func:`write_toy`, :func:`two_folders`,
:func:`cli_index`, :func:`hold_lock` and the check that nothing was lost,
:func:`assert_every_video_indexed_with_its_features`; and the ``encoder`` fixture
(:func:`encoder_fixture`: a module imports it to use it).
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from course_lib import toyworld
from course_lib.clip import ClipEncoder
from course_lib.search.engine import audit_index
from course_lib.training.checkpoint import save_training_state
from course_lib.training.config import MomentTrainingConfig
from course_lib.video import write_video

MiB = 2**20
#: Three toy-world videos (ids the search engine renders itself).
TOY = [toyworld.make_vid("val", "c", 0, i) for i in range(3)]
#: Environment of a command-line run in a new process: offline, on the CPU, one thread.
CLI_ENV = {**os.environ, "OMP_NUM_THREADS": "1", "COURSE_OFFLINE": "1", "COURSE_DEVICE": "cpu"}


@pytest.fixture(scope="module", name="encoder")
def encoder_fixture() -> ClipEncoder:
    """Fixture ``encoder``: the committed tiny CLIP (trained weights) on the CPU, the encoder
    the index folders of these tests are built with (``from fault_helpers import
    encoder_fixture`` makes it available to a module)."""
    return ClipEncoder.tiny(device="cpu", progress=False)


# ----------------------------------------------------------------------------- bad input, timing
def good_record(qid: int = 7) -> dict:
    """A valid 20-s moment record: windows [2, 6] and [10, 12] -> clips 1, 2, 5.

    Args:
        qid: the record's query id.

    Returns:
        The record (a new dict each call).
    """
    return {
        "qid": qid,
        "query": "a red ball rolls to the left",
        "vid": "vidA",
        "duration": 20.0,
        "relevant_windows": [[2.0, 6.0], [10.0, 12.0]],
        "relevant_clip_ids": [1, 2, 5],
        "saliency_scores": [[1, 2, 3], [4, 4, 4], [0, 1, 2]],
    }


def returns_within(fn: Callable[[], Any], seconds: float = 20.0) -> dict:
    """Run ``fn`` in a thread; fail (instead of hanging) when it does not return in time.

    Args:
        fn: the call to make.
        seconds: how long to wait for it.

    Returns:
        ``{"value": result}`` or ``{"error": exception}``.
    """
    outcome: dict = {}

    def run() -> None:
        try:
            outcome["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 (handed to the test)
            outcome["error"] = exc

    # a daemon thread: one that stays blocked never keeps pytest from exiting
    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(seconds)
    assert not worker.is_alive(), f"{fn} still blocked after {seconds} s"
    return outcome


def peak_allocation(fn: Callable[[], Any]) -> int:
    """Bytes allocated at the peak while ``fn`` runs (numpy reports its arrays to tracemalloc).

    Args:
        fn: the call to measure.

    Returns:
        The peak in bytes.
    """
    tracemalloc.start()
    try:
        fn()
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return peak


def saved_run(out_dir: Path) -> tuple[nn.Module, torch.optim.Optimizer, object]:
    """A finished epoch of a tiny training run saved in ``out_dir``.

    Args:
        out_dir: the run folder.

    Returns:
        ``(model, optimizer, scheduler)`` the state was saved from.
    """
    model = nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(model.parameters())
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, 1)
    save_training_state(
        out_dir, model, optimizer, scheduler, MomentTrainingConfig(), {"epoch": 0}, 0.5
    )
    return model, optimizer, scheduler


# ----------------------------------------------------------------------------- index folders
def write_toy(path: Path, index: int, seconds: int = 4) -> Path:
    """A short mp4 (2 fps, 64 px) of toy video ``index``: different indexes, different content.

    Args:
        path: where to write it (folders are created).
        index: which toy video.
        seconds: its length.

    Returns:
        ``path``.
    """
    frames, _ = toyworld.render(toyworld.make_vid("val", "c", 0, index), fps=2, size=64)
    return write_video(path, frames[: 2 * seconds], fps=2)


def two_folders(tmp_path: Path) -> tuple[Path, Path]:
    """Folders A (a.mp4, only_a.mp4) and B (a.mp4, only_b.mp4); the two a.mp4 differ.

    Args:
        tmp_path: where to create them.

    Returns:
        ``(A, B)``.
    """
    a, b = tmp_path / "A", tmp_path / "B"
    write_toy(a / "a.mp4", 0)
    write_toy(a / "only_a.mp4", 1)
    write_toy(b / "a.mp4", 2)
    write_toy(b / "only_b.mp4", 0)  # same content as A's a.mp4, another file: its own entry
    return a, b


def assert_every_video_indexed_with_its_features(out: Path, encoder, files: list[Path]) -> None:
    """Assert that nothing was lost: every file is in the manifest and the saved index once,
    with features of its own (:func:`~course_lib.search.engine.audit_index`).

    Args:
        out: the index folder.
        encoder: the encoder it was built with.
        files: the video files (or toy ids) it must hold.
    """
    report = audit_index(out, files, encoder)
    assert report.ok, "\n".join(report.problems)


def hold_lock(folder: Path, seconds: float = 60.0) -> subprocess.Popen:
    """A process that holds ``folder``'s lock for ``seconds`` (returns once it holds it).

    Args:
        folder: the locked folder.
        seconds: how long the process holds the lock.

    Returns:
        The process (the caller kills it).
    """
    code = (
        "import sys, time\n"
        "from course_lib.files import folder_lock\n"
        "with folder_lock(sys.argv[1]):\n"
        "    print('locked', flush=True)\n"
        "    time.sleep(float(sys.argv[2]))\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(folder), str(seconds)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline().strip() == "locked"
    return proc


def cli_index(folder: Path, out: Path) -> subprocess.Popen:
    """``python -m course_lib.search index folder --out out`` (tiny encoder) in a new process.

    Args:
        folder: the source folder.
        out: the index folder.

    Returns:
        The running process (stdout and stderr piped, as text).
    """
    cmd = [sys.executable, "-m", "course_lib.search", "index", str(folder), "--out", str(out)]
    cmd += ["--encoder", "tiny"]
    return subprocess.Popen(
        [*cmd, "--no-progress"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=CLI_ENV,
    )
