"""Fault injection, class "whole build aborted" of issue #21: one bad file never stops a build.

Cases: a source folder holding, next to a good video, a file whose name is not valid UTF-8, a
symbolic link loop, a dangling symbolic link or a FIFO, all with a video suffix. The build (and
the ``index`` command, exit status 0) indexes the good video, skips each bad entry and names it by
its own path, printably, in the summary; nothing is lost (the good video is indexed).
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

import pytest
from fault_helpers import (
    encoder_fixture,  # noqa: F401 (the encoder fixture)
    write_toy,
)

from course_lib.search import MomentSearch
from course_lib.search.__main__ import main


# ----------------------------------------------------------------------------- bad entries
def _invalid_utf8(folder: Path, good: Path) -> Path:
    bad = folder / os.fsdecode(b"bad\xff.mp4")
    shutil.copy(good, bad)  # a real video: only its name is wrong
    return bad


def _symlink_loop(folder: Path, good: Path) -> Path:
    os.symlink("loop.mp4", folder / "loop.mp4")
    return folder / "loop.mp4"


def _dangling_link(folder: Path, good: Path) -> Path:
    os.symlink(folder / "gone" / "target.mp4", folder / "dangling.mp4")
    return folder / "dangling.mp4"


def _fifo(folder: Path, good: Path) -> Path:
    os.mkfifo(folder / "pipe.mp4")  # opening it for reading would block forever
    return folder / "pipe.mp4"


BAD_ENTRIES = {
    "invalid_utf8": (_invalid_utf8, "not valid UTF-8"),
    "symlink_loop": (_symlink_loop, "symbolic link loop"),
    "dangling_link": (_dangling_link, "dangling symbolic link"),
    "fifo": (_fifo, "not a regular file (a FIFO)"),
}


@pytest.mark.parametrize("kind", sorted(BAD_ENTRIES))
def test_one_bad_file_never_stops_a_build(tmp_path, encoder, kind):
    folder = tmp_path / "videos"
    good = write_toy(folder / "good.mp4", 0)
    make, reason = BAD_ENTRIES[kind]
    try:
        bad = make(folder, good)
    except OSError as exc:  # e.g. a file system that refuses names that are not UTF-8
        pytest.skip(f"cannot create the {kind} entry here: {exc}")
    engine = MomentSearch.build(folder, tmp_path / "index", encoder=encoder, progress=False)
    assert engine.vids == ["good.mp4"]
    own = str(folder.resolve() / bad.name)  # the entry's own path, never its target's
    assert list(engine.summary.skipped) == [own] and reason in engine.summary.skipped[own]
    report = engine.summary.format()
    report.encode("utf-8")  # printable: a name that is not UTF-8 is shown with \x escapes
    shown = own.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    assert f"skipped {shown}: " in report


def test_cli_reports_every_bad_file_and_exits_0(tmp_path, capsys):
    folder = tmp_path / "videos"
    good = write_toy(folder / "good.mp4", 0)
    for make, _ in BAD_ENTRIES.values():
        with contextlib.suppress(OSError):  # a file system may refuse one kind of entry
            make(folder, good)
    code = main(
        [
            "index",
            str(folder),
            "--out",
            str(tmp_path / "index"),
            "--encoder",
            "tiny",
            "--no-progress",
        ]
    )
    out, err = capsys.readouterr()
    assert code == 0, err
    skipped = [line for line in out.splitlines() if line.strip().startswith("skipped ")]
    made = len([p for p in folder.iterdir() if p.name != "good.mp4"])
    assert len(skipped) == made >= 3 and "Traceback" not in err
    assert "index: " in out and "(1 videos" in out
