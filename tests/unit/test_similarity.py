"""Tests for course_lib.similarity: ISA, the three granularities, the UCoFiA head, R@K metrics."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from course_lib.errors import DataValidationError, MetricInputError
from course_lib.similarity import (
    ISA,
    MeanAggregation,
    UCoFiA,
    UCoFiAConfig,
    frame_sentence_similarity,
    isa_weights,
    masked_mean,
    patch_word_similarity,
    retrieval_metrics,
    select_patches,
    symmetric_ce_loss,
    video_sentence_similarity,
)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ----------------------------------------------------------------------------- ISA
@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(1, 9), tau=st.floats(0.01, 5.0))
def test_isa_weights_sum_to_one_and_ignore_masked(seed: int, n: int, tau: float) -> None:
    g = _gen(seed)
    sims = torch.rand(4, n, generator=g, dtype=torch.float64) * 2 - 1
    mask = torch.rand(4, n, generator=g) > 0.4
    mask[:, 0] = True  # every vector keeps at least one unit
    weight = torch.randn(n + 2, n + 2, generator=g, dtype=torch.float64)
    a = isa_weights(sims, weight, tau, mask)
    torch.testing.assert_close(a.sum(-1), torch.ones(4, dtype=torch.float64))
    assert (a[~mask] == 0).all() and (a >= 0).all()
    # masked entries may hold anything (even NaN): the output must not change
    poisoned = sims.masked_fill(~mask, float("nan"))
    isa = ISA(n + 2, tau).double()
    isa.weight.data.copy_(weight)
    torch.testing.assert_close(isa(poisoned, mask), isa(sims, mask))


@pytest.mark.parametrize("case", ["uniform_W", "infinite_tau"])
def test_isa_reduces_to_mean(case: str) -> None:
    g = _gen(1)
    sims = torch.randn(3, 5, 6, generator=g, dtype=torch.float64)
    mask = torch.rand(3, 5, 6, generator=g) > 0.3
    mask[..., 0] = True
    if case == "uniform_W":
        isa = ISA(6, tau=0.01, init="uniform").double()
        atol = 1e-12
    else:
        isa = ISA(6, tau=1e8).double()
        atol = 1e-6
    torch.testing.assert_close(isa(sims, mask), masked_mean(sims, mask), atol=atol, rtol=0)
    torch.testing.assert_close(MeanAggregation()(sims, mask), masked_mean(sims, mask))


def test_isa_identity_prefers_best_unit_and_padding_equals_submatrix() -> None:
    sims = torch.tensor([[0.1, 0.9, 0.2]])
    assert ISA(3)(sims).item() > masked_mean(sims).item() + 0.3  # sharp: close to the max
    big = ISA(5)
    padded = torch.cat([sims, torch.zeros(1, 2)], dim=1)
    mask = torch.tensor([[True, True, True, False, False]])
    torch.testing.assert_close(big(sims), big(padded, mask))


def test_isa_errors() -> None:
    with pytest.raises(DataValidationError, match="every unit masked"):
        ISA(3)(torch.zeros(2, 3), torch.tensor([[True, False, False], [False, False, False]]))
    with pytest.raises(DataValidationError, match="cannot aggregate 4 units"):
        ISA(3)(torch.zeros(2, 4))
    with pytest.raises(DataValidationError, match="does not broadcast"):
        masked_mean(torch.zeros(2, 3), torch.ones(2, 4, dtype=torch.bool))


# ----------------------------------------------------------------------------- granularities
def _features(
    seed: int, n_v: int = 5, n_q: int = 4, f: int = 3, p: int = 6, length: int = 5, d: int = 8
):
    g = _gen(seed)
    frames = torch.randn(n_v, f, d, generator=g)
    patches = torch.randn(n_v, f, p, d, generator=g)
    sent = torch.randn(n_q, d, generator=g)
    words = torch.randn(n_q, length, d, generator=g)
    lengths = torch.randint(1, length + 1, (n_q,), generator=g)
    word_mask = torch.arange(length)[None] < lengths[:, None]
    frame_mask = torch.ones(n_v, f, dtype=torch.bool)
    frame_mask[0, -1] = False
    return frames, patches, sent, words, word_mask, frame_mask


def test_video_and_frame_levels() -> None:
    frames, _, sent, _, _, frame_mask = _features(0)
    vs = video_sentence_similarity(frames.mean(1), sent)
    assert vs.shape == (4, 5) and vs.abs().max() <= 1 + 1e-6
    fs = frame_sentence_similarity(frames, sent, frame_mask, ISA(3))
    assert fs.shape == (4, 5)
    # mean aggregation of frame similarities, by hand for one pair (video 0 has 2 real frames)
    f0 = torch.nn.functional.normalize(frames[0, :2], dim=-1) @ torch.nn.functional.normalize(
        sent[1], dim=-1
    )
    torch.testing.assert_close(frame_sentence_similarity(frames, sent, frame_mask)[1, 0], f0.mean())
    chunked = frame_sentence_similarity(frames, sent, frame_mask, ISA(3), chunk_size=3)
    torch.testing.assert_close(chunked, fs)


def test_select_patches_keeps_cls_and_most_cls_like_patches() -> None:
    cls = torch.tensor([[[1.0, 0.0]]])  # (V=1, F=1, D=2)
    patches = torch.tensor([[[[0.0, 1.0], [1.0, 0.1], [-1.0, 0.0], [0.9, 0.0]]]])
    tokens, index = select_patches(cls, patches, k=2)
    assert tokens.shape == (1, 1, 3, 2)
    assert index.tolist() == [[[1, 3]]]
    torch.testing.assert_close(tokens[0, 0, 0], cls[0, 0])
    with pytest.raises(DataValidationError, match="k=5"):
        select_patches(cls, patches, k=5)


@pytest.mark.parametrize("aggregation", ["mean", "isa"])
@pytest.mark.parametrize("chunk_size", [1, 2, 3, 100])
def test_patch_word_chunking_equals_unchunked(aggregation: str, chunk_size: int) -> None:
    frames, patches, _, words, word_mask, frame_mask = _features(2)
    tokens, _ = select_patches(frames, patches, k=2)
    tokens = tokens.reshape(5, -1, 8)
    patch_mask = frame_mask.repeat_interleave(3, dim=1)
    torch.manual_seed(0)
    if aggregation == "isa":
        aggs = {
            "over_words": ISA(5),
            "then_over_patches": ISA(9),
            "over_patches": ISA(9),
            "then_over_words": ISA(5),
        }
        for m in aggs.values():
            m.weight.data += 0.1 * torch.randn_like(m.weight)
    else:
        aggs = {}
    full = patch_word_similarity(tokens, words, word_mask, patch_mask, **aggs)
    chunked = patch_word_similarity(
        tokens, words, word_mask, patch_mask, **aggs, chunk_size=chunk_size
    )
    assert full.shape == (4, 5)
    torch.testing.assert_close(chunked, full)


def test_patch_word_mean_by_hand_and_masks() -> None:
    frames, patches, _, words, word_mask, _ = _features(3)
    tokens = patches[:, 0]  # (V, 6, D)
    sims = patch_word_similarity(tokens, words, word_mask)
    n = torch.nn.functional.normalize
    q, v = 2, 1
    m = n(words[q, word_mask[q]], dim=-1) @ n(tokens[v], dim=-1).T  # (L_q, N)
    torch.testing.assert_close(sims[q, v], m.mean())  # mean of means in both directions
    # padded words must not matter: change them and get the same result
    noisy = words.clone()
    noisy[~word_mask] = 1e3
    torch.testing.assert_close(patch_word_similarity(tokens, noisy, word_mask), sims)
    with pytest.raises(DataValidationError, match="word_mask shape"):
        patch_word_similarity(tokens, words, word_mask[:, :2])


# ----------------------------------------------------------------------------- model
def _toy_batch(
    seed: int, b: int = 8, f: int = 4, p: int = 6, length: int = 5, d: int = 16, noise: float = 1.0
):
    g = _gen(seed)
    frames = torch.randn(b, f, d, generator=g)
    patches = frames[:, :, None] + 0.5 * torch.randn(b, f, p, d, generator=g)
    sent = frames.mean(1) + noise * torch.randn(b, d, generator=g)  # texts: noisy copies of videos
    words = patches[:, :, 0][:, :length] + noise * torch.randn(b, min(f, length), d, generator=g)
    word_mask = torch.ones(b, words.shape[1], dtype=torch.bool)
    word_mask[0, -1] = False
    return frames, patches, sent, words, word_mask


@pytest.mark.parametrize(
    "granularities, aggregation, temporal, scorer",
    [
        (("video", "frame", "patch"), "isa", "transformer", "learned"),
        (("video", "frame", "patch"), "mean", "mean", "cls"),
        (("video", "frame"), "isa", "mean", "cls"),
        (("patch",), "isa", "mean", "learned"),
    ],
)
def test_model_loss_decreases(
    granularities: tuple, aggregation: str, temporal: str, scorer: str
) -> None:
    torch.manual_seed(0)
    frames, patches, sent, words, word_mask = _toy_batch(0)
    cfg = UCoFiAConfig(
        dim=16, n_frames=4, max_words=5, top_k=2, granularities=granularities,
        aggregation=aggregation, temporal=temporal, patch_scorer=scorer, n_heads=2,
    )  # fmt: skip
    model = UCoFiA(cfg)
    opt = torch.optim.Adam(model.parameters(), lr=3e-2)
    losses = []
    for _ in range(15):
        out = model(frames, patches, sent, words, word_mask)
        assert set(out.sims) == set(granularities) and out.logits.shape == (8, 8)
        loss = model.loss(out.logits)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_model_chunked_similarity_and_config_errors() -> None:
    frames, patches, sent, words, word_mask = _toy_batch(1)
    model = UCoFiA(UCoFiAConfig(dim=16, n_frames=4, max_words=5, top_k=2, n_heads=2)).eval()
    with torch.no_grad():
        texts, videos = (
            model.encode_texts(sent, words, word_mask),
            model.encode_videos(frames, patches),
        )
        full, chunked = (
            model.similarity(texts, videos),
            model.similarity(texts, videos, chunk_size=3),
        )
    for k in full:
        torch.testing.assert_close(chunked[k], full[k])
    with pytest.raises(DataValidationError, match="granularities"):
        UCoFiA(UCoFiAConfig(dim=16, granularities=("pixels",)))
    with pytest.raises(DataValidationError, match="patch_tokens are required"):
        model.encode_videos(frames, None)
    with pytest.raises(DataValidationError, match="square"):
        symmetric_ce_loss(torch.zeros(2, 3))


# ----------------------------------------------------------------------------- retrieval metrics
def test_identity_matrix_is_perfect() -> None:
    m = retrieval_metrics(torch.eye(12))
    for side in ("t2v", "v2t"):
        assert m[side] == {"R1": 100.0, "R5": 100.0, "R10": 100.0, "MedR": 1.0, "MeanR": 1.0}


def test_known_permutation() -> None:
    # text i's true video sits at rank i + 1 (0-based position i in its row ordering)
    n = 12
    sims = torch.zeros(n, n)
    for i in range(n):
        order = [j for j in range(n) if j != i]
        order.insert(i, i)  # the gt video at position i
        sims[i, order] = torch.linspace(1.0, 0.0, n)
    m = retrieval_metrics(sims)["t2v"]
    ranks = np.arange(1, n + 1)
    assert m["R1"] == pytest.approx(100 / 12) and m["R5"] == pytest.approx(500 / 12)
    assert m["R10"] == pytest.approx(1000 / 12)
    assert m["MedR"] == np.median(ranks) and m["MeanR"] == ranks.mean()


def test_ties_and_gt_indices() -> None:
    const = torch.zeros(5, 5)
    assert retrieval_metrics(const)["t2v"]["MedR"] == 5.0  # pessimistic: worst rank
    assert retrieval_metrics(const, ties="optimistic")["t2v"]["R1"] == 100.0
    # two texts per video; video-to-text counts its best-ranked caption
    sims = torch.tensor([[0.9, 0.1], [0.2, 0.3], [0.1, 0.8], [0.7, 0.6]])
    m = retrieval_metrics(sims, gt=[0, 0, 1, 1])
    assert m["t2v"]["R1"] == 50.0  # texts 1 and 3 miss
    assert m["v2t"]["R1"] == 100.0  # video 0 -> text 0, video 1 -> text 2 (both correct)


def test_matches_sort_based_reference(rng: np.random.Generator) -> None:
    x = rng.normal(size=(30, 30))
    ref = np.argwhere(np.argsort(-x, axis=1) == np.arange(30)[:, None])[:, 1] + 1  # CLIP4Clip-style
    m = retrieval_metrics(x)["t2v"]
    assert m["MedR"] == float(np.median(ref)) and m["MeanR"] == float(ref.mean())
    assert m["R1"] == 100 * float(np.mean(ref <= 1))


@pytest.mark.parametrize(
    "sims, gt, match",
    [
        (np.zeros((2, 3)), None, "square"),
        (np.array([[0.0, np.nan], [0.0, 0.0]]), None, "NaN"),
        (np.zeros((2, 3)), [0, 3], r"gt\[1\] = 3"),
        (np.zeros((2, 3)), [0], "one integer"),
        (np.zeros(3), None, "2-D"),
    ],
)
def test_metric_bad_input(sims: np.ndarray, gt: list | None, match: str) -> None:
    with pytest.raises(MetricInputError, match=match):
        retrieval_metrics(sims, gt)
