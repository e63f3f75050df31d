"""The moment search engine with a clip encoder (``VideoClipEncoder``) end to end.

Toy-world videos are written as small mp4 files (as in ``test_search.py``) and indexed with the
committed video-text encoder (``VideoClipEncoder.committed()``, k = 4 frames per 2-s clip); the
index must hold the very features :class:`~course_lib.clip.features.FeatureCache` computes for
each file, record the encoder as ``"video"``, recreate it on reopening, and refuse another
encoder. Frame pooling over the tiny CLIP (``VideoClipEncoder.frame_pooling``) checks the same
extraction with a second clip encoder.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from course_lib import toyworld
from course_lib.clip import ClipEncoder
from course_lib.clip.clip_encoder import VideoClipEncoder
from course_lib.clip.features import FeatureCache
from course_lib.errors import CourseError
from course_lib.search import IndexMismatchError, MomentSearch
from course_lib.search import build as build_module
from course_lib.search.__main__ import main
from course_lib.search.build import (
    VideoItem,
    encoder_from_spec,
    encoder_spec,
    extract_video,
    file_item,
    read_manifest,
)
from course_lib.search.engine import audit_index
from course_lib.video import write_video

#: three short toy videos (12-s each), written as mp4 files
VIDS = [toyworld.make_vid("val", "c", 0, i) for i in range(3)]
#: fp16 storage: values below 1 round by at most half a unit in the last place (2**-12)
FP16_ATOL = 1e-3


# ----------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def video_encoder() -> VideoClipEncoder:
    return VideoClipEncoder.committed(device="cpu", progress=False)


@pytest.fixture(scope="module")
def tiny() -> ClipEncoder:
    return ClipEncoder.tiny(device="cpu", progress=False)


@pytest.fixture(scope="module")
def pooled(tiny: ClipEncoder) -> VideoClipEncoder:
    return VideoClipEncoder.frame_pooling(tiny, 4)


@pytest.fixture(scope="module")
def video_dir(tmp_path_factory) -> Path:
    """The toy videos as 4-fps 64x64 mp4 files, plus a corrupt ``.mp4`` file."""
    root = tmp_path_factory.mktemp("videos")
    for vid in VIDS:
        frames, _ = toyworld.render(vid, fps=4, size=64)
        write_video(root / f"{vid}.mp4", frames, fps=4)
    noise = np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8).tobytes()
    (root / "corrupt.mp4").write_bytes(noise)
    return root


@pytest.fixture(scope="module")
def video_index(video_dir: Path, video_encoder: VideoClipEncoder, tmp_path_factory) -> MomentSearch:
    """The folder indexed with the committed video encoder passed as ``encoder=``."""
    out = tmp_path_factory.mktemp("index") / "idx"
    return MomentSearch.build(video_dir, out, encoder=video_encoder, batch_size=8, progress=False)


def _cached_features(encoder, vid: str, tmp_path: Path) -> np.ndarray:
    """``FeatureCache(encoder).get(vid)`` in a fresh cache folder."""
    return FeatureCache(encoder, root=tmp_path / "cache").get(vid)


# ----------------------------------------------------------------------------- features
@pytest.mark.parametrize("which", ["video_encoder", "pooled"])
def test_extracted_features_are_feature_caches(which, video_dir, request, tmp_path) -> None:
    encoder = request.getfixturevalue(which)
    # 1. an mp4 file (3 clips per pass) and a toy id rendered on the fly (1 clip per pass)
    for item, batch_size in (
        (file_item(video_dir / f"{VIDS[0]}.mp4"), 12),
        (VideoItem(VIDS[1], VIDS[1], None), 4),
    ):
        got = extract_video(item, encoder, batch_size=batch_size)
        want = _cached_features(encoder, item.path or item.vid, tmp_path)
        # 2. the same clips, the same features up to the cache's fp16 rounding
        assert got.features.shape == want.shape and got.thumbs.shape[0] == len(want)
        np.testing.assert_allclose(got.features, want, atol=FP16_ATOL)
        assert got.n_frames == 4 * len(want)  # k = 4 frames sampled per clip


def test_index_holds_feature_caches_features_and_skips_bad_files(
    video_index, video_encoder, video_dir, tmp_path
) -> None:
    summary = video_index.summary
    # 1. every toy mp4 indexed, the corrupt file skipped with its reason
    assert sorted(summary.computed) == sorted(f"{v}.mp4" for v in VIDS)
    ((bad, reason),) = summary.skipped.items()
    assert bad.endswith("corrupt.mp4") and "as a video" in reason
    # 2. stored features are FeatureCache's for the same file; one thumbnail per clip
    for vid in VIDS:
        stored = video_index.features(f"{vid}.mp4")
        want = _cached_features(video_encoder, str(video_dir / f"{vid}.mp4"), tmp_path)
        np.testing.assert_allclose(stored, want, atol=FP16_ATOL)
        assert video_index.thumbnails(f"{vid}.mp4").shape[:1] == stored.shape[:1]
    # 3. the folder's audit recomputes the same features with the folder's settings
    report = audit_index(video_index.out_dir, [video_dir / f"{v}.mp4" for v in VIDS])
    assert report.ok, report.problems


def test_manifest_names_the_video_encoder_and_its_frames_per_clip(video_index) -> None:
    manifest = read_manifest(video_index.out_dir)
    assert manifest["encoder"]["spec"] == "video"
    assert manifest["encoder"]["identity"] == video_index.encoder.identity
    assert manifest["settings"]["frames_per_clip"] == 4 and manifest["settings"]["fps"] == 2.0


def test_encoder_spec_names_only_the_committed_video_encoder(video_encoder, pooled) -> None:
    assert encoder_spec(video_encoder) == "video"
    recreated = encoder_from_spec("video", device="cpu", progress=False)
    assert isinstance(recreated, VideoClipEncoder) and recreated.identity == video_encoder.identity
    # frame pooling over the tiny CLIP has the tiny weights, but "tiny" would be a frame encoder
    assert encoder_spec(pooled) is None


# ----------------------------------------------------------------------------- reopening
def test_reopened_index_recreates_the_encoder_and_answers_queries(video_index) -> None:
    engine = MomentSearch.load(video_index.out_dir)
    assert isinstance(engine.encoder, VideoClipEncoder)
    assert engine.encoder.identity == video_index.encoder.identity
    hits = engine.search("a red circle moves left", k=3, thumbnails=True)
    assert len(hits) >= 1 and set(hits["vid"]) <= {f"{v}.mp4" for v in VIDS}
    assert (hits["end"] > hits["start"]).all() and hits["thumbnail"].iloc[0].ndim == 3


def test_another_encoder_is_refused(video_index, tiny, pooled, tmp_path) -> None:
    extra = tmp_path / "more"
    frames, _ = toyworld.render(toyworld.make_vid("val", "c", 0, 5), fps=4, size=64)
    write_video(extra / "new.mp4", frames, fps=4)
    # 1. adding videos with the tiny frame encoder: refused, naming both kinds of encoder
    with pytest.raises(IndexMismatchError, match="clip encoder, 4 frames per clip.*frame encoder"):
        MomentSearch.build(extra, video_index.out_dir, encoder=tiny, progress=False)
    with pytest.raises(IndexMismatchError, match="was built with encoder"):
        MomentSearch.load(video_index.out_dir, encoder=tiny)
    # 2. another clip encoder of the same k: refused too (another space)
    with pytest.raises(IndexMismatchError, match="was built with encoder"):
        MomentSearch.build(extra, video_index.out_dir, encoder=pooled, progress=False)
    assert "new.mp4" not in json.dumps(read_manifest(video_index.out_dir)["videos"])


def test_frame_pooling_index_needs_its_encoder_passed(pooled, tmp_path) -> None:
    MomentSearch.build(VIDS[:1], tmp_path / "o", encoder=pooled, progress=False)
    with pytest.raises(CourseError, match="pass it as encoder="):
        MomentSearch.load(tmp_path / "o")
    assert MomentSearch.load(tmp_path / "o", encoder=pooled).search("a red circle", k=1).shape[0]


def test_a_frame_rate_other_than_k_per_clip_is_refused(video_encoder, tmp_path) -> None:
    with pytest.raises(ValueError, match="4 frames per 2-s clip"):
        MomentSearch.build(VIDS[:1], tmp_path / "o", encoder=video_encoder, fps=1.0)


def test_a_clip_without_frames_skips_the_video(video_encoder, video_dir, tmp_path, monkeypatch):
    real = build_module.iter_sampled_frames
    holey = video_dir / f"{VIDS[1]}.mp4"

    def drop_clip_1(item, *args, **kwargs):
        # the frames of clip 1 (2-4 s) of one file are lost
        for t, frame in real(item, *args, **kwargs):
            if item.path != str(holey) or not 2.0 <= t < 4.0:
                yield t, frame

    monkeypatch.setattr(build_module, "iter_sampled_frames", drop_clip_1)
    engine = MomentSearch.build(video_dir, tmp_path / "o", encoder=video_encoder, progress=False)
    assert sorted(engine.vids) == sorted(f"{v}.mp4" for v in (VIDS[0], VIDS[2]))
    assert "clip 1 (2-4 s) has no frames" in engine.summary.skipped[str(holey)]


# ----------------------------------------------------------------------------- CLI
def test_cli_index_and_query_with_the_video_encoder(video_dir, tmp_path, capsys) -> None:
    out = tmp_path / "cli"
    code = main(["index", str(video_dir), "--out", str(out), "--no-progress"])  # the default
    printed = capsys.readouterr().out
    assert code == 0 and "indexed 3 videos" in printed and "corrupt.mp4" in printed
    assert read_manifest(out)["encoder"]["spec"] == "video"
    assert main(["query", str(out), "a red circle moves left", "-k", "2", "--json"]) == 0
    (answer,) = json.loads(capsys.readouterr().out)
    assert 1 <= len(answer["results"]) <= 2


# ----------------------------------------------------------------------------- defaults
def test_defaults_are_the_video_encoder_and_the_coreba_trained_on_it(video_dir, tmp_path, tiny):
    from course_lib.localisers import BaselineLocaliser, CorebaLocaliser

    engine = MomentSearch.build(video_dir, tmp_path / "default", batch_size=8, progress=False)
    assert read_manifest(engine.out_dir)["encoder"]["spec"] == "video"
    assert isinstance(engine.localiser, CorebaLocaliser)
    assert isinstance(MomentSearch.load(engine.out_dir).localiser, CorebaLocaliser)
    # the frame CLIP's features do not fit the checkpoint: the training-free baseline localises
    frame_engine = MomentSearch.build(VIDS[:1], tmp_path / "tiny", encoder=tiny, progress=False)
    assert isinstance(frame_engine.localiser, BaselineLocaliser)
