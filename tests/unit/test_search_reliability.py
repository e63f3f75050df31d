"""Index folders under concurrency (issue #21): the folder lock, manifests merged rather than
last-writer-wins, loads and queries that read a consistent snapshot while builds run, and an
engine whose snapshot a later build made stale (a video recomputed since it loaded).

The fault-injection cases of the issue's table are in ``test_faults_<class>.py``: data loss,
silent wrong, build aborted, unclear, unsafe hint, resource and small.
"""

from __future__ import annotations

import multiprocessing
import subprocess
import sys
import time
import warnings

import pytest
from fault_helpers import (
    CLI_ENV,
    TOY,
    assert_every_video_indexed_with_its_features,
    encoder_fixture,  # noqa: F401 (the encoder fixture)
    hold_lock,
    write_toy,
)

from course_lib.errors import LockTimeoutError
from course_lib.search import MomentSearch
from course_lib.search.__main__ import main
from course_lib.search.build import read_manifest, update_manifest
from course_lib.search.engine import StaleSnapshotError


# ----------------------------------------------------------------------------- concurrency
def test_lock_timeout_names_the_folder_and_the_holder(tmp_path, encoder, capsys):
    out = tmp_path / "index"
    MomentSearch.build(TOY[:1], out, encoder=encoder, progress=False)
    holder = hold_lock(out)
    try:
        start = time.monotonic()
        with pytest.raises(LockTimeoutError) as refused:
            MomentSearch.build(TOY[:2], out, encoder=encoder, progress=False, lock_timeout=0.5)
        assert 0.5 <= time.monotonic() - start < 10
        assert str(out) in str(refused.value) and f"process {holder.pid}" in str(refused.value)
        folder = tmp_path / "videos"
        write_toy(folder / "a.mp4", 0)
        code = main(
            ["index", str(folder), "--out", str(out), "--encoder", "tiny", "--lock-timeout", "0.5"]
        )
        err = capsys.readouterr().err
        assert code == 1 and f"process {holder.pid}" in err and "Traceback" not in err
    finally:
        holder.kill()
        holder.wait()
    # the kernel drops a killed holder's lock: the folder is usable again at once
    engine = MomentSearch.build(TOY[:2], out, encoder=encoder, progress=False, lock_timeout=5)
    assert sorted(engine.vids) == sorted(TOY[:2])


def _record_many(out: str, writer: int, n: int) -> None:
    """Add ``n`` entries of one writer to the manifest, one locked read-change-write each."""
    for i in range(n):
        update_manifest(out, lambda m, i=i: m["skipped"].update({f"w{writer}-{i}": {}}))


def test_concurrent_manifest_writes_are_merged(tmp_path, encoder):
    out = tmp_path / "index"
    MomentSearch.build(TOY[:1], out, encoder=encoder, progress=False)
    ctx = multiprocessing.get_context("fork")  # the workers only touch json and the lock
    workers = [ctx.Process(target=_record_many, args=(str(out), w, 25)) for w in range(4)]
    for proc in workers:
        proc.start()
    for proc in workers:
        proc.join(60)
        assert proc.exitcode == 0
    skipped = read_manifest(out)["skipped"]
    assert sorted(skipped) == sorted(f"w{w}-{i}" for w in range(4) for i in range(25))
    assert list(read_manifest(out)["videos"]) == TOY[:1]


def test_a_load_never_hands_out_a_video_the_manifest_dropped(tmp_path, encoder):
    out = tmp_path / "index"
    MomentSearch.build(TOY, out, encoder=encoder, progress=False)
    # what a build records when a video's file became unreadable, before it rebuilds the index
    update_manifest(out, lambda m: m["videos"].pop(TOY[1]))
    with pytest.warns(UserWarning, match=rf"rebuilding .*does not list: \['{TOY[1]}'\]"):
        engine = MomentSearch.load(out, encoder=encoder)
    assert sorted(engine.vids) == [TOY[0], TOY[2]]
    assert set(engine.search("a red circle", k=5, thumbnails=False)["vid"]) <= set(engine.vids)
    assert sorted(MomentSearch.load(out, encoder=encoder).vids) == [TOY[0], TOY[2]]  # saved


WRITER = """
import sys, torch
from pathlib import Path
from course_lib import toyworld
from course_lib.clip import ClipEncoder
from course_lib.search import MomentSearch
from course_lib.video import write_video
torch.set_num_threads(1)
folder, out, rounds = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
encoder = ClipEncoder.tiny(device="cpu", progress=False)
for r in range(rounds):
    vid = toyworld.make_vid("val", "c", 0, 10 + r)
    frames, _ = toyworld.render(vid, fps=2, size=64)
    path = write_video(folder / f"new{r}.mp4", frames[:8], fps=2)
    if r % 2:
        MomentSearch.load(out, encoder=encoder).add([path], progress=False)
    else:
        MomentSearch.build(folder, out, encoder=encoder, progress=False)
"""


@pytest.mark.slow
def test_queries_read_consistent_snapshots_while_a_build_runs(tmp_path, encoder):
    folder, out = tmp_path / "videos", tmp_path / "index"
    write_toy(folder / "first.mp4", 0)
    MomentSearch.build(folder, out, encoder=encoder, progress=False)
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(folder), str(out), "6"],
        env=CLI_ENV,
        stderr=subprocess.PIPE,
    )
    loads = 0
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        while writer.poll() is None or loads == 0:
            engine = MomentSearch.load(out, encoder=encoder)
            assert sorted(engine.vids) == sorted(engine.manifest["index"]["vids"])
            assert set(engine.vids) <= set(engine.manifest["videos"])
            assert len(engine.search("a red circle", k=2, thumbnails=False)) >= 1
            loads += 1
    assert writer.returncode == 0, writer.stderr.read()[-2000:]
    assert loads >= 2
    torn = [str(w.message) for w in caught if "rebuilding" in str(w.message)]
    assert not torn, f"a load read files that do not belong together: {torn}"
    assert_every_video_indexed_with_its_features(out, encoder, sorted(folder.iterdir()))


def test_an_engine_loaded_before_a_video_was_recomputed_never_mixes_old_and_new(tmp_path, encoder):
    folder, out = tmp_path / "videos", tmp_path / "index"
    write_toy(folder / "a.mp4", 0, seconds=8)
    write_toy(folder / "b.mp4", 1)
    MomentSearch.build(folder, out, encoder=encoder, progress=False)
    before = MomentSearch.load(out, encoder=encoder)  # the first engine's snapshot
    # another engine recomputes a.mp4 (a shorter video under the same name) into the folder
    write_toy(folder / "a.mp4", 2, seconds=2)
    after = MomentSearch.build(folder, out, encoder=encoder, progress=False)
    assert after.summary.computed == ["a.mp4"]
    # the first engine never hands out a.mp4's new files against its old vectors and duration
    for read in (before.features, before.thumbnails):
        with pytest.raises(StaleSnapshotError, match=r"'a.mp4' .*recomputed.*reload\(\)"):
            read("a.mp4")
    assert len(before.features("b.mp4")) == len(after.features("b.mp4"))  # unchanged: readable
    # a search loads the newest snapshot first, then answers as a fresh engine does
    columns = ["vid", "start", "end", "score"]
    expected = after.search("a red circle", k=4)
    found = before.search("a red circle", k=4)
    assert found[columns].equals(expected[columns])
    assert before.video_info("a.mp4")["duration"] == after.video_info("a.mp4")["duration"]
    assert len(before.features("a.mp4")) == len(after.features("a.mp4"))
    assert_every_video_indexed_with_its_features(out, encoder, sorted(folder.iterdir()))
