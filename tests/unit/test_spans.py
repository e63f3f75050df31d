"""Tests for course_lib.spans: coding, IoU / GIoU (numpy and torch), NMS, clip ids."""

import re

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from course_lib import spans as S


def span_strategy(lo: float = 0.0, hi: float = 100.0):
    """A valid span [a, b] with a < b."""
    return st.tuples(st.floats(lo, hi, allow_nan=False), st.floats(0.01, hi, allow_nan=False)).map(
        lambda t: [t[0], t[0] + t[1]]
    )


def test_clip_len_is_defined_once():
    """Every module reads the clip length from course_lib.timeline; nobody redefines it."""
    import pathlib

    from course_lib.timeline import CLIP_LEN

    assert CLIP_LEN == 2.0
    root = pathlib.Path(S.__file__).parent
    defining = [
        str(path.relative_to(root))
        for path in root.rglob("*.py")
        if re.search(r"^\s*CLIP_LEN\s*(:[^=]*)?=", path.read_text(encoding="utf-8"), re.M)
    ]
    assert defining == ["timeline.py"]


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_cxw_roundtrip(backend):
    xx = [[0.0, 4.0], [2.0, 3.0], [10.0, 30.0]]
    arr = np.array(xx) if backend == "numpy" else torch.tensor(xx, dtype=torch.float64)
    cxw = S.span_xx_to_cxw(arr)
    assert type(cxw) is type(arr)
    np.testing.assert_allclose(np.asarray(cxw), [[2.0, 4.0], [2.5, 1.0], [20.0, 20.0]])
    np.testing.assert_allclose(np.asarray(S.span_cxw_to_xx(cxw)), xx)


def test_seconds_normalised_roundtrip():
    xx = np.array([[6.0, 12.0]])
    cxw = S.seconds_to_cxw(xx, 60.0)
    np.testing.assert_allclose(cxw, [[0.15, 0.1]])
    np.testing.assert_allclose(S.cxw_to_seconds(cxw, 60.0), xx)
    # outside the video is clipped
    np.testing.assert_allclose(S.cxw_to_seconds(np.array([[0.95, 0.2]]), 10.0), [[8.5, 10.0]])
    with pytest.raises(ValueError, match="duration"):
        S.normalize_spans(xx, 0.0)


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_iou_hand_computed(backend):
    a = [[0.0, 10.0], [5.0, 7.0]]
    b = [[5.0, 15.0], [20.0, 30.0], [0.0, 10.0]]
    conv = (
        (lambda x: np.array(x))
        if backend == "numpy"
        else (lambda x: torch.tensor(x, dtype=torch.float64))
    )
    iou = S.temporal_iou(conv(a), conv(b))
    expected = [[5 / 15, 0.0, 1.0], [2 / 10, 0.0, 2 / 10]]
    np.testing.assert_allclose(np.asarray(iou), expected)
    giou = S.generalized_temporal_iou(conv(a), conv(b))
    # [0,10] vs [20,30]: iou 0, enclosing 30, union 20 -> -1/3
    expected_g = [[5 / 15, -1 / 3, 1.0], [2 / 10 - 0.0, -(25 - 12) / 25, 2 / 10]]
    np.testing.assert_allclose(np.asarray(giou), expected_g)
    paired = S.paired_temporal_iou(conv(a), conv([b[0], b[2]]))
    np.testing.assert_allclose(np.asarray(paired), [5 / 15, 2 / 10])
    paired_g = S.paired_generalized_temporal_iou(conv(a), conv([b[1], b[1]]))
    np.testing.assert_allclose(np.asarray(paired_g), [-1 / 3, -(25 - 12) / 25])


def test_iou_bit_exact_thresholds():
    # 14 s overlap / 20 s union must be exactly 0.7 (the official >= 0.7 decision)
    iou = S.temporal_iou(np.array([[0.0, 14.0]]), np.array([[0.0, 20.0]]))[0, 0]
    assert iou == 0.7
    assert S.temporal_iou(np.array([[0, 14]]), np.array([[0, 20]]))[0, 0] == 0.7  # int input


def test_iou_zero_length_is_zero_not_nan():
    assert S.temporal_iou(np.array([[3.0, 3.0]]), np.array([[3.0, 3.0]]))[0, 0] == 0.0
    t = torch.tensor([[3.0, 3.0]], requires_grad=True)
    out = S.generalized_temporal_iou(t, torch.tensor([[3.0, 3.0]]))
    assert torch.isfinite(out).all()


