"""Tests for course_lib.env: device choice, seeding, flags, caches."""

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from course_lib import env


def test_pick_device_defaults_to_available_backend(monkeypatch):
    monkeypatch.delenv(env.DEVICE_ENV, raising=False)
    device = env.pick_device()
    expected = "cuda" if torch.cuda.is_available() else ("mps" if env._mps_available() else "cpu")
    assert device == expected


def test_pick_device_env_override_wins(monkeypatch):
    monkeypatch.setenv(env.DEVICE_ENV, "cpu")
    assert env.pick_device(prefer="cuda") == "cpu"


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_pick_device_unavailable_cuda_is_a_clear_error(monkeypatch):
    monkeypatch.setenv(env.DEVICE_ENV, "cuda")
    with pytest.raises(ValueError, match="CUDA is not available"):
        env.pick_device()


def test_pick_device_unknown_name(monkeypatch):
    monkeypatch.setenv(env.DEVICE_ENV, "tpu")
    with pytest.raises(ValueError, match="unknown device 'tpu'"):
        env.pick_device()


def test_seed_everything_repeats_python_numpy_torch():
    import random

    env.seed_everything(123)
    first = (random.random(), np.random.rand(), torch.rand(3))
    env.seed_everything(123)
    second = (random.random(), np.random.rand(), torch.rand(3))
    assert first[0] == second[0] and first[1] == second[1]
    assert torch.equal(first[2], second[2])


def test_seed_everything_rejects_negative():
    with pytest.raises(ValueError, match="non-negative"):
        env.seed_everything(-1)


@pytest.mark.parametrize(
    ("value", "expected"), [("1", True), ("0", False), ("yes", True), ("off", False)]
)
def test_fast_mode_reads_environment(monkeypatch, value, expected):
    monkeypatch.setenv(env.FAST_ENV, value)
    assert env.fast_mode() is expected


def test_fast_mode_unset_follows_gpu(monkeypatch):
    monkeypatch.delenv(env.FAST_ENV, raising=False)
    assert env.fast_mode() is (not torch.cuda.is_available())


def test_bad_boolean_flag_names_variable(monkeypatch):
    monkeypatch.setenv(env.FAST_ENV, "maybe")
    with pytest.raises(ValueError, match="COURSE_FAST"):
        env.fast_mode()


def test_is_online_respects_offline_flag_instantly(monkeypatch):
    monkeypatch.setenv(env.OFFLINE_ENV, "1")
    start = time.perf_counter()
    assert env.is_online() is False
    assert time.perf_counter() - start < 0.1


def test_is_online_never_hangs_on_a_silent_host(monkeypatch):
    # a host that never answers, simulated without sending any packet: the connection attempt
    # blocks for its timeout and then fails, as a real unroutable address does
    import socket

    calls = []

    def silent(address, timeout=None):
        calls.append((address, timeout))
        time.sleep(timeout)
        raise TimeoutError("timed out")

    monkeypatch.delenv(env.OFFLINE_ENV, raising=False)
    monkeypatch.setattr(socket, "create_connection", silent)
    start = time.perf_counter()
    assert env.is_online(host="weights.example", port=443, timeout=0.3) is False
    assert time.perf_counter() - start < 3.0
    assert calls == [(("weights.example", 443), 0.3)]


def test_can_download_weights_asks_the_weights_host(monkeypatch):
    import socket

    reached = []

    class Connection:
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    reachable = env.WEIGHTS_HOST

    def fake(address, timeout=None):
        reached.append(address)
        if address[0] != reachable:
            raise OSError("only the package index is reachable")
        return Connection()

    monkeypatch.delenv(env.OFFLINE_ENV, raising=False)
    monkeypatch.setattr(socket, "create_connection", fake)
    assert env.can_download_weights() is True and reached == [(env.WEIGHTS_HOST, 443)]
    monkeypatch.setattr(env, "WEIGHTS_HOST", "blocked.example")
    assert env.can_download_weights() is False
    monkeypatch.setenv(env.OFFLINE_ENV, "1")
    assert env.can_download_weights() is False


def test_in_colab_false_here(monkeypatch):
    monkeypatch.delenv("COLAB_RELEASE_TAG", raising=False)
    assert env.in_colab() is False
    monkeypatch.setenv("COLAB_RELEASE_TAG", "release-x")
    assert env.in_colab() is True


