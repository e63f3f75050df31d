"""benchmarks/probe_motion_features.py: the moment AUC it reports (moving pixels: test_motion.py)."""

import numpy as np
import pytest
from conftest import load_script

from course_lib.experiments.ch06_corpus_eval import roc_auc


@pytest.fixture(scope="module")
def probe():
    return load_script("benchmarks/probe_motion_features.py")


def test_moment_auc_orders_inside_above_outside(probe):
    sims = np.array([0.1, 0.9, 0.8, 0.2, 0.3])
    assert probe.moment_auc(sims, [1, 2]) == 1.0
    assert probe.moment_auc(sims, [0, 3]) == 0.0
    assert probe.moment_auc(sims, [2, 4]) == pytest.approx(4 / 6)
    assert probe.moment_auc(sims, [0, 1, 2, 3, 4]) is None
    assert probe.moment_auc(sims, [7]) is None  # a clip id past the end is ignored


def test_roc_auc_counts_ties_as_one_half():
    assert roc_auc(np.array([1.0]), np.array([1.0])) == 0.5
    assert roc_auc(np.array([2.0, 0.0]), np.array([1.0])) == 0.5
    assert roc_auc(np.array([3.0, 2.0]), np.array([1.0, 0.0])) == 1.0
