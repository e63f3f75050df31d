"""Tests of course_lib.clip: encoder, checkpoints, InfoNCE, clip features + cache, tiny quality."""

from __future__ import annotations

import math
import shutil

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from course_lib.clip import (
    TINY_MODEL_NAME,
    ClipEncoder,
    FeatureCache,
    clip_timestamps,
    count_clips,
    pool_clip_features,
    symmetric_info_nce,
)
from course_lib.clip.checkpoint import load_state_dict, save_state_dict
from course_lib.env import data_dir
from course_lib.errors import CheckpointError, OfflineError

torch.set_num_threads(2)


# ----------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def tiny() -> ClipEncoder:
    return ClipEncoder.tiny(device="cpu", progress=False)


@pytest.fixture(scope="module")
def vitb32() -> ClipEncoder:
    return ClipEncoder.from_config("ViT-B-32", pretrained=None, device="cpu", progress=False)


@pytest.fixture(params=["tiny", "vitb32"])
def encoder(request) -> ClipEncoder:
    return request.getfixturevalue(request.param)


def _frames(n: int = 2, h: int = 48, w: int = 80, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, h, w, 3), dtype=np.uint8)


# ----------------------------------------------------------------------------- encoder
def test_frame_embeddings_shapes_and_norms(encoder: ClipEncoder) -> None:
    frames = _frames()
    pooled = encoder.encode_frames(frames)
    tokens = encoder.encode_frame_tokens(frames)
    assert pooled.shape == (2, encoder.embed_dim)
    assert tokens.shape == (2, encoder.num_patches, encoder.embed_dim)
    torch.testing.assert_close(pooled.norm(dim=-1), torch.ones(2))
    torch.testing.assert_close(tokens.norm(dim=-1), torch.ones(2, encoder.num_patches))
    # the CLS token is the pooled embedding
    torch.testing.assert_close(tokens[:, 0], pooled, atol=1e-5, rtol=1e-4)


def test_text_embeddings_shapes_norms_and_mask(encoder: ClipEncoder) -> None:
    queries = ["a red circle", "a blue square and a green star on the beach"]
    pooled = encoder.encode_text(queries)
    tokens, mask = encoder.encode_text_tokens(queries)
    assert pooled.shape == (2, encoder.embed_dim)
    assert tokens.shape == (2, encoder.context_length, encoder.embed_dim)
    assert mask.dtype == torch.bool and mask.shape == tokens.shape[:2]
    n_real = mask.sum(dim=1)
    assert n_real[0] < n_real[1]  # the longer query has more real tokens
    torch.testing.assert_close(pooled.norm(dim=-1), torch.ones(2))
    assert torch.all(tokens[~mask] == 0)  # padding is zeroed
    # the end-of-text token (last real one) is the pooled embedding
    torch.testing.assert_close(tokens[torch.arange(2), n_real - 1], pooled, atol=1e-5, rtol=1e-4)


def test_float_frames_match_uint8(tiny: ClipEncoder) -> None:
    frames = _frames(seed=3)
    as_float = torch.from_numpy(frames).float() / 255.0
    torch.testing.assert_close(tiny.encode_frames(frames), tiny.encode_frames(as_float))


@pytest.mark.parametrize(
    "bad", [np.zeros((2, 8, 8), np.uint8), np.full((1, 8, 8, 3), 255.0, np.float32)]
)
def test_bad_frames_are_refused(tiny: ClipEncoder, bad: np.ndarray) -> None:
    with pytest.raises(ValueError, match="frames"):
        tiny.encode_frames(bad)


def test_long_query_is_truncated_with_warning(tiny: ClipEncoder) -> None:
    long_query = " ".join(["red circle"] * 40)
    with pytest.warns(UserWarning, match="query 1 .*truncated"):
        out = tiny.encode_text(["a star", long_query])
    assert out.shape == (2, tiny.embed_dim)


@pytest.mark.parametrize("bad", ["", "   ", "\n\t"])
def test_empty_query_raises(tiny: ClipEncoder, bad: str) -> None:
    with pytest.raises(ValueError, match="query 1 is empty"):
        tiny.encode_text(["a star", bad])


def test_identity_names_model_weights_and_size(tiny: ClipEncoder, vitb32: ClipEncoder) -> None:
    assert TINY_MODEL_NAME in tiny.identity and "64px" in tiny.identity
    assert tiny.weights_id in tiny.identity and len(tiny.weights_id) == 64
    assert "ViT-B-32" in vitb32.identity and "224px" in vitb32.identity
    assert tiny.identity_hash != vitb32.identity_hash


