"""Chapter 1 exercise checkers: each passes the reference and rejects plausible mistakes."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from course_lib.checks import ExerciseError
from course_lib.clip.features import pool_clip_features
from course_lib.clip.frames import clip_timestamps
from course_lib.exercises import ch01


def stub(*args):
    raise NotImplementedError("exercise")


# ----------------------------------------------------------------------------- 1.1 InfoNCE
def nce_from_scratch(image, text, logit_scale):
    """A correct learner answer written without the library."""
    logits = logit_scale.exp() * image @ text.T
    targets = torch.arange(len(logits))
    return (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets)) / 2


def nce_one_direction(image, text, logit_scale):
    """Only image -> text."""
    logits = logit_scale.exp() * image @ text.T
    return F.cross_entropy(logits, torch.arange(len(logits)))


def nce_scale_not_exponentiated(image, text, logit_scale):
    """Multiplies by the log-scale itself instead of exp(log-scale)."""
    logits = logit_scale * image @ text.T
    targets = torch.arange(len(logits))
    return (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets)) / 2


def nce_summed_directions(image, text, logit_scale):
    """Adds the two cross-entropies instead of averaging them."""
    return 2 * nce_from_scratch(image, text, logit_scale)


def nce_as_float(image, text, logit_scale):
    """Returns a Python float: no gradient can flow."""
    return float(nce_from_scratch(image, text, logit_scale))


def test_info_nce_checker_passes_correct_answers(capsys):
    ch01.check_info_nce_loss(ch01.info_nce_loss)
    ch01.check_info_nce_loss(nce_from_scratch)
    assert capsys.readouterr().out.count("[OK] Exercise 1.1") == 2


@pytest.mark.parametrize(
    "wrong",
    [nce_one_direction, nce_scale_not_exponentiated, nce_summed_directions, nce_as_float],
)
def test_info_nce_checker_rejects(wrong):
    with pytest.raises(ExerciseError, match="Exercise 1.1"):
        ch01.check_info_nce_loss(wrong)


def test_info_nce_reference_hand_case():
    """Two orthogonal pairs at scale 1: each row is softmax over (1, 0)."""
    eye = torch.eye(2)
    loss = ch01.info_nce_loss(eye, eye, torch.tensor(0.0))
    assert loss.item() == pytest.approx(-math.log(math.e / (math.e + 1)), abs=1e-6)


# ----------------------------------------------------------------------------- 1.2 timestamps
def timestamps_from_scratch(duration, clip_len, k):
    """A correct learner answer with a Python loop."""
    n = max(1, math.ceil(duration / clip_len - 1e-6))
    times, index = [], []
    for i in range(n):
        start, end = i * clip_len, min((i + 1) * clip_len, duration)
        for j in range(k):
            times.append(start + (j + 0.5) / k * (end - start))
            index.append(i)
    return np.array(times, dtype=np.float64), np.array(index, dtype=np.int64)


def timestamps_floor(duration, clip_len, k):
    """floor(duration / clip_len) clips: drops the partial clip and breaks short videos."""
    n = int(duration // clip_len)
    times = (np.arange(n * k) + 0.5) * clip_len / k
    return times.astype(np.float64), np.repeat(np.arange(n), k).astype(np.int64)


def timestamps_full_last_clip(duration, clip_len, k):
    """Treats the last clip as full length: samples past the end of the video."""
    n = max(1, math.ceil(duration / clip_len - 1e-6))
    times = (np.arange(n * k) + 0.5) * clip_len / k
    return times.astype(np.float64), np.repeat(np.arange(n), k).astype(np.int64)


def timestamps_at_starts(duration, clip_len, k):
    """Samples at the start of each part instead of its centre."""
    times, index = timestamps_from_scratch(duration, clip_len, k)
    return times - clip_len / (2 * k), index


def timestamps_float32(duration, clip_len, k):
    times, index = clip_timestamps(duration, clip_len, k)
    return times.astype(np.float32), index


def test_timestamps_checker_passes_correct_answers(capsys):
    ch01.check_clip_timestamps(clip_timestamps)
    ch01.check_clip_timestamps(timestamps_from_scratch)
    assert capsys.readouterr().out.count("[OK] Exercise 1.2") == 2


@pytest.mark.parametrize(
    "wrong",
    [timestamps_floor, timestamps_full_last_clip, timestamps_at_starts, timestamps_float32],
)
def test_timestamps_checker_rejects(wrong):
    with pytest.raises(ExerciseError, match="Exercise 1.2"):
        ch01.check_clip_timestamps(wrong)


def test_timestamp_inputs_cover_edge_cases():
    kinds = set()
    for trial in range(20):  # the 20 trials of the checker
        duration, clip_len, _k = ch01.clip_timestamps_inputs(seed=0, trial=trial)
        ratio = duration / clip_len
        kinds.add("short" if ratio < 1 else "whole" if ratio == round(ratio) else "partial")
    assert kinds == {"short", "whole", "partial"}


# ----------------------------------------------------------------------------- 1.3 pooling
def pool_from_scratch(feats, index, mask, n_clips):
    """A correct learner answer with a loop over clips."""
    out = torch.zeros(n_clips, feats.shape[1])
    for i in range(n_clips):
        chosen = feats[(index == i) & mask]
        if len(chosen):
            out[i] = F.normalize(chosen.mean(0), dim=0)
    return out


def pool_ignores_mask(feats, index, mask, n_clips):
    return pool_clip_features(feats, index, None, n_clips)


def pool_forgets_to_normalise(feats, index, mask, n_clips):
    """The masked mean, but not scaled to unit length."""
    sums = torch.zeros(n_clips, feats.shape[1]).index_add_(0, index, feats * mask[:, None])
    counts = torch.zeros(n_clips).index_add_(0, index, mask.float())
    return sums / counts.clamp(min=1)[:, None]


def pool_normalise_frames_first(feats, index, mask, n_clips):
    """Averages unit-length frame features: frames with large norms no longer weigh more."""
    return pool_clip_features(F.normalize(feats, dim=-1), index, mask, n_clips)


def pool_nan_for_empty(feats, index, mask, n_clips):
    """Divides by zero for clips without valid frames."""
    sums = torch.zeros(n_clips, feats.shape[1]).index_add_(0, index, feats * mask[:, None])
    counts = torch.zeros(n_clips).index_add_(0, index, mask.float())
    return F.normalize(sums / counts[:, None], dim=-1)


def pool_drops_trailing_clip(feats, index, mask, n_clips):
    """Uses index.max() + 1 clips instead of n_clips."""
    return pool_clip_features(feats, index, mask)


def test_pool_checker_passes_correct_answers(capsys):
    ch01.check_pool_clip_features(pool_clip_features)
    ch01.check_pool_clip_features(pool_from_scratch)
    assert capsys.readouterr().out.count("[OK] Exercise 1.3") == 2


@pytest.mark.parametrize(
    "wrong",
    [
        pool_ignores_mask,
        pool_forgets_to_normalise,
        pool_normalise_frames_first,
        pool_nan_for_empty,
        pool_drops_trailing_clip,
    ],
)
def test_pool_checker_rejects(wrong):
    with pytest.raises(ExerciseError, match="Exercise 1.3"):
        ch01.check_pool_clip_features(wrong)


def test_pool_inputs_have_masked_and_empty_clips():
    feats, index, mask, n_clips = ch01.pool_clip_features_inputs(seed=1)
    valid = torch.zeros(n_clips).index_add_(0, index, mask.float())
    assert valid[0] == 0 and (index == 0).sum() >= 2  # frames, all masked
    assert not (index == n_clips - 1).any()  # no frames at all
    assert (valid > 0).any()


@pytest.mark.parametrize(
    "checker", [ch01.check_info_nce_loss, ch01.check_clip_timestamps, ch01.check_pool_clip_features]
)
def test_untouched_stub_is_reported_not_failed(checker, capsys):
    assert checker(stub) is None
    assert "[TODO]" in capsys.readouterr().out
