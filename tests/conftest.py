"""Shared pytest configuration: tests run offline and in FAST mode, on the CPU."""

import os

import pytest

os.environ.setdefault("COURSE_FAST", "1")
os.environ.setdefault("COURSE_OFFLINE", "1")
os.environ.setdefault("COURSE_DEVICE", "cpu")


@pytest.fixture
def rng():
    """A seeded numpy generator for tests that need random data."""
    import numpy as np

    return np.random.default_rng(0)
