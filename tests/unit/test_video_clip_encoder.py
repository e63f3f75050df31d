"""Tests for course_lib.clip.clip_encoder.VideoClipEncoder and its use by FeatureCache.

A tiny random video-text model (VideoTower + a one-layer text tower, 16-d) is built and saved in
the test; the frame-pooling encoder wraps the committed tiny CLIP. Nothing is downloaded.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from course_lib.clip import ClipEncoder, FeatureCache, VideoClipEncoder, video_features
from course_lib.clip.encoder import create_random_model
from course_lib.clip.features import group_clip_frames
from course_lib.clip.frames import file_frame_source, toy_frame_source
from course_lib.clip.tiny_config import register_config
from course_lib.clip.video_encoder import (
    VideoTower,
    VideoTowerConfig,
    preprocess_clips,
    save_video_text_model,
)
from course_lib.errors import DataValidationError

SMALL = {"image_size": 32, "patch_size": 8, "width": 32, "layers": 1, "heads": 2, "embed_dim": 16}
#: a one-layer open_clip model whose text tower embeds in SMALL's 16 dimensions
TEXT_NAME = "TestVideoText-16"
TEXT_CONFIG = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "patch_size": 8, "width": 32, "layers": 1, "head_width": 16},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}
K = 4
TOY_VID = "toy-val-c0-00002"  # 8 s: 4 clips


def save_random_model(path, seed: int, fusion: str = "early") -> str:
    """Save a seeded random video-text model at ``path``; returns its SHA256."""
    register_config(TEXT_NAME, TEXT_CONFIG)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = create_random_model(TEXT_NAME)
        model.visual = VideoTower(VideoTowerConfig(frames=K, fusion=fusion, **SMALL))
    return save_video_text_model(model, path, TEXT_NAME, {"seed": seed})


def clips(n: int = 3, k: int = K, size: int = 32, seed: int = 0) -> np.ndarray:
    """Random uint8 (n, k, size, size, 3) clips."""
    return np.random.default_rng(seed).integers(0, 256, (n, k, size, size, 3), dtype=np.uint8)


# ----------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    """Two random video-text checkpoints (seeds 0 and 1)."""
    folder = tmp_path_factory.mktemp("video_text")
    paths = {f"seed{s}": folder / f"video{s}.safetensors" for s in (0, 1)}
    for seed, path in enumerate(paths.values()):
        save_random_model(path, seed)
    return paths


@pytest.fixture(scope="module")
def video(checkpoints) -> VideoClipEncoder:
    return VideoClipEncoder.load(checkpoints["seed0"], device="cpu", progress=False)


@pytest.fixture(scope="module")
def tiny() -> ClipEncoder:
    return ClipEncoder.tiny(device="cpu", progress=False)


@pytest.fixture(scope="module")
def pooled(tiny: ClipEncoder) -> VideoClipEncoder:
    return VideoClipEncoder.frame_pooling(tiny, K)


# ----------------------------------------------------------------------------- video tower
def test_loaded_encoder_embeds_clips_like_its_tower(video: VideoClipEncoder) -> None:
    x = clips()
    emb = video.encode_clips(x)
    with torch.no_grad():
        expected = F.normalize(video.tower(preprocess_clips(x, K)), dim=-1)
    assert emb.shape == (3, 16) and emb.dtype == torch.float32
    torch.testing.assert_close(emb, expected)
    torch.testing.assert_close(emb.norm(dim=-1), torch.ones(3))
    # a sequence of clips gives the same embeddings; frames of another size are resized
    torch.testing.assert_close(video.encode_clips(list(x)), emb)
    assert video.encode_clips(clips(2, size=48)).shape == (2, 16)


def test_clip_tokens_give_the_embedding_and_unit_patches(video: VideoClipEncoder) -> None:
    emb, patches = video.encode_clip_tokens(clips())
    assert video.num_patches == 16 and patches.shape == (3, 16, 16)
    torch.testing.assert_close(emb, video.encode_clips(clips()))
    torch.testing.assert_close(patches.norm(dim=-1), torch.ones(3, 16))
    raw = video.encode_clip_tokens(clips(), normalize=False)[1]
    torch.testing.assert_close(F.normalize(raw, dim=-1), patches)


def test_text_side_is_the_clip_encoders(video: VideoClipEncoder) -> None:
    queries = ["the red circle spins", "a blue square"]
    torch.testing.assert_close(video.encode_text(queries), video.base.encode_text(queries))
    tokens, mask = video.encode_text_tokens(queries)
    assert tokens.shape == (2, 16, 16) and mask.shape == (2, 16)
    torch.testing.assert_close(video.tokenize(queries), video.base.tokenize(queries))
    with pytest.raises(DataValidationError, match="query 1"):
        video.encode_text(["fine", "  "])


def test_save_load_round_trip_keeps_the_embeddings(tmp_path) -> None:
    from course_lib.clip.video_encoder import load_video_text_model

    path = tmp_path / "v.safetensors"
    save_random_model(path, seed=3, fusion="late")
    model, _ = load_video_text_model(path)
    encoder = VideoClipEncoder.load(path, device="cpu", progress=False)
    with torch.no_grad():
        expected = F.normalize(model.encode_image(preprocess_clips(clips(), K)), dim=-1)
    torch.testing.assert_close(encoder.encode_clips(clips()), expected)
    assert "video-tower k=4 late" in encoder.identity


def test_identity_differs_between_checkpoints_and_frame_encoders(
    checkpoints, video: VideoClipEncoder, tiny: ClipEncoder, pooled: VideoClipEncoder
) -> None:
    from course_lib.files import sha256_file

    other = VideoClipEncoder.load(checkpoints["seed1"], device="cpu", progress=False)
    assert sha256_file(checkpoints["seed0"]) in video.identity
    assert len({video.identity, other.identity, pooled.identity, tiny.identity}) == 4
    assert len({video.identity_hash, other.identity_hash, pooled.identity_hash}) == 3
    assert pooled.identity == f"{tiny.identity}|frame-mean k={K}"
    assert VideoClipEncoder.frame_pooling(tiny, 8).identity != pooled.identity
    assert len(video.identity_hash) == 16


# ----------------------------------------------------------------------------- frame pooling
def test_frame_pooling_is_the_mean_of_the_unit_frame_embeddings(tiny, pooled) -> None:
    x = clips(2, size=48)
    # CLIP4Clip's meanP: every frame token at unit length, then the mean over the clip's frames
    frames = tiny.encode_frame_tokens(x.reshape(-1, 48, 48, 3), normalize=True).view(2, K, 65, -1)
    mean = frames.mean(1)
    torch.testing.assert_close(pooled.encode_clips(x), F.normalize(mean[:, 0], dim=-1))
    emb, patches = pooled.encode_clip_tokens(x)
    torch.testing.assert_close(emb, pooled.encode_clips(x))
    torch.testing.assert_close(patches, F.normalize(mean[:, 1:], dim=-1))
    assert pooled.num_patches == 64 and pooled.embed_dim == tiny.embed_dim
    # the model is shared, never changed: the frame encoder still embeds frames
    assert tiny.encode_frames(x[0]).shape == (K, tiny.embed_dim)


# ----------------------------------------------------------------------------- feature cache
@pytest.mark.parametrize("which", ["video", "pooled"])
def test_feature_cache_encodes_toy_clips_like_by_hand(which, request, tmp_path) -> None:
    encoder = request.getfixturevalue(which)
    cache = FeatureCache(encoder, root=tmp_path)  # frames_per_clip defaults to k
    feats = cache.get(TOY_VID)
    assert cache.frames_per_clip == K and feats.shape == (4, encoder.embed_dim)
    assert np.isfinite(feats).all()
    np.testing.assert_allclose(np.linalg.norm(feats, axis=1), 1.0, atol=2e-3)
    frames, times, _ = toy_frame_source(2.0, K)(TOY_VID)
    by_hand = encoder.encode_clips(frames.reshape(4, K, *frames.shape[1:])).numpy()
    np.testing.assert_allclose(feats, by_hand, atol=2e-3)  # fp16 storage
    np.testing.assert_array_equal(cache.get(TOY_VID), feats)  # a hit: the stored values
    np.testing.assert_array_equal(video_features(encoder, TOY_VID, root=tmp_path), feats)


def test_feature_cache_encodes_an_mp4_file_like_by_hand(video: VideoClipEncoder, tmp_path) -> None:
    from course_lib.video import write_video

    # 1. a 6-s 10-fps mp4: a bright square moving right over a dark background
    frames = np.full((60, 64, 64, 3), 30, dtype=np.uint8)
    for t in range(60):
        frames[t, 20:40, t : t + 8] = (220, 60, 40)
    path = write_video(tmp_path / "moving.mp4", frames, fps=10, crf=10)
    # 2. through the cache and by hand
    feats = FeatureCache(video, root=tmp_path / "cache").get(str(path))
    decoded, times, duration = file_frame_source(2.0, K)(str(path))
    assert feats.shape == (3, 16) and len(decoded) == 3 * K
    assert np.isfinite(feats).all()
    np.testing.assert_allclose(np.linalg.norm(feats, axis=1), 1.0, atol=2e-3)
    by_hand = video.encode_clips(decoded.reshape(3, K, *decoded.shape[1:])).numpy()
    np.testing.assert_allclose(feats, by_hand, atol=2e-3)


def test_feature_cache_refuses_another_frame_count(video, tiny, pooled, tmp_path) -> None:
    with pytest.raises(ValueError, match=r"frames_per_clip=2 .* k = 4"):
        FeatureCache(video, root=tmp_path, frames_per_clip=2)
    assert FeatureCache(video, root=tmp_path, frames_per_clip=K).frames_per_clip == K
    assert FeatureCache(tiny, root=tmp_path).frames_per_clip == 1  # frame path unchanged
    frame_cache = FeatureCache(tiny, root=tmp_path, frames_per_clip=K)
    assert FeatureCache(pooled, root=tmp_path).directory != frame_cache.directory


def test_missing_frames_are_padded_with_the_nearest_one() -> None:
    frames = np.arange(8, dtype=np.uint8)[:, None, None, None] * np.ones((1, 2, 2, 3), np.uint8)
    times = np.array([0.25, 0.75, 1.25, 1.75, 2.25, 2.75, 3.25, 3.75])
    keep = [0, 1, 2, 3, 4, 7]  # clip 1 lost its frames at 2.75 and 3.25 s
    grouped = group_clip_frames(frames[keep], times[keep], 4.0, K)
    assert grouped.shape == (2, K, 2, 2, 3)
    np.testing.assert_array_equal(grouped[:, :, 0, 0, 0], [[0, 1, 2, 3], [4, 4, 7, 7]])


def test_a_clip_without_frames_names_the_video_and_the_clip(video, tmp_path) -> None:
    def source(vid: str):
        frames, times, duration = toy_frame_source(2.0, K)(TOY_VID)
        keep = (times < 2.0) | (times > 4.0)  # clip 1 (2-4 s) has no frame
        return frames[keep], times[keep], duration

    with pytest.raises(
        DataValidationError, match=r"video broken-vid: clip 1 \(2-4 s\) has no frames"
    ):
        FeatureCache(video, root=tmp_path).get("broken-vid", source)


# ----------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (
            [clips(1)[0], clips(1, size=16)[0]],
            r"clip 1 has frames of shape \(16, 16, 3\), but clip 0's frames are \(32, 32, 3\)",
        ),
        (
            [clips(1)[0], clips(1)[0], clips(1, k=3)[0]],
            r"clip 2 has 3 frames of shape \(32, 32, 3\), fewer than k = 4",
        ),
        (
            [clips(1)[0], np.zeros((0, 32, 32, 3), np.uint8)],
            r"clip 1 is empty \(shape \(0, 32, 32, 3\)\)",
        ),
        ([clips(1)[0], []], r"clip 1 is empty"),
        ([], "no clips given"),
        (clips(1)[0], r"clips must have shape \(B, 4, H, W, 3\), got \(4, 32, 32, 3\)"),
        (clips(2)[..., 0], r"clips must have shape \(B, 4, H, W, 3\), got \(2, 4, 32, 32\)"),
        ([np.zeros((K, 32, 32), np.uint8)], r"clip 0 has shape \(4, 32, 32\)"),
        (clips(2, k=5), r"clip 0 has 5 frames .* more than k = 4"),
        (np.zeros((1, K, 32, 32, 3), np.int64), "clip 0 has dtype"),
    ],
)
def test_bad_clips_are_refused_naming_the_clip(video, bad, message) -> None:
    with pytest.raises(DataValidationError, match=message):
        video.encode_clips(bad)
    with pytest.raises(DataValidationError, match=message):
        video.encode_clip_tokens(bad)


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_non_finite_frames_are_refused(video, pooled, value) -> None:
    x = clips(3).astype(np.float32) / 255
    x[2, 1, 0, 0, 0] = value
    for encoder in (video, pooled):
        with pytest.raises(DataValidationError, match="clip 2 .*NaN or infinite"):
            encoder.encode_clips(x)


def test_non_finite_model_output_is_never_passed_on(checkpoints, monkeypatch) -> None:
    encoder = VideoClipEncoder.load(checkpoints["seed0"], device="cpu", progress=False)
    monkeypatch.setattr(encoder.tower, "forward", lambda x: torch.full((len(x), 16), float("nan")))
    with pytest.raises(DataValidationError, match="non-finite clip embeddings for clip 0"):
        encoder.encode_clips(clips())


def test_frame_input_and_mismatched_towers_are_refused(video, tiny) -> None:
    with pytest.raises(TypeError, match="encodes clips of 4 frames"):
        video.encode_frames(clips(1)[0])
    with pytest.raises(ValueError, match="16 dimensions, the text tower in 128"):
        VideoClipEncoder(tiny, VideoTower(VideoTowerConfig(frames=K, **SMALL)), "video-tower")
    with pytest.raises(ValueError, match="frames per clip must be >= 1"):
        VideoClipEncoder.frame_pooling(tiny, 0)


# ----------------------------------------------------------------------------- real video
def test_frame_pooling_over_the_real_clip_architecture_reads_an_mp4(tmp_path) -> None:
    """ViT-B-32 (random weights: the pretrained model's architecture, nothing downloaded) plus
    mean pooling gives unit 512-d clip features and 49 patch tokens per clip of a real file."""
    from course_lib.video import write_video

    # 1. a 4-s 8-fps mp4 at 96 px: two clips
    frames = np.zeros((32, 96, 96, 3), dtype=np.uint8)
    for t in range(32):
        frames[t, 30:60, 2 * t : 2 * t + 20] = (40, 200, 90)
    path = write_video(tmp_path / "real.mp4", frames, fps=8, crf=10)
    # 2. the open_clip architecture of the real-video path, pooled over k = 4 frames
    torch.manual_seed(0)
    base = ClipEncoder.from_config("ViT-B-32", device="cpu", progress=False)
    encoder = VideoClipEncoder.frame_pooling(base, K)
    feats = FeatureCache(encoder, root=tmp_path / "cache").get(str(path))
    assert feats.shape == (2, 512) and np.isfinite(feats).all()
    np.testing.assert_allclose(np.linalg.norm(feats, axis=1), 1.0, atol=2e-3)
    # 3. the patch tokens UCoFiA reads: a 7 x 7 grid per clip at 224 px
    decoded, _, _ = file_frame_source(2.0, K)(str(path))
    emb, patches = encoder.encode_clip_tokens(decoded.reshape(2, K, *decoded.shape[1:]))
    assert patches.shape == (2, 49, 512)
    np.testing.assert_allclose(emb.numpy(), feats, atol=2e-3)
    assert encoder.encode_text(["a green box moves right"]).shape == (1, 512)


def test_committed_encoders_by_name(tmp_path) -> None:
    from course_lib.clip.clip_encoder import committed_encoder
    from course_lib.errors import CheckpointError

    video = committed_encoder("video", device="cpu", progress=False)
    assert isinstance(video, VideoClipEncoder) and video.frames_per_clip == K
    assert isinstance(committed_encoder("tiny", device="cpu", progress=False), ClipEncoder)
    with pytest.raises(ValueError, match="unknown committed encoder 'huge'"):
        committed_encoder("huge")
    with pytest.raises(CheckpointError, match="missing.safetensors not found"):
        VideoClipEncoder.committed(tmp_path / "missing.safetensors")