# ----------------------------------------------------------------------------- checkpoints
def test_corrupted_checkpoint_is_refused(tmp_path) -> None:
    src = data_dir() / "tiny_clip.safetensors"
    copy = tmp_path / src.name
    shutil.copy(src, copy)
    shutil.copy(src.with_suffix(".sha256"), tmp_path / "tiny_clip.sha256")
    data = bytearray(copy.read_bytes())
    data[len(data) // 2] ^= 0xFF  # flip one byte in the middle of the weights
    copy.write_bytes(bytes(data))
    expected = (tmp_path / "tiny_clip.sha256").read_text().split()[0]
    with pytest.raises(CheckpointError) as info:
        ClipEncoder.tiny(copy)
    assert str(copy) in str(info.value) and expected in str(info.value)


def test_missing_checkpoint_and_manifest(tmp_path) -> None:
    with pytest.raises(CheckpointError, match="not found"):
        ClipEncoder.tiny(tmp_path / "nope.safetensors")
    save_state_dict({"w": torch.ones(2)}, tmp_path / "a.safetensors")
    (tmp_path / "a.sha256").unlink()
    with pytest.raises(CheckpointError, match="manifest"):
        load_state_dict(tmp_path / "a.safetensors")


def test_state_dict_round_trip_fp16(tmp_path) -> None:
    state = {"w": torch.randn(3, 4), "idx": torch.arange(3)}
    digest = save_state_dict(state, tmp_path / "x.safetensors", metadata={"k": "v"})
    loaded, meta = load_state_dict(tmp_path / "x.safetensors", expected_sha256=digest)
    assert meta == {"k": "v"} and loaded["idx"].dtype == torch.int64
    torch.testing.assert_close(loaded["w"], state["w"].half().float())


def test_offline_pretrained_raises(monkeypatch) -> None:
    monkeypatch.setenv("COURSE_OFFLINE", "1")
    with pytest.raises(OfflineError, match=r"ViT-B-32/openai.*weights='/path/to/weights.bin'"):
        ClipEncoder.pretrained("ViT-B-32", "openai")


def test_unknown_pretrained_tag() -> None:
    with pytest.raises(ValueError, match="unknown pretrained weights 'nope'"):
        ClipEncoder.pretrained("ViT-B-32", "nope")


# ----------------------------------------------------------------------------- InfoNCE
def test_info_nce_perfect_alignment_is_low_and_symmetric() -> None:
    feats = torch.eye(4)
    low = symmetric_info_nce(feats, feats, math.log(100.0))
    assert low < 1e-3
    # mismatched pairs (a permutation) give a high loss
    assert symmetric_info_nce(feats, feats[[1, 2, 3, 0]], math.log(100.0)) > 10.0
    # swapping the roles of images and texts gives the same loss
    g = torch.Generator().manual_seed(0)
    a = torch.nn.functional.normalize(torch.randn(5, 8, generator=g), dim=-1)
    b = torch.nn.functional.normalize(torch.randn(5, 8, generator=g), dim=-1)
    torch.testing.assert_close(symmetric_info_nce(a, b, 2.0), symmetric_info_nce(b, a, 2.0))


def test_info_nce_hand_case_and_positives() -> None:
    # 2 pairs, orthogonal features, scale 1: each row is softmax([1, 0]) -> loss = log(1 + e^-1)
    feats = torch.eye(2)
    torch.testing.assert_close(
        symmetric_info_nce(feats, feats, 0.0), torch.tensor(math.log(1 + math.exp(-1)))
    )
    # an explicit identity positives matrix equals the default
    a = torch.nn.functional.normalize(torch.randn(4, 3), dim=-1)
    torch.testing.assert_close(
        symmetric_info_nce(a, a, 1.0, torch.eye(4, dtype=torch.bool)), symmetric_info_nce(a, a, 1.0)
    )
    # identical captions marked as positives stop pushing their images apart
    same = torch.ones(2, 2, dtype=torch.bool)
    both = torch.nn.functional.normalize(torch.ones(2, 3), dim=-1)
    torch.testing.assert_close(symmetric_info_nce(both, both, 3.0, same), torch.tensor(math.log(2)))
    with pytest.raises(ValueError, match="True diagonal"):
        symmetric_info_nce(a, a, 1.0, torch.zeros(4, 4, dtype=torch.bool))


def test_info_nce_gradient_reaches_temperature() -> None:
    scale = torch.tensor(1.0, requires_grad=True)
    a = torch.nn.functional.normalize(torch.randn(6, 4), dim=-1)
    symmetric_info_nce(a, a, scale).backward()
    assert scale.grad is not None and scale.grad < 0  # aligned pairs: sharper is better


# ----------------------------------------------------------------------------- clips
@pytest.mark.parametrize(
    ("duration", "k", "times", "index"),
    [
        (1.2, 1, [0.6], [0]),  # shorter than one clip: still one clip
        (2.0, 1, [1.0], [0]),
        (4.0, 2, [0.5, 1.5, 2.5, 3.5], [0, 0, 1, 1]),
        (5.0, 1, [1.0, 3.0, 4.5], [0, 1, 2]),  # trailing partial clip sampled inside the video
    ],
)
def test_clip_timestamps_cases(duration, k, times, index) -> None:
    t, idx = clip_timestamps(duration, frames_per_clip=k)
    np.testing.assert_allclose(t, times)
    np.testing.assert_array_equal(idx, index)


@pytest.mark.parametrize("duration", [0.0, -1.0, float("nan")])
def test_clip_timestamps_bad_duration(duration) -> None:
    with pytest.raises(ValueError, match="duration"):
        clip_timestamps(duration)


@settings(max_examples=50, deadline=None)
@given(duration=st.floats(0.05, 300.0), k=st.integers(1, 4), clip_len=st.sampled_from([1.0, 2.0]))
def test_clip_timestamps_properties(duration: float, k: int, clip_len: float) -> None:
    t, idx = clip_timestamps(duration, clip_len, k)
    n = count_clips(duration, clip_len)
    assert n == max(1, math.ceil(duration / clip_len - 1e-6))
    assert len(t) == n * k and np.all(np.diff(t) > 0)
    assert np.all((t >= 0) & (t < duration))
    assert np.all(np.floor(t / clip_len + 1e-9) == np.minimum(idx, n - 1))


def test_pool_clip_features_masked_mean() -> None:
    feats = torch.tensor([[1.0, 0.0], [0.0, 1.0], [5.0, 5.0], [0.0, 2.0]])
    idx = torch.tensor([0, 0, 1, 1])
    mask = torch.tensor([True, True, False, True])
    out = pool_clip_features(feats, idx, mask, n_clips=3)
    s = 1 / math.sqrt(2)
    torch.testing.assert_close(out, torch.tensor([[s, s], [0.0, 1.0], [0.0, 0.0]]))


# ----------------------------------------------------------------------------- cache
class _Source:
    """A frame source that counts its calls."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, vid: str):
        self.calls += 1
        times, _ = clip_timestamps(5.0, frames_per_clip=2)
        return _frames(len(times), 64, 64, seed=len(vid)), times, 5.0


def test_feature_cache_round_trip(tiny: ClipEncoder, tmp_path) -> None:
    source, cache = _Source(), FeatureCache(tiny, root=tmp_path, frames_per_clip=2)
    first = cache.get("vidA", source)
    second = cache.get("vidA", source)
    assert source.calls == 1 and first.shape == (3, tiny.embed_dim)
    np.testing.assert_allclose(second, first, atol=2e-3)  # stored as fp16
    with np.load(cache.path("vidA")) as stored:
        assert stored["features"].dtype == np.float16 and stored["features"].shape == first.shape
    np.testing.assert_allclose(np.linalg.norm(first, axis=1), 1.0, atol=1e-5)


def test_cache_keyed_by_encoder(tiny: ClipEncoder, tmp_path) -> None:
    other = ClipEncoder.from_config(TINY_MODEL_NAME, device="cpu", progress=False)
    a, b = FeatureCache(tiny, root=tmp_path), FeatureCache(other, root=tmp_path)
    assert a.path("vidA") != b.path("vidA")
    source = _Source()
    fa, fb = a.get("vidA", source), b.get("vidA", source)
    assert source.calls == 2 and not np.allclose(fa, fb)
    # different sampling settings never share a file either
    assert FeatureCache(tiny, root=tmp_path, frames_per_clip=2).path("v") != a.path("v")


# ----------------------------------------------------------------------------- quality
def test_tiny_clip_quality_on_test_split(tiny: ClipEncoder) -> None:
    from course_lib.clip.zeroshot import evaluate_toy

    scores = evaluate_toy(tiny, n_frames=1000)
    assert scores["n_single"] >= 200
    assert scores["colour_acc"] >= 0.95, scores
    assert scores["shape_acc"] >= 0.90, scores
    assert scores["scene_acc"] >= 0.95, scores
    assert scores["r_at_1"] >= 0.80, scores
