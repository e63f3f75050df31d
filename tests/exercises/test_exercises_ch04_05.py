"""Chapter 4-5 exercise checkers: each passes the reference and rejects plausible mistakes."""

import math

import pytest
import torch

from course_lib.checks import ExerciseError
from course_lib.exercises import ch04, ch05


def stub(*args, **kwargs):
    raise NotImplementedError("exercise")


# ----------------------------------------------------------------------------- 4.1 balanced attention
def attention_without_mask(video, text, text_mask, balance):
    """Forgets the padding mask: garbage at padded words leaks into the output."""
    keys = torch.cat([text, balance[None].expand(len(text), -1, -1)], dim=1)
    weights = (video @ keys.transpose(1, 2) / math.sqrt(video.shape[-1])).softmax(-1)
    return weights @ keys, weights


def attention_without_scaling(video, text, text_mask, balance):
    """Forgets the 1/sqrt(d) temperature."""
    return ch04.balanced_cross_attention(
        video * math.sqrt(video.shape[-1]), text, text_mask, balance
    )


def attention_mask_after_softmax(video, text, text_mask, balance):
    """Zeroes padded words after the softmax without renormalising."""
    keys = torch.cat([text, balance[None].expand(len(text), -1, -1)], dim=1)
    real = torch.cat([text_mask, torch.ones(len(text), len(balance), dtype=torch.bool)], dim=1)
    weights = (video @ keys.transpose(1, 2) / math.sqrt(video.shape[-1])).softmax(-1)
    weights = weights * real[:, None]
    return weights @ keys.masked_fill(~real[..., None], 0.0), weights


def attention_balance_first(video, text, text_mask, balance):
    """Prepends the balance tokens instead of appending them (eq. 1 appends)."""
    keys = torch.cat([balance[None].expand(len(text), -1, -1), text], dim=1)
    real = torch.cat([torch.ones(len(text), len(balance), dtype=torch.bool), text_mask], dim=1)
    scores = video @ keys.transpose(1, 2) / math.sqrt(video.shape[-1])
    weights = scores.masked_fill(~real[:, None], float("-inf")).softmax(-1)
    return weights @ keys.masked_fill(~real[..., None], 0.0), weights


def test_balanced_attention_checker_accepts_the_reference(capsys):
    ch04.check_balanced_cross_attention(ch04.balanced_cross_attention)
    assert "[OK] Exercise 4.1" in capsys.readouterr().out


@pytest.mark.parametrize(
    "wrong",
    [
        attention_without_mask,
        attention_without_scaling,
        attention_mask_after_softmax,
        attention_balance_first,
    ],
)
def test_balanced_attention_checker_rejects(wrong):
    with pytest.raises(ExerciseError, match="Exercise 4.1"):
        ch04.check_balanced_cross_attention(wrong)


def test_balanced_inputs_cover_edge_cases():
    cases = [ch04.balanced_cross_attention_inputs(seed=0, trial=i) for i in range(30)]
    assert any(len(balance) == 0 for _, _, _, balance in cases)
    assert any(not mask[0].any() for _, _, mask, _ in cases)  # a query of padding only
    assert any((~mask).any() and mask.any() for _, _, mask, _ in cases)
    _, weights = ch04.balanced_cross_attention(*cases[0])
    assert torch.allclose(weights.sum(-1), torch.ones(weights.shape[:2]))


# ----------------------------------------------------------------------------- 4.2 CFC
def cfc_without_averaging(vt_block, tv_block, sa_block, video, vmask, text, tmask):
    """Uses the self-attention output instead of (F + SA(F)) / 2 (eq. 3-4)."""
    f_vt, _ = vt_block(video, vmask, text, tmask)
    f_tv, _ = tv_block(text, tmask, video, vmask)
    vt, _ = sa_block(f_vt, vmask, f_vt, vmask)
    tv, _ = sa_block(f_tv, tmask, f_tv, tmask)
    fine, _ = vt_block(vt, vmask, tv, tmask)
    return vt, tv, fine


def cfc_fine_on_raw_text(vt_block, tv_block, sa_block, video, vmask, text, tmask):
    """Fine alignment attends to the input text instead of the refined text stream F~_tv."""
    vt, tv, _ = ch04.cfc_forward(vt_block, tv_block, sa_block, video, vmask, text, tmask)
    fine, _ = vt_block(vt, vmask, text, tmask)
    return vt, tv, fine


def cfc_fine_with_tv_block(vt_block, tv_block, sa_block, video, vmask, text, tmask):
    """Uses the TV-block for the fine pass (eq. 5 reuses the VT-block)."""
    vt, tv, _ = ch04.cfc_forward(vt_block, tv_block, sa_block, video, vmask, text, tmask)
    fine, _ = tv_block(vt, vmask, tv, tmask)
    return vt, tv, fine