def test_cache_dir_override_and_subdir(monkeypatch, tmp_path):
    monkeypatch.setenv(env.CACHE_ENV, str(tmp_path / "c"))
    path = env.cache_dir("features")
    assert path == tmp_path / "c" / "features" and path.is_dir()


def test_data_dir_defaults_to_the_checkouts_data_folder(monkeypatch):
    monkeypatch.delenv(env.DATA_ENV, raising=False)
    assert env.data_dir() == env.repo_root() / "data"


def test_data_dir_honours_course_data_dir_like_cache_dir(monkeypatch, tmp_path):
    # a wheel install has no checkout: COURSE_DATA_DIR points it at a checkout's data/ folder
    monkeypatch.setattr(env, "repo_root", lambda: None)
    monkeypatch.setenv(env.DATA_ENV, f" {tmp_path} ")  # surrounding spaces ignored, as COURSE_CACHE
    assert env.DATA_ENV == "COURSE_DATA_DIR" and env.data_dir() == tmp_path
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "course_data").mkdir()
    monkeypatch.setenv(env.DATA_ENV, "~/course_data")
    assert env.data_dir() == tmp_path / "course_data"
    # it wins over the checkout too
    monkeypatch.setattr(env, "repo_root", lambda: Path("/nonexistent/checkout"))
    assert env.data_dir() == tmp_path / "course_data"


def test_data_dir_names_the_variable_when_it_points_nowhere(monkeypatch, tmp_path):
    monkeypatch.setenv(env.DATA_ENV, str(tmp_path / "missing"))
    with pytest.raises(FileNotFoundError, match=r"COURSE_DATA_DIR='.*missing' is not a folder"):
        env.data_dir()
    (tmp_path / "a_file").write_text("x")
    monkeypatch.setenv(env.DATA_ENV, str(tmp_path / "a_file"))
    with pytest.raises(FileNotFoundError, match="COURSE_DATA_DIR"):
        env.data_dir()
    # unset (or empty) in a wheel install: the message says how to set it
    monkeypatch.setenv(env.DATA_ENV, "")
    monkeypatch.setattr(env, "repo_root", lambda: None)
    with pytest.raises(FileNotFoundError, match="pip install -e.*or set COURSE_DATA_DIR"):
        env.data_dir()


def test_default_cache_is_git_ignored(monkeypatch):
    monkeypatch.delenv(env.CACHE_ENV, raising=False)
    root = env.repo_root()
    assert root is not None
    ignored = (root / ".gitignore").read_text().splitlines()
    assert ".cache/" in ignored
    assert env.cache_dir() == root / ".cache"


def test_setup_check_reports_a_missing_package(monkeypatch, capsys):
    from course_lib import setup_check

    assert setup_check.main() == 0
    assert "[FAIL]" not in capsys.readouterr().out
    missing = {**setup_check.REQUIRED_PACKAGES, "no_such_module_xyz": "no-such-package"}
    monkeypatch.setattr(setup_check, "REQUIRED_PACKAGES", missing)
    assert setup_check.main() == 1
    out = capsys.readouterr().out
    assert "[FAIL] no_such_module_xyz" in out and "pip install no-such-package" in out


def test_environment_yml_installs_the_package_with_the_constraints():
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "environment.yml").read_text()
    assert "-c constraints.txt" in text and "-e .[dev]" in text
    assert "python=3.1" in text


def test_cpu_numerics_pins_equal_the_makefile_and_take_effect_after_import():

    from course_lib.env import CPU_NUMERICS_PINS, repo_root

    makefile = (repo_root() / "Makefile").read_text()
    exported = dict(re.findall(r"^export (\w+) \?= (\S+)$", makefile, flags=re.MULTILINE))
    assert {k: exported.get(k) for k in CPU_NUMERICS_PINS} == CPU_NUMERICS_PINS
    # in a fresh process without the variables, pinning after `import torch` (before any
    # tensor work) still selects the AVX2 kernels; a value already set is kept
    code = (
        "import torch\n"
        "from course_lib.env import pin_cpu_numerics\n"
        "print(pin_cpu_numerics()['MKL_CBWR'], torch.backends.cpu.get_cpu_capability())\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in CPU_NUMERICS_PINS}
    env["MKL_CBWR"] = "COMPATIBLE"
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    ).stdout.split()
    assert out[0] == "COMPATIBLE"
    if out[1] not in {"AVX2", "AVX512"}:
        pytest.skip(f"this CPU's best kernels are {out[1]}, not AVX2 or better")
    assert out[1] == "AVX2"
