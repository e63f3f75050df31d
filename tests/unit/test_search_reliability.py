"""Reliability of search index folders and of the clip-feature cache (issue #21).

One test per case found by fault injection: concurrent and sequential builds from two source
folders, temporaries of a live writer, feature-cache keys of files, edited index files, an
explicit ``--videos 0``, files that cannot be indexed, the folder lock, manifest merges and
queries during builds. Each asserts that nothing was lost: every video is in the index, once,
with its own features.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import shutil
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

from course_lib import toyworld
from course_lib.clip import ClipEncoder, FeatureCache
from course_lib.clip.frames import file_frame_source
from course_lib.errors import LockTimeoutError
from course_lib.files import host_tag
from course_lib.search import MomentSearch, build
from course_lib.search import engine as engine_module
from course_lib.search.__main__ import main
from course_lib.search.build import (
    CHANGED_WHILE_READ,
    FEATURES_DIR,
    read_manifest,
    update_manifest,
)
from course_lib.search.engine import INDEX_FILE, audit_index
from course_lib.video import write_video

TOY = [toyworld.make_vid("val", "c", 0, i) for i in range(3)]
CLI_ENV = {**os.environ, "OMP_NUM_THREADS": "1", "COURSE_OFFLINE": "1", "COURSE_DEVICE": "cpu"}


@pytest.fixture(scope="module")
def encoder() -> ClipEncoder:
    return ClipEncoder.tiny(device="cpu", progress=False)


# ----------------------------------------------------------------------------- helpers
def write_toy(path: Path, index: int, seconds: int = 4) -> Path:
    """A short mp4 (2 fps, 64 px) of toy video ``index``: different indexes, different content."""
    frames, _ = toyworld.render(toyworld.make_vid("val", "c", 0, index), fps=2, size=64)
    return write_video(path, frames[: 2 * seconds], fps=2)


def two_folders(tmp_path: Path) -> tuple[Path, Path]:
    """Folders A (a.mp4, only_a.mp4) and B (a.mp4, only_b.mp4); the two a.mp4 differ."""
    a, b = tmp_path / "A", tmp_path / "B"
    write_toy(a / "a.mp4", 0)
    write_toy(a / "only_a.mp4", 1)
    write_toy(b / "a.mp4", 2)
    write_toy(b / "only_b.mp4", 0)  # same content as A's a.mp4, another file: its own entry
    return a, b


def assert_every_video_indexed_with_its_features(out: Path, encoder, files: list[Path]) -> None:
    """Every file is in the manifest and the saved index once, with features of its own."""
    report = audit_index(out, files, encoder)
    assert report.ok, "\n".join(report.problems)


def hold_lock(folder: Path, seconds: float = 60.0) -> subprocess.Popen:
    """A process that holds ``folder``'s lock for ``seconds`` (returns once it holds it)."""
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
    """``python -m course_lib.search index folder --out out`` in a new process."""
    cmd = [sys.executable, "-m", "course_lib.search", "index", str(folder), "--out", str(out)]
    cmd += ["--encoder", "tiny"]
    return subprocess.Popen(
        [*cmd, "--no-progress"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=CLI_ENV,
    )


# ----------------------------------------------------------------------------- data loss
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


# ----------------------------------------------------------------------------- silent wrong
def _counting_file_source(calls: list[str]):
    """The default frame source of files, recording each path it reads."""
    source = file_frame_source()

    def counted(path: str):
        calls.append(path)
        return source(path)

    return counted


def test_feature_cache_tells_files_with_the_same_stem_apart(tmp_path, encoder):
    first, second = write_toy(tmp_path / "x" / "a.mp4", 0), write_toy(tmp_path / "y" / "a.mp4", 1)
    cache, calls = FeatureCache(encoder, root=tmp_path / "cache"), []
    fa = cache.get(str(first), _counting_file_source(calls))
    fb = cache.get(str(second), _counting_file_source(calls))
    assert len(calls) == 2, "the second file was answered with the first one's features"
    assert not np.allclose(fa, fb)
    fresh = FeatureCache(encoder, root=tmp_path / "fresh")
    np.testing.assert_array_equal(fb, fresh.get(str(second)))
    np.testing.assert_array_equal(cache.get(str(first), _counting_file_source(calls)), fa)
    assert len(calls) == 2  # a hit is still a hit


def test_feature_cache_recomputes_a_file_replaced_at_the_same_path(tmp_path, encoder):
    path = write_toy(tmp_path / "a.mp4", 0)
    cache, calls = FeatureCache(encoder, root=tmp_path / "cache"), []
    before = cache.get(str(path), _counting_file_source(calls))
    write_toy(path, 1)  # another video under the same name
    after = cache.get(str(path), _counting_file_source(calls))
    assert len(calls) == 2 and not np.allclose(before, after)
    np.testing.assert_array_equal(after, FeatureCache(encoder, root=tmp_path / "f").get(str(path)))


def test_a_file_replaced_while_it_is_read_never_keeps_its_old_features(
    tmp_path, encoder, monkeypatch
):
    folder = tmp_path / "videos"
    good = write_toy(folder / "good.mp4", 0)
    swapped = write_toy(folder / "swapped.mp4", 1)
    read, replaced = build.extract_with_settings, []

    def read_then_replace(item, *args, **kwargs):
        result = read(item, *args, **kwargs)
        if Path(item.path).name == swapped.name and not replaced:
            replaced.append(write_toy(swapped, 2))  # another content, after the old one was read
        return result

    monkeypatch.setattr(build, "extract_with_settings", read_then_replace)
    out = tmp_path / "index"
    first = MomentSearch.build(folder, out, encoder=encoder, progress=False)
    assert replaced and first.summary.skipped == {str(swapped.resolve()): CHANGED_WHILE_READ}
    assert_every_video_indexed_with_its_features(out, encoder, [good])
    again = MomentSearch.build(folder, out, encoder=encoder, progress=False)
    assert again.summary.computed == ["swapped.mp4"]
    assert_every_video_indexed_with_its_features(out, encoder, [good, swapped])


def segment_scores(engine: MomentSearch, query: np.ndarray):
    """Every segment of an engine's index with its score for one query embedding, best first."""
    table = engine.index.search_segments(query, k=engine.index.ntotal)
    return table[["vid", "start", "end", "score"]]


def _killed(*args, **kwargs):
    """Stands in for a step a build is killed before (kill -9 or Ctrl-C)."""
    raise KeyboardInterrupt


def test_a_build_killed_before_its_index_leaves_no_old_vectors(tmp_path, encoder, monkeypatch):
    folder, out = tmp_path / "videos", tmp_path / "index"
    write_toy(folder / "a.mp4", 0)
    write_toy(folder / "b.mp4", 1)
    MomentSearch.build(folder, out, encoder=encoder, progress=False)
    write_toy(folder / "a.mp4", 2)  # another content under the same name
    # the next build records a.mp4's new features, then is killed before it rebuilds the index
    with monkeypatch.context() as patched:
        patched.setattr(engine_module, "_sync_index", _killed)
        with pytest.raises(KeyboardInterrupt):
            MomentSearch.build(folder, out, encoder=encoder, progress=False)
    copy = shutil.copytree(out, tmp_path / "copy")
    files = sorted(folder.iterdir())
    fresh = MomentSearch.build(folder, tmp_path / "fresh", encoder=encoder, progress=False)
    query = fresh.encode_query("a red circle moves left").embedding
    expected = segment_scores(fresh, query)
    # a resumed build rebuilds the index (nothing is recomputed), a load does too, warning
    resumed = MomentSearch.build(folder, out, encoder=encoder, progress=False)
    assert resumed.summary.computed == []
    assert segment_scores(resumed, query).equals(expected)
    assert_every_video_indexed_with_its_features(out, encoder, files)
    with pytest.warns(UserWarning, match=r"recomputed since it was built: \['a.mp4'\]"):
        loaded = MomentSearch.load(copy, encoder=encoder)
    assert segment_scores(loaded, query).equals(expected)
    # an index recorded before stamps were cannot tell; the audit still finds the old vectors
    write_toy(folder / "a.mp4", 3)
    with monkeypatch.context() as patched:
        patched.setattr(engine_module, "_sync_index", _killed)
        with pytest.raises(KeyboardInterrupt):
            MomentSearch.build(folder, copy, encoder=encoder, progress=False)
    update_manifest(copy, lambda m: m["index"].pop("stamps"))
    assert audit_index(copy, files, encoder).problems == [
        "the segment index holds other vectors of a.mp4 than its stored features"
    ]


def _roll_vectors(index_file: Path) -> None:
    """Edit the vectors inside a saved flat faiss index (ids kept), bypassing SegmentIndex.save."""
    import faiss

    index = faiss.read_index(str(index_file))
    inner = faiss.downcast_index(index.index)
    vectors = inner.reconstruct_n(0, inner.ntotal)
    edited = faiss.IndexIDMap2(faiss.IndexFlatIP(inner.d))
    edited.add_with_ids(np.roll(vectors, 7, axis=0), faiss.vector_to_array(index.id_map))
    faiss.write_index(edited, str(index_file))


def test_edited_index_vectors_are_noticed_and_rebuilt(tmp_path, encoder):
    from course_lib.corpus.index import SegmentIndex

    out = tmp_path / "index"
    built = MomentSearch.build(TOY, out, encoder=encoder, progress=False)
    query = built.encode_query("a red circle moves left").embedding
    ranking = built.index.search_segments(query, k=20)
    _roll_vectors(out / INDEX_FILE)
    edited = SegmentIndex.load(out / INDEX_FILE).search_segments(query, k=20)
    assert not edited["segment_id"].equals(ranking["segment_id"])  # the edit changes rankings
    with pytest.warns(UserWarning, match=f"rebuilding .*{INDEX_FILE}.* was modified"):
        loaded = MomentSearch.load(out, encoder=encoder)
    cols = ["vid", "start", "end", "score"]
    assert loaded.index.search_segments(query, k=20)[cols].equals(ranking[cols])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the rebuilt files match their new checksums
        MomentSearch.load(out, encoder=encoder)
    (out / f"{INDEX_FILE}.meta.npz").write_bytes(b"PK\x03\x04 edited")
    with pytest.warns(UserWarning, match=r"segments\.faiss\.meta\.npz"):
        MomentSearch.load(out, encoder=encoder)


@pytest.fixture(scope="module")
def toy_index(tmp_path_factory, encoder) -> Path:
    out = tmp_path_factory.mktemp("toy_index") / "index"
    MomentSearch.build(TOY, out, encoder=encoder, progress=False)
    return out


@pytest.mark.parametrize("option", ["--videos", "-k"])
def test_explicit_zero_is_refused_not_replaced(toy_index, encoder, capsys, option):
    with pytest.raises(SystemExit) as exited:
        main(["query", str(toy_index), "a red circle", option, "0"])
    assert exited.value.code == 2
    assert f"argument {option}: must be at least 1, got 0" in capsys.readouterr().err
    engine = MomentSearch.load(toy_index, encoder=encoder)
    with pytest.raises(ValueError, match="top_k_videos must be >= 1"):
        engine.search("a red circle", top_k_videos=0)
    assert len(engine.search("a red circle", k=3, top_k_videos=1, thumbnails=False)) == 1


# ----------------------------------------------------------------------------- one bad file
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