def test_iou_shape_errors():
    with pytest.raises(ValueError, match="spans1"):
        S.temporal_iou(np.zeros((3, 3)), np.zeros((1, 2)))
    with pytest.raises(ValueError, match="equal shapes"):
        S.paired_temporal_iou(np.zeros((3, 2)), np.zeros((2, 2)))


def test_giou_gradient_flows():
    pred = torch.tensor([[0.2, 0.5]], requires_grad=True)
    loss = 1 - S.paired_generalized_temporal_iou(pred, torch.tensor([[0.6, 0.9]]))
    loss.sum().backward()
    assert pred.grad is not None and pred.grad.abs().sum() > 0


@settings(max_examples=60, deadline=None)
@given(
    st.lists(span_strategy(), min_size=1, max_size=5),
    st.lists(span_strategy(), min_size=1, max_size=5),
)
def test_iou_properties(a, b):
    a, b = np.array(a), np.array(b)
    iou = S.temporal_iou(a, b)
    giou = S.generalized_temporal_iou(a, b)
    np.testing.assert_allclose(iou, S.temporal_iou(b, a).T)  # symmetric
    assert np.all((iou >= 0) & (iou <= 1 + 1e-12))
    assert np.all((giou >= -1 - 1e-12) & (giou <= 1 + 1e-12))
    assert np.all(giou <= iou + 1e-12)  # the penalty is never negative
    np.testing.assert_allclose(np.diag(S.temporal_iou(a, a)), 1.0)
    # torch and numpy agree
    ta, tb = torch.tensor(a), torch.tensor(b)
    np.testing.assert_allclose(S.temporal_iou(ta, tb).numpy(), iou)
    np.testing.assert_allclose(S.generalized_temporal_iou(ta, tb).numpy(), giou)
    # paired = diagonal of the matrix
    n = min(len(a), len(b))
    np.testing.assert_allclose(S.paired_temporal_iou(a[:n], b[:n]), np.diag(iou[:n, :n]))
    np.testing.assert_allclose(
        S.paired_generalized_temporal_iou(a[:n], b[:n]), np.diag(giou[:n, :n])
    )


def test_nms_hand_computed():
    windows = [[0, 10, 0.5], [0, 9, 0.9], [20, 30, 0.7], [1, 10, 0.6], [21, 30, 0.1]]
    kept = S.temporal_nms(windows, iou_threshold=0.5)
    assert kept == [[0.0, 9.0, 0.9], [20.0, 30.0, 0.7]]
    assert S.temporal_nms(windows, iou_threshold=1.0) == sorted(
        [[float(x) for x in w] for w in windows], key=lambda w: -w[2]
    )
    assert S.temporal_nms(windows, 0.5, max_keep=1) == [[0.0, 9.0, 0.9]]
    assert S.temporal_nms([], 0.5) == []


def test_nms_threshold_is_strict():
    # IoU exactly 1/3 is kept at threshold 1/3 (only IoU > threshold is suppressed)
    kept = S.temporal_nms([[0, 10, 1.0], [5, 15, 0.5]], iou_threshold=1 / 3)
    assert len(kept) == 2


def test_nms_ties_stable():
    kept = S.temporal_nms([[0, 10, 0.5], [1, 10, 0.5]], iou_threshold=0.5)
    assert kept == [[0.0, 10.0, 0.5]]


@pytest.mark.parametrize(
    "window, ids",
    [([0, 2], [0]), ([0, 3], [0, 1]), ([1, 3], [0, 1]), ([2, 8], [1, 2, 3]), ([3.5, 4.0], [1])],
)
def test_window_to_clip_ids(window, ids):
    assert S.window_to_clip_ids(window) == ids


def test_clip_ids_windows_roundtrip():
    assert S.clip_ids_to_windows([9, 3, 4, 5, 4]) == [[6.0, 12.0], [18.0, 20.0]]
    assert S.clip_ids_to_windows([]) == []
    assert S.clip_ids_to_windows([4], duration=9.0) == [[8.0, 9.0]]
    windows = [[6.0, 12.0], [18.0, 20.0], [30.0, 40.0]]
    assert S.clip_ids_to_windows(S.windows_to_clip_ids(windows)) == windows
    with pytest.raises(ValueError, match="st < ed"):
        S.window_to_clip_ids([4, 4])
    with pytest.raises(ValueError, match=">= 0"):
        S.clip_ids_to_windows([-1])


@settings(max_examples=50, deadline=None)
@given(st.sets(st.integers(0, 60), max_size=20))
def test_clip_ids_roundtrip_property(ids):
    assert S.windows_to_clip_ids(S.clip_ids_to_windows(ids)) == sorted(ids)


def test_num_clips():
    assert S.num_clips(150) == 75
    assert S.num_clips(31.0) == 15
