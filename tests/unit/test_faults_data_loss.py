"""Fault injection, class "data loss" of issue #21: no build loses a video another one indexed.

Cases: two ``index`` runs from different source folders into one ``--out`` at the same time, and
one after the other (same-named videos of the two folders keep their own ids and features), an
index folder written before source folders were recorded, and the temporaries of a build that is
still writing (never removed by another build). Each test asserts that nothing was lost: every
video is in the manifest and the saved index once, with its own features
(:func:`fault_helpers.assert_every_video_indexed_with_its_features`).
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from fault_helpers import (
    TOY,
    assert_every_video_indexed_with_its_features,
    cli_index,
    encoder_fixture,  # noqa: F401 (the encoder fixture)
    two_folders,
)

from course_lib.files import host_tag
from course_lib.search import MomentSearch
from course_lib.search.build import FEATURES_DIR, read_manifest, update_manifest


@pytest.mark.slow
def test_concurrent_index_runs_from_two_folders_keep_both(tmp_path, encoder):
    a, b = two_folders(tmp_path)
    out = tmp_path / "index"
    runs = [cli_index(a, out), cli_index(b, out)]  # at the same time, into one folder
    results = [proc.communicate(timeout=300) for proc in runs]
    for proc, (_, stderr) in zip(runs, results):
        assert proc.returncode == 0, stderr[-2000:]
    files = sorted(a.iterdir()) + sorted(b.iterdir())
    assert_every_video_indexed_with_its_features(out, encoder, files)


def test_sequential_runs_from_two_folders_keep_both(tmp_path, encoder):
    a, b = two_folders(tmp_path)
    out = tmp_path / "index"
    MomentSearch.build(a, out, encoder=encoder, progress=False)
    engine = MomentSearch.build(b, out, encoder=encoder, progress=False)
    tag = read_manifest(out)["roots"][1]["tag"]
    assert tag.startswith("B@")
    assert sorted(engine.vids) == sorted(
        ["a.mp4", "only_a.mp4", f"{tag}/a.mp4", f"{tag}/only_b.mp4"]
    )
    assert not np.allclose(engine.features("a.mp4"), engine.features(f"{tag}/a.mp4"))
    assert_every_video_indexed_with_its_features(out, encoder, [*a.iterdir(), *b.iterdir()])
    # ids are stable: indexing A again computes nothing and changes no id
    again = MomentSearch.build(a, out, encoder=encoder, progress=False)
    assert again.summary.computed == [] and sorted(again.vids) == sorted(engine.vids)


def test_index_written_before_roots_keeps_its_ids(tmp_path, encoder):
    a, _ = two_folders(tmp_path)
    out = tmp_path / "index"
    MomentSearch.build(a, out, encoder=encoder, progress=False)
    # the manifest as older versions wrote it: one source_root, no roots, no index checksums
    manifest = update_manifest(out, lambda m: (m.pop("roots"), m["index"].pop("sha256")))
    assert "roots" not in manifest
    engine = MomentSearch.build(a, out, encoder=encoder, progress=False)
    assert engine.summary.computed == [] and sorted(engine.vids) == ["a.mp4", "only_a.mp4"]
    assert_every_video_indexed_with_its_features(out, encoder, sorted(a.iterdir()))


def test_temporaries_of_a_live_writer_survive_a_build(tmp_path, encoder):
    out = tmp_path / "index"
    MomentSearch.build(TOY[:1], out, encoder=encoder, progress=False)
    writer = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        features = out / FEATURES_DIR
        live = features / f".x.npz.{writer.pid}-{host_tag()}.abc123.tmp"  # a build writing now
        remote = features / f".z.npz.{writer.pid}-otherhost.abc123.tmp"  # pid not checkable
        for path in (live, remote):
            path.write_bytes(b"half a file")
        MomentSearch.build(TOY[:2], out, encoder=encoder, progress=False)
        assert live.exists() and remote.exists()
    finally:
        writer.kill()
        writer.wait()
    # once its writer is gone, the same temporary is debris and the next build removes it
    MomentSearch.build(TOY[:2], out, encoder=encoder, progress=False)
    assert not live.exists() and remote.exists()
    assert sorted(read_manifest(out)["videos"]) == sorted(TOY[:2])
    assert_every_video_indexed_with_its_features(out, encoder, [])  # toy videos have no file