def cfc_self_attention_without_mask(vt_block, tv_block, sa_block, video, vmask, text, tmask):
    """Lets padded clips / words take part in the shared self-attention."""
    f_vt, _ = vt_block(video, vmask, text, tmask)
    f_tv, _ = tv_block(text, tmask, video, vmask)
    all_v, all_t = torch.ones_like(vmask), torch.ones_like(tmask)
    sa_v, _ = sa_block(f_vt, vmask, f_vt, all_v)
    sa_t, _ = sa_block(f_tv, tmask, f_tv, all_t)
    vt, tv = (f_vt + sa_v) / 2, (f_tv + sa_t) / 2
    fine, _ = vt_block(vt, vmask, tv, tmask)
    return vt, tv, fine


def test_cfc_checker_accepts_the_reference(capsys):
    ch04.check_cfc_forward(ch04.cfc_forward)
    assert "[OK] Exercise 4.2" in capsys.readouterr().out


@pytest.mark.parametrize(
    "wrong",
    [
        cfc_without_averaging,
        cfc_fine_on_raw_text,
        cfc_fine_with_tv_block,
        cfc_self_attention_without_mask,
    ],
)
def test_cfc_checker_rejects(wrong):
    with pytest.raises(ExerciseError, match="Exercise 4.2"):
        ch04.check_cfc_forward(wrong)


@pytest.mark.parametrize("maker", [ch04.cfc_forward_inputs, ch05.saliency_scores_inputs])
def test_module_inputs_do_not_touch_the_global_rng(maker):
    """Makers that build seeded modules (a CFC block, w_f and w_s) leave torch's RNG alone."""
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    maker(seed=0, trial=0)
    assert torch.equal(torch.rand(3), expected)


# ----------------------------------------------------------------------------- 5.1 Algorithm 1
def loop_with_coarse_update(cfc, n_turns, video, vmask, text, tmask):
    """Adds F~_vt (coarse) instead of F_fine to the video stream."""
    for _ in range(n_turns):
        out = cfc(video, vmask, text, tmask)
        video, text = video + out.vt, text + out.tv
    return video, text


def loop_without_text_update(cfc, n_turns, video, vmask, text, tmask):
    """Never updates the text stream between turns."""
    for _ in range(n_turns):
        video = video + cfc(video, vmask, text, tmask).fine
    return video, text


def loop_without_residual(cfc, n_turns, video, vmask, text, tmask):
    """Replaces the streams instead of adding (no residual between turns)."""
    for _ in range(n_turns):
        out = cfc(video, vmask, text, tmask)
        video, text = out.fine, out.tv
    return video, text


def loop_one_turn_short(cfc, n_turns, video, vmask, text, tmask):
    """Off by one: runs N_r - 1 turns."""
    return ch05.recurrent_alignment(cfc, max(n_turns - 1, 1), video, vmask, text, tmask)


def test_recurrent_checker_accepts_the_reference(capsys):
    ch05.check_recurrent_alignment(ch05.recurrent_alignment)
    assert "[OK] Exercise 5.1" in capsys.readouterr().out


@pytest.mark.parametrize(
    "wrong",
    [loop_with_coarse_update, loop_without_text_update, loop_without_residual, loop_one_turn_short],
)
def test_recurrent_checker_rejects(wrong):
    with pytest.raises(ExerciseError, match="Exercise 5.1"):
        ch05.check_recurrent_alignment(wrong)


# ----------------------------------------------------------------------------- 5.3 margin loss
def margin_without_factor_two(scores, high, low, margin, valid):
    return ch05.margin_loss(scores, high, low, margin, valid) / 2


def margin_counting_invalid_pairs(scores, high, low, margin, valid):
    pos, neg = scores.gather(1, high), scores.gather(1, low)
    return 2 * ((margin + neg - pos).clamp(min=0) * valid).mean()


def margin_without_hinge(scores, high, low, margin, valid):
    pos, neg = scores.gather(1, high), scores.gather(1, low)
    v = valid.float()
    return 2 * ((margin + neg - pos) * v).sum() / v.sum().clamp(min=1)


def margin_nan_without_pairs(scores, high, low, margin, valid):
    pos, neg = scores.gather(1, high), scores.gather(1, low)
    return 2 * (margin + neg - pos).clamp(min=0)[valid].mean()


def test_margin_checker_accepts_the_reference(capsys):
    ch05.check_margin_loss(ch05.margin_loss)
    assert "[OK] Exercise 5.3" in capsys.readouterr().out


@pytest.mark.parametrize(
    "wrong",
    [
        margin_without_factor_two,
        margin_counting_invalid_pairs,
        margin_without_hinge,
        margin_nan_without_pairs,
    ],
)
def test_margin_checker_rejects(wrong):
    with pytest.raises(ExerciseError, match="Exercise 5.3"):
        ch05.check_margin_loss(wrong)


@pytest.mark.parametrize(
    "checker",
    [
        ch04.check_balanced_cross_attention,
        ch04.check_cfc_forward,
        ch05.check_recurrent_alignment,
        ch05.check_margin_loss,
    ],
)
def test_untouched_stub_is_reported_not_failed(checker, capsys):
    assert checker(stub) is None
    assert "[TODO]" in capsys.readouterr().out
