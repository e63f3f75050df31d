"""Tests for course_lib.grounding: Hungarian matcher and DETR / saliency losses."""

import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from course_lib.grounding import (
    HungarianMatcher,
    hungarian_match,
    label_loss,
    match_cost_matrix,
    moment_losses,
    negative_pair_loss,
    rank_contrastive_loss,
    saliency_margin_loss,
    sample_saliency_pairs,
    span_giou_loss,
    span_l1_loss,
)


def random_spans(gen, *shape):
    """Random valid normalised (center, width) spans."""
    center = torch.rand(*shape, generator=gen)
    width = 0.05 + 0.4 * torch.rand(*shape, generator=gen)
    return torch.stack([center, width], dim=-1)


# ============================================================================ matcher
def test_cost_matrix_hand():
    pred = torch.tensor([[0.5, 0.2]])  # [0.4, 0.6]
    tgt = torch.tensor([[0.5, 0.4]])  # [0.3, 0.7]
    logits = torch.tensor([[math.log(3.0), 0.0]])  # p(fg) = 0.75
    cost = match_cost_matrix(pred, logits, tgt, w_span=10, w_giou=1, w_class=4)
    # L1 = 0.2; GIoU = IoU = 0.2 / 0.4 = 0.5 (nested spans)
    assert cost.item() == pytest.approx(10 * 0.2 - 0.5 - 4 * 0.75)
    no_class = match_cost_matrix(pred, None, tgt)
    assert no_class.item() == pytest.approx(2.0 - 0.5)


def brute_force_cost(cost):
    """Minimum total cost over all injective maps targets -> predictions."""
    q, n = cost.shape
    return min(
        sum(cost[p, t].item() for t, p in enumerate(perm))
        for perm in itertools.permutations(range(q), n)
    )


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize(
    "weights", [(10.0, 1.0, 4.0), (1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0)]
)
def test_hungarian_is_optimal(seed, weights):
    gen = torch.Generator().manual_seed(seed)
    B, Q = 3, 5
    pred = random_spans(gen, B, Q)
    logits = torch.randn(B, Q, 2, generator=gen)
    targets = [random_spans(gen, n) for n in (1, 3, 5)]
    indices = hungarian_match(pred, logits, targets, *weights)
    for b, (p_idx, t_idx) in enumerate(indices):
        n = len(targets[b])
        assert len(p_idx) == len(t_idx) == n
        assert sorted(t_idx.tolist()) == list(range(n))  # every target matched once
        assert len(set(p_idx.tolist())) == n  # to distinct predictions
        cost = match_cost_matrix(pred[b], logits[b], targets[b], *weights)
        assert cost[p_idx, t_idx].sum().item() == pytest.approx(brute_force_cost(cost), abs=1e-5)


def test_hungarian_obvious_assignment_and_empty():
    pred = torch.tensor([[[0.2, 0.1], [0.8, 0.1], [0.5, 0.5]]])
    targets = [torch.tensor([[0.8, 0.1], [0.2, 0.1]])]
    ((p_idx, t_idx),) = HungarianMatcher()(pred, None, targets)
    assert dict(zip(p_idx.tolist(), t_idx.tolist())) == {0: 1, 1: 0}
    ((p_idx, t_idx),) = hungarian_match(pred, None, [torch.zeros(0, 2)])
    assert len(p_idx) == len(t_idx) == 0


def test_hungarian_bad_input():
    pred = torch.rand(1, 2, 2)
    with pytest.raises(ValueError, match="only 2 queries"):
        hungarian_match(pred, None, [torch.rand(3, 2)])
    with pytest.raises(ValueError, match="target sets"):
        hungarian_match(pred, None, [torch.rand(1, 2), torch.rand(1, 2)])
    with pytest.raises(ValueError, match="non-zero"):
        HungarianMatcher(0, 0, 0)


# ============================================================================ moment losses
def test_span_losses_zero_at_targets_and_positive_elsewhere():
    gen = torch.Generator().manual_seed(0)
    targets = [random_spans(gen, 2), random_spans(gen, 1)]
    pred = random_spans(gen, 2, 4)
    pred[0, 3], pred[0, 1], pred[1, 2] = targets[0][0], targets[0][1], targets[1][0]
    indices = hungarian_match(pred, None, targets)
    assert span_l1_loss(pred, targets, indices).item() == pytest.approx(0.0, abs=1e-7)
    assert span_giou_loss(pred, targets, indices).item() == pytest.approx(0.0, abs=1e-6)
    shifted = pred + torch.tensor([0.1, 0.0])
    assert span_l1_loss(shifted, targets, indices).item() == pytest.approx(0.05)  # mean over (c, w)
    assert span_giou_loss(shifted, targets, indices).item() > 0


def test_span_losses_without_targets_are_zero_with_grad():
    pred = torch.rand(2, 3, 2, requires_grad=True)
    empty = [torch.zeros(0, 2), torch.zeros(0, 2)]
    indices = hungarian_match(pred, None, empty)
    loss = span_l1_loss(pred, empty, indices) + span_giou_loss(pred, empty, indices)
    loss.backward()
    assert loss.item() == 0.0 and pred.grad is not None


