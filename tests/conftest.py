"""Shared pytest configuration: tests run offline, in FAST mode, on the CPU, on one thread."""

import importlib.util
import os
from pathlib import Path
from types import ModuleType

import pytest

os.environ.setdefault("COURSE_FAST", "1")
os.environ.setdefault("COURSE_OFFLINE", "1")
os.environ.setdefault("COURSE_DEVICE", "cpu")


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """Tests use tiny tensors: one thread is fastest and steady on a shared 2-core CPU."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def rng():
    """A seeded numpy generator for tests that need random data."""
    import numpy as np

    return np.random.default_rng(0)


REPO = Path(__file__).resolve().parents[1]


def load_script(relative_path: str) -> ModuleType:
    """Import a script of the repository (``tools/...``, ``benchmarks/...``) as a module."""
    path = REPO / relative_path
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
