"""Chapter 5 saliency-head checker (Exercise 5.2): it passes the reference, which is the library's
own score, and rejects plausible mistakes with a one-line reproduction; chapter 5's checkers are
named as the notebook numbers its exercises."""

import math
import re
from pathlib import Path

import pytest
import torch
from exercise_helpers import assert_checkers_follow_notebook, failure, stub

from course_lib.alignment.heads import SaliencyEncoder, clip_positions, sine_embedding
from course_lib.checks import compare
from course_lib.exercises import ch05

SOLUTION = Path(__file__).resolve().parents[2] / "solutions" / "05_recurrent_alignment.ipynb"


# ----------------------------------------------------------------------------- planted mistakes
def saliency_without_mask(encoded, video_mask, w_f, w_s):
    """Forgets the padded clips: they get a score from the garbage they hold."""
    token, clips = encoded[:, 0], encoded[:, 1:]
    return (w_f(clips) * w_s(token)[:, None]).sum(-1) / math.sqrt(encoded.shape[-1])


def saliency_divided_by_d(encoded, video_mask, w_f, w_s):
    """Divides by d, as eq. 7 is printed, instead of sqrt(d) as the library (and QD-DETR) do."""
    d = encoded.shape[-1]
    return ch05.saliency_scores(encoded, video_mask, w_f, w_s) * math.sqrt(d) / d


def saliency_unscaled(encoded, video_mask, w_f, w_s):
    """Forgets the 1/sqrt(d) scaling."""
    return ch05.saliency_scores(encoded, video_mask, w_f, w_s) * math.sqrt(encoded.shape[-1])


def saliency_token_last(encoded, video_mask, w_f, w_s):
    """Reads the token from the last position (the paper writes [F || t_s]); it is at position 0."""
    token, clips = encoded[:, -1], encoded[:, :-1]
    scores = (w_f(clips) * w_s(token)[:, None]).sum(-1) / math.sqrt(encoded.shape[-1])
    return scores.masked_fill(~video_mask, 0.0)


def saliency_mean_token(encoded, video_mask, w_f, w_s):
    """Uses the mean of the real clips instead of the encoded saliency token."""
    clips = encoded[:, 1:]
    real = video_mask[..., None].to(clips.dtype)
    token = (clips * real).sum(1) / real.sum(1)
    scores = (w_f(clips) * w_s(token)[:, None]).sum(-1) / math.sqrt(encoded.shape[-1])
    return scores.masked_fill(~video_mask, 0.0)


def saliency_swapped_projections(encoded, video_mask, w_f, w_s):
    """Applies w_s to the clips and w_f to the token."""
    return ch05.saliency_scores(encoded, video_mask, w_s, w_f)


def saliency_with_token_column(encoded, video_mask, w_f, w_s):
    """Scores the token as well: (B, 1 + T) instead of (B, T)."""
    token = encoded[:, 0]
    scores = (w_f(encoded) * w_s(token)[:, None]).sum(-1) / math.sqrt(encoded.shape[-1])
    real = torch.cat([torch.ones_like(video_mask[:, :1]), video_mask], dim=1)
    return scores.masked_fill(~real, 0.0)


def saliency_minus_inf_padding(encoded, video_mask, w_f, w_s):
    """Writes -inf at padded clips (a softmax habit); the head writes 0 there."""
    return ch05.saliency_scores(encoded, video_mask, w_f, w_s).masked_fill(
        ~video_mask, float("-inf")
    )


PLANTED = [
    (saliency_without_mask, "differs at"),
    (saliency_divided_by_d, "differs at"),
    (saliency_unscaled, "differs at"),
    (saliency_token_last, "differs at"),
    (saliency_mean_token, "differs at"),
    (saliency_swapped_projections, "differs at"),
    (saliency_with_token_column, "should have shape"),
    (saliency_minus_inf_padding, "got -inf"),
]


# ----------------------------------------------------------------------------- 5.2 saliency head
def test_saliency_checker_accepts_the_reference(capsys):
    assert ch05.check_saliency_scores(ch05.saliency_scores) is None
    assert "[OK] Exercise 5.2: saliency_scores" in capsys.readouterr().out


def test_saliency_checker_accepts_an_einsum_answer_with_other_names(capsys):
    """A right answer written another way, with its own parameter names (called positionally)."""

    def head(x, mask, proj_clip, proj_token):
        s = torch.einsum("btd,bd->bt", proj_clip(x[:, 1:]), proj_token(x[:, 0]))
        return torch.where(mask, s / x.shape[-1] ** 0.5, torch.zeros_like(s))

    ch05.check_saliency_scores(head)
    assert "[OK] Exercise 5.2" in capsys.readouterr().out


