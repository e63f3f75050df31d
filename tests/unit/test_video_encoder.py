"""Tests for course_lib.clip.video_encoder: shapes, both fusions, motion sensitivity, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from course_lib.clip.video_encoder import VideoTower, VideoTowerConfig, preprocess_clips

SMALL = {"image_size": 32, "patch_size": 8, "width": 32, "layers": 1, "heads": 2, "embed_dim": 16}


def tower(fusion: str, **changes) -> VideoTower:
    """A small seeded tower."""
    torch.manual_seed(0)
    return VideoTower(VideoTowerConfig(fusion=fusion, **{**SMALL, **changes})).eval()


def clips(n: int = 3, k: int = 4, size: int = 32, seed: int = 0) -> np.ndarray:
    """Random uint8 (n, k, size, size, 3) clips."""
    return np.random.default_rng(seed).integers(0, 256, (n, k, size, size, 3), dtype=np.uint8)


@pytest.mark.parametrize("fusion", ["early", "late"])
def test_embeddings_and_patch_tokens_have_the_documented_shapes(fusion):
    model = tower(fusion)
    with torch.no_grad():
        emb, patches = model.forward_tokens(preprocess_clips(clips(), 4))
        plain = model(preprocess_clips(clips(), 4))
    assert emb.shape == (3, 16) and patches.shape == (3, model.config.num_patches, 16)
    assert model.config.num_patches == 16
    torch.testing.assert_close(plain, emb)
    assert torch.isfinite(patches).all()


@pytest.mark.parametrize(
    ("fusion", "differences"), [("early", True), ("early", False), ("late", True)]
)
def test_the_order_of_frames_changes_the_clip_embedding(fusion, differences):
    """A clip played backwards is another clip: a mean of frame features could not tell."""
    model = tower(fusion, differences=differences)
    forward = preprocess_clips(clips(1), 4)
    backward = forward.flip(1)
    with torch.no_grad():
        gap = (model(forward) - model(backward)).abs().max()
    assert gap > 1e-4


def test_bad_input_is_refused_with_its_shape():
    model = tower("early")
    with pytest.raises(
        ValueError, match=r"expected clips of shape \(B, 4, 3, 32, 32\), got \(2, 3, 3, 32, 32\)"
    ):
        model(torch.zeros(2, 3, 3, 32, 32))
    nan = torch.zeros(1, 4, 3, 32, 32)
    nan[0, 1, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        model(nan)
    with pytest.raises(ValueError, match=r"\(B >= 1, 4, H, W, 3\).*\(2, 3, 32, 32, 3\)"):
        preprocess_clips(clips(2, k=3), 4)
    with pytest.raises(ValueError, match="got shape"):
        preprocess_clips(np.zeros((0, 4, 32, 32, 3), np.uint8), 4)


def test_config_is_validated():
    with pytest.raises(ValueError, match="fusion"):
        VideoTowerConfig(fusion="middle")
    with pytest.raises(ValueError, match="frames must be >= 2"):
        VideoTowerConfig(frames=1)
    with pytest.raises(ValueError, match="not a multiple"):
        VideoTowerConfig(image_size=64, patch_size=10)
    assert VideoTowerConfig(**VideoTowerConfig().to_dict()) == VideoTowerConfig()


def test_the_tower_replaces_an_open_clip_image_tower():
    """``model.encode_image`` then encodes clips (what training and the probe rely on)."""
    from course_lib.clip import TINY_MODEL_NAME, ClipEncoder

    model = ClipEncoder.from_config(TINY_MODEL_NAME, progress=False).model
    model.visual = tower("early", embed_dim=128)
    with torch.no_grad():
        out = model.encode_image(preprocess_clips(clips(2), 4), normalize=True)
    assert out.shape == (2, 128)
    torch.testing.assert_close(out.norm(dim=-1), torch.ones(2))


def test_checkpoint_round_trip_and_refusals(tmp_path):
    from course_lib.clip import TINY_MODEL_NAME, ClipEncoder
    from course_lib.clip.video_encoder import load_video_text_model, save_video_text_model
    from course_lib.errors import CheckpointError

    model = ClipEncoder.from_config(TINY_MODEL_NAME, progress=False).model
    model.visual = tower("late", embed_dim=128)
    path = tmp_path / "video.safetensors"
    save_video_text_model(model, path, TINY_MODEL_NAME, {"steps": 3})
    loaded, meta = load_video_text_model(path)
    assert loaded.visual.config == model.visual.config and '"steps": 3' in meta["info"]
    x = preprocess_clips(clips(2), 4)
    with torch.no_grad():  # fp16 storage: equal to about 3 decimals
        torch.testing.assert_close(
            loaded.encode_image(x), model.encode_image(x), atol=2e-2, rtol=2e-2
        )
    path.write_bytes(path.read_bytes()[:-8] + b"tampered")
    with pytest.raises(CheckpointError, match="video.safetensors"):
        load_video_text_model(path)


@pytest.mark.parametrize("fusion", ["early", "late"])
def test_inflated_tower_embeds_a_still_clip_like_the_image_tower(fusion):
    """k copies of one frame: the inflated video tower gives the image tower's embedding."""
    from course_lib.clip import TINY_MODEL_NAME, ClipEncoder
    from course_lib.clip.tiny_config import register_config, tiny_variant
    from course_lib.clip.video_encoder import inflate_from_image_tower

    register_config(*tiny_variant(8))
    image = ClipEncoder.from_config("TinyCLIP-Toy-ViT-8-64", progress=False).model.visual.eval()
    assert TINY_MODEL_NAME  # the base config is registered too
    video = inflate_from_image_tower(VideoTower(VideoTowerConfig(fusion=fusion)), image).eval()
    frame = preprocess_clips(clips(2, size=64)[:, :1].repeat(4, axis=1), 4)
    with torch.no_grad():
        expected = image(frame[:, 0])
        got = video(frame)
    if fusion == "late":  # the temporal transformer is new: compare the frame tokens instead
        with torch.no_grad():
            got = video.vit(frame[:, 0])[:, 0] @ video.proj
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="cannot inflate"):
        inflate_from_image_tower(VideoTower(VideoTowerConfig(width=64, heads=2)), image)


