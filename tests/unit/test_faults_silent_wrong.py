"""Fault injection, class "silent wrong" of issue #21: no answer silently comes from the wrong data.

Cases: the clip-feature cache asked for two files with the same stem, for a file replaced at the
same path and for a file replaced while it is read (each gets its own features, never another
file's); a build killed after it recomputed a video and before it rebuilt the index (no old
vectors are ever searched); vectors edited inside ``segments.faiss`` (noticed by their checksum,
rebuilt with a warning); and an explicit ``--videos 0`` / ``-k 0`` (refused, never replaced by
the default).
"""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
from fault_helpers import (
    TOY,
    assert_every_video_indexed_with_its_features,
    encoder_fixture,  # noqa: F401 (the encoder fixture)
    write_toy,
)

from course_lib.clip import FeatureCache
from course_lib.clip.frames import file_frame_source
from course_lib.search import MomentSearch, build
from course_lib.search import engine as engine_module
from course_lib.search.__main__ import main
from course_lib.search.build import CHANGED_WHILE_READ, update_manifest
from course_lib.search.engine import INDEX_FILE, audit_index


# ----------------------------------------------------------------------------- feature cache
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


# ----------------------------------------------------------------------------- index vectors
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


# ----------------------------------------------------------------------------- explicit zero
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