def test_label_loss_hand_and_eos_weight():
    logits = torch.tensor([[[2.0, 0.0], [0.0, 1.0], [0.5, 0.5]]])
    indices = [(torch.tensor([0]), torch.tensor([0]))]
    ce = F.cross_entropy(logits[0], torch.tensor([0, 1, 1]), reduction="none")
    expected = (ce[0] + 0.1 * ce[1] + 0.1 * ce[2]) / 3
    assert label_loss(logits, indices, eos_coef=0.1).item() == pytest.approx(expected.item())
    assert label_loss(logits, indices, eos_coef=1.0).item() == pytest.approx(ce.mean().item())


def test_moment_losses_decrease_when_training():
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(1)
    targets = [random_spans(gen, 2), random_spans(gen, 1)]
    pred_raw = torch.zeros(2, 5, 2, requires_grad=True)
    logits = torch.zeros(2, 5, 2, requires_grad=True)
    opt = torch.optim.Adam([pred_raw, logits], lr=0.1)
    history = []
    for _ in range(25):
        pred = torch.sigmoid(pred_raw + torch.linspace(-1, 1, 5)[None, :, None])
        indices = hungarian_match(pred, logits, targets)
        parts = moment_losses(pred, logits, targets, indices)
        loss = 10 * parts["span"] + parts["giou"] + 4 * parts["label"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        history.append(loss.item())
    assert history[-1] < 0.3 * history[0]


# ============================================================================ saliency losses
def test_margin_loss_hand():
    scores = torch.tensor([[0.9, 0.1, 0.8, 0.75]])
    high, low = torch.tensor([[0, 2]]), torch.tensor([[1, 3]])
    # pair 1 separated by 0.8 -> 0; pair 2 by 0.05 -> 0.15; mean 0.075, times 2
    assert saliency_margin_loss(scores, high, low, margin=0.2).item() == pytest.approx(0.15)
    valid = torch.tensor([[True, False]])
    assert saliency_margin_loss(scores, high, low, 0.2, valid).item() == pytest.approx(0.0)
    assert saliency_margin_loss(scores, high, low, margin=0.0).item() == 0.0


def test_sample_saliency_pairs():
    gen = torch.Generator().manual_seed(0)
    saliency = torch.tensor([[0, 3, 5, 1, 9], [2, 2, 2, 2, 2], [0, 4, 0, 0, 7]], dtype=torch.float)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 1, 1], [1, 1, 1, 0, 0]], dtype=torch.bool)
    high, low, valid = sample_saliency_pairs(saliency, mask, n_pairs=8, generator=gen)
    assert valid[0].all() and not valid[1].any() and valid[2].all()
    for b in (0, 2):
        assert (saliency[b, high[b]] > saliency[b, low[b]]).all()
        assert mask[b, high[b]].all() and mask[b, low[b]].all()  # padding never sampled


def test_negative_pair_loss():
    mask = torch.tensor([[True, True, False]])
    scores = torch.tensor([[0.0, 2.0, 100.0]])
    expected = -math.log(0.5) - math.log(1 - 1 / (1 + math.exp(-2.0)))
    assert negative_pair_loss(scores, mask).item() == pytest.approx(expected)  # padding ignored
    assert negative_pair_loss(torch.full((1, 3), -30.0), mask).item() < 1e-10


def test_rank_contrastive_prefers_correct_ranking_and_ignores_padding():
    labels = torch.tensor([[0, 3, 12, 6, 0, 0]])
    mask = torch.tensor([[True, True, True, True, True, False]])
    good = labels.float() / 4
    bad = -good
    assert rank_contrastive_loss(good, labels, mask) < rank_contrastive_loss(bad, labels, mask)
    moved_padding = good.clone()
    moved_padding[0, 5] = 50.0
    assert rank_contrastive_loss(moved_padding, labels, mask).item() == pytest.approx(
        rank_contrastive_loss(good, labels, mask).item()
    )
    # negative pair clips join the denominator: high negative scores make it worse
    neg = torch.full((1, 6), 5.0)
    assert rank_contrastive_loss(good, labels, mask, neg) > rank_contrastive_loss(
        good, labels, mask, -neg
    )


def test_rank_contrastive_no_positive_is_zero():
    loss = rank_contrastive_loss(
        torch.randn(2, 4), torch.zeros(2, 4, dtype=torch.long), torch.ones(2, 4, dtype=torch.bool)
    )
    assert loss.item() == 0.0


def test_saliency_losses_decrease_when_training():
    torch.manual_seed(0)
    labels = torch.randint(0, 13, (3, 10))
    mask = torch.ones(3, 10, dtype=torch.bool)
    mask[2, 7:] = False
    scores = torch.zeros(3, 10, requires_grad=True)
    neg_scores = torch.zeros(3, 10, requires_grad=True)
    high, low, valid = sample_saliency_pairs(
        labels.float(), mask, 4, torch.Generator().manual_seed(0)
    )
    opt = torch.optim.SGD([scores, neg_scores], lr=0.5)

    def total():
        return (
            saliency_margin_loss(scores, high, low, 0.2, valid)
            + negative_pair_loss(neg_scores, mask)
            + rank_contrastive_loss(scores, labels, mask, neg_scores)
        )

    start = total().item()
    for _ in range(50):
        opt.zero_grad()
        total().backward()
        opt.step()
    assert total().item() < 0.5 * start