@pytest.mark.parametrize(("wrong", "words"), PLANTED, ids=[w.__name__ for w, _ in PLANTED])
def test_saliency_checker_rejects(wrong, words):
    message = failure(ch05.check_saliency_scores, wrong)
    first = message.splitlines()[0]
    assert first.startswith("Exercise 5.2: saliency_scores: ") and words in first, message


def test_saliency_untouched_stub_is_reported_not_failed(capsys):
    assert ch05.check_saliency_scores(stub) is None
    assert "[TODO] Exercise 5.2: saliency_scores" in capsys.readouterr().out


def test_saliency_failure_ends_with_a_reproduction_line():
    """Three lines, no module repr, and the last one reruns the failing trial positionally."""
    message = failure(ch05.check_saliency_scores, saliency_without_mask)
    lines = message.splitlines()
    assert len(lines) == 3 and "Linear(in_features=" in lines[1]
    match = re.fullmatch(
        r"from course_lib\.exercises import ch05; args = ch05\.saliency_scores_inputs\(seed=0, "
        r"trial=(\d+)\); saliency_without_mask\(\*args\)",
        lines[-1],
    )
    assert match is not None, lines[-1]
    namespace = {"saliency_without_mask": saliency_without_mask}
    exec(lines[-1].rpartition("; ")[0], namespace)  # the import and the inputs
    with torch.no_grad():
        got = eval(lines[-1].rpartition("; ")[2], namespace)
        args = ch05.saliency_scores_inputs(seed=0, trial=int(match.group(1)))
        expected = ch05.saliency_scores(*args)
    problem = compare(expected, got, atol=1e-5, rtol=1e-4)
    assert problem is not None and lines[0].endswith(problem)


def test_saliency_inputs_cover_edge_cases():
    inputs = [ch05.saliency_scores_inputs(seed=0, trial=t) for t in range(30)]
    assert any(encoded.shape[0] == 1 for encoded, *_ in inputs)  # a batch of one
    assert any(encoded.shape[1] == 2 for encoded, *_ in inputs)  # a video of a single clip
    assert any((~mask).any() for _, mask, *_ in inputs)  # padded clips
    assert any(mask.all() for _, mask, *_ in inputs)  # no padding at all
    assert all(mask.any(1).all() for _, mask, *_ in inputs)  # every video has a real clip
    assert {encoded.shape[-1] for encoded, *_ in inputs} == {4, 8, 16}
    for encoded, mask, w_f, w_s in inputs:
        assert encoded.shape[1] == mask.shape[1] + 1
        assert not torch.equal(w_f.weight, w_s.weight)


@pytest.mark.parametrize("n_real", [(3, 5), (1,), (1, 1)])
def test_reference_is_the_library_saliency_head(n_real):
    """The reference reproduces SaliencyEncoder's scores from its last layer's output."""
    torch.manual_seed(0)
    d, t = 8, max(n_real)
    encoder = SaliencyEncoder(d, n_heads=2, dim_feedforward=16, dropout=0.0).eval()
    mask = torch.arange(t)[None] < torch.tensor(n_real)[:, None]
    video = torch.randn(len(n_real), t, d).masked_fill(~mask[..., None], 0.0)
    pos = sine_embedding(clip_positions(mask)[..., None], d).masked_fill(~mask[..., None], 0.0)
    captured = {}
    hook = encoder.layers[-1].register_forward_hook(lambda m, i, out: captured.update(x=out[0]))
    try:
        with torch.no_grad():
            _, scores = encoder(video, mask, pos)
            mine = ch05.saliency_scores(captured["x"], mask, encoder.w_f, encoder.w_s)
    finally:
        hook.remove()
    assert torch.allclose(mine, scores, atol=1e-6)


# ----------------------------------------------------------------------------- numbering
CHECKERS = [
    ch05.check_recurrent_alignment,
    ch05.check_saliency_scores,
    ch05.check_margin_loss,
]


def test_checker_names_follow_the_notebooks_exercise_numbers(capsys):
    """Each checker names the exercise as the student notebook's stub does ("Exercise 5.M: f")."""
    assert_checkers_follow_notebook(SOLUTION, CHECKERS, capsys)