def test_folded_patch_embedding_equals_the_convolution_over_frames_and_differences():
    from course_lib.clip.video_encoder import fold_differences, patchify_linear

    torch.manual_seed(0)
    k, p = 4, 8
    conv = torch.nn.Conv2d(3 * k + 3 * (k - 1), 16, kernel_size=p, stride=p, bias=False)
    clips = torch.randn(2, k, 3, 32, 32)
    stacked = torch.cat([clips.flatten(1, 2), (clips[:, 1:] - clips[:, :-1]).flatten(1, 2)], dim=1)
    expected = conv(stacked).flatten(2).transpose(1, 2)  # (N, P, width), row-major patches
    with torch.no_grad():
        folded = patchify_linear(clips.flatten(1, 2), fold_differences(conv.weight, k))
        plain = patchify_linear(stacked, conv.weight)
    torch.testing.assert_close(plain, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(folded, expected, atol=1e-5, rtol=1e-5)


GOOD_HEADER = {
    "model_name": "tiny-clip",
    "model_config": "{}",
    "video_tower": '{"frames": 4}',
    "info": "{}",
}


@pytest.mark.parametrize(
    "field, value, problem",
    [
        ("video_tower", "[" * 100_000 + "]" * 100_000, "JSON nested too deeply"),
        ("video_tower", "[1, 2]", "expected a JSON object, got an array"),
        ("model_config", "5", "expected a JSON object, got a number"),
        ("model_config", "{oops", "invalid JSON"),
        ("model_config", None, "is missing"),
    ],
    ids=["deeply nested", "an array", "a number", "not JSON", "missing"],
)
def test_bad_header_json_names_the_file_and_field(tmp_path, field, value, problem):
    from course_lib.clip.checkpoint import save_state_dict
    from course_lib.clip.video_encoder import load_video_text_model
    from course_lib.errors import CheckpointError

    # a verified safetensors file (manifest written) whose header field is broken
    header = {**GOOD_HEADER, field: value}
    path = tmp_path / "video.safetensors"
    save_state_dict({"w": torch.zeros(2)}, path, {k: v for k, v in header.items() if v is not None})
    with pytest.raises(CheckpointError, match=problem) as refused:
        load_video_text_model(path)
    assert f"checkpoint {path}: header field '{field}'" in str(refused.value)
    assert len(str(refused.value)) < 500  # the 200 KB value is not echoed


def test_header_values_a_tower_config_refuses_name_the_file(tmp_path):
    from course_lib.clip.checkpoint import save_state_dict
    from course_lib.clip.video_encoder import load_video_text_model
    from course_lib.errors import CheckpointError

    path = tmp_path / "video.safetensors"
    save_state_dict({"w": torch.zeros(2)}, path, {**GOOD_HEADER, "video_tower": '{"frames": "x"}'})
    with pytest.raises(CheckpointError, match="does not describe a video-text model") as refused:
        load_video_text_model(path)
    assert str(path) in str(refused.value)
