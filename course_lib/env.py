"""Where the course runs: device choice, seeding, Colab/online detection, caches, FAST mode.

Nothing here runs at import time; every function reads the environment when called, so a
notebook can change ``os.environ`` and see the effect at once.

Environment variables
---------------------
``COURSE_DEVICE``  force a device (``cpu``, ``cuda``, ``cuda:1``, ``mps``).
``COURSE_FAST``    ``1`` = small, CPU-friendly runs (the default in tests and CI),
                   ``0`` = full runs. Unset: fast unless a CUDA GPU is present.
``COURSE_CACHE``   cache directory (default: ``<repo>/.cache`` or ``~/.cache/course_lib``).
``COURSE_DATA_DIR`` folder of the committed artifacts (default: ``<repo>/data``); a wheel
                   install, which has no ``data/``, points it at a checkout's ``data/`` folder.
``COURSE_OFFLINE`` ``1`` makes :func:`is_online` answer ``False`` without touching the network.
"""

from __future__ import annotations

import os
import random
import socket
import sys
from pathlib import Path

import numpy as np

DEVICE_ENV = "COURSE_DEVICE"
FAST_ENV = "COURSE_FAST"
CACHE_ENV = "COURSE_CACHE"
DATA_ENV = "COURSE_DATA_DIR"
OFFLINE_ENV = "COURSE_OFFLINE"

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _env_flag(name: str) -> bool | None:
    """Read a boolean environment variable; ``None`` when unset or empty.

    Raises:
        ValueError: the variable holds something that is not a boolean word.
    """
    raw = os.environ.get(name, "").strip().lower()
    if not raw:
        return None
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise ValueError(f"environment variable {name}={raw!r} is not a boolean (use 1 or 0)")


def pick_device(prefer: str | None = None) -> str:
    """Choose the compute device: ``COURSE_DEVICE`` / ``prefer``, else cuda, mps, cpu.

    Args:
        prefer: device string that wins over auto-detection (the environment variable wins
            over this argument, so an instructor can pin a lab to the CPU).

    Returns:
        A device string usable with ``torch.device``.

    Raises:
        ValueError: a forced device is not available on this machine.
    """
    import torch

    # 1. an explicit request (environment first, then argument)
    forced = os.environ.get(DEVICE_ENV, "").strip() or prefer
    if forced:
        kind = forced.split(":")[0]
        if kind == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device {forced!r} was requested but CUDA is not available")
        if kind == "mps" and not _mps_available():
            raise ValueError(f"device {forced!r} was requested but MPS is not available")
        if kind not in {"cpu", "cuda", "mps"}:
            raise ValueError(f"unknown device {forced!r}: use cpu, cuda[:N] or mps")
        return forced
    # 2. auto-detection, fastest first
    if torch.cuda.is_available():
        return "cuda"
    if _mps_available():
        return "mps"
    return "cpu"


def _mps_available() -> bool:
    """True when Apple's Metal backend is built and usable."""
    import torch

    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def seed_everything(seed: int, deterministic: bool = True) -> None:
    """Seed python, numpy and torch; on CPU also ask torch for deterministic algorithms.

    Args:
        seed: any non-negative integer.
        deterministic: when True, ``torch.use_deterministic_algorithms(True, warn_only=True)``
            so CPU results repeat exactly (GPU kernels without a deterministic variant only warn).
    """
    import torch

    if seed < 0:
        raise ValueError(f"seed must be non-negative, got {seed}")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")


def in_colab() -> bool:
    """True inside Google Colab (the ``google.colab`` module is already imported there)."""
    return "google.colab" in sys.modules or "COLAB_RELEASE_TAG" in os.environ


def is_online(host: str = "pypi.org", port: int = 443, timeout: float = 1.5) -> bool:
    """Fast connectivity check: can a TCP connection to ``host:port`` open within ``timeout``?

    Never hangs longer than ``timeout`` seconds (name resolution included, bounded by the
    same socket timeout), and answers ``False`` at once when ``COURSE_OFFLINE=1``.
    """
    if _env_flag(OFFLINE_ENV):
        return False
    previous = socket.getdefaulttimeout()
    try:
        socket.setdefaulttimeout(timeout)
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False
    finally:
        socket.setdefaulttimeout(previous)


#: Where open_clip downloads pretrained weights from (the Hugging Face Hub).
WEIGHTS_HOST = "huggingface.co"


def can_download_weights(timeout: float = 1.5) -> bool:
    """Whether pretrained CLIP weights can be fetched: :func:`is_online` for :data:`WEIGHTS_HOST`.

    A machine that reaches only a package index (a lab mirror, a proxy that allows pip) counts
    as online for :func:`is_online` but cannot download weights; cells that need weights ask this.
    """
    return is_online(WEIGHTS_HOST, 443, timeout)


#: The Makefile's CPU numerics pins: PyTorch, MKL and oneDNN take their AVX2 code paths, so
#: features, checkpoints and stored notebook outputs repeat bit-exactly on any AVX2 x86-64 CPU.
CPU_NUMERICS_PINS = {
    "ATEN_CPU_CAPABILITY": "avx2",
    "MKL_CBWR": "AVX2",
    "ONEDNN_MAX_CPU_ISA": "AVX2",
}


def pin_cpu_numerics() -> dict[str, str]:
    """Apply :data:`CPU_NUMERICS_PINS` to this process, keeping values already set.

    Scripts that fill the shared ``.cache/`` (feature caches read by the notebooks) or write
    committed results call this first, so a run by hand computes what ``make`` computes. The
    libraries read the variables at their first computation, not at import: call it before
    any tensor work.

    Returns:
        The values now in effect, ``{variable: value}``.
    """
    for name, value in CPU_NUMERICS_PINS.items():
        os.environ.setdefault(name, value)
    return {name: os.environ[name] for name in CPU_NUMERICS_PINS}


def fast_mode() -> bool:
    """Whether to run small (``COURSE_FAST=1``) or full (``COURSE_FAST=0``) experiments.

    Unset: fast on machines without a CUDA GPU, full with one.
    """
    flag = _env_flag(FAST_ENV)
    if flag is not None:
        return flag
    import torch

    return not torch.cuda.is_available()


def repo_root() -> Path | None:
    """The course checkout containing this package, or ``None`` for an installed wheel."""
    candidate = Path(__file__).resolve().parent.parent
    return candidate if (candidate / "pyproject.toml").exists() else None


def data_dir() -> Path:
    """Directory of small committed artifacts (checkpoints, fixtures).

    ``COURSE_DATA_DIR`` when set (a wheel install has no ``data/``: point it at a checkout's
    ``data/`` folder), else ``<repo>/data``, as :func:`cache_dir` reads ``COURSE_CACHE``.

    Raises:
        FileNotFoundError: ``COURSE_DATA_DIR`` names no folder (the message names the variable
            and the path), or it is unset and the library is not in a checkout (a wheel).
    """
    override = os.environ.get(DATA_ENV, "").strip()
    if override:
        folder = Path(override).expanduser()
        if not folder.is_dir():
            raise FileNotFoundError(
                f"{DATA_ENV}={override!r} is not a folder: point it at the data/ folder of a "
                "course checkout, or unset it"
            )
        return folder
    root = repo_root()
    if root is None:
        raise FileNotFoundError(
            "course data/ directory not found: install the course in editable "
            "mode from its checkout (pip install -e '.[notebooks,faiss-cpu]'), or set "
            f"{DATA_ENV} to the data/ folder of a checkout"
        )
    return root / "data"


def cache_dir(sub: str = "") -> Path:
    """Cache directory (created if needed): ``COURSE_CACHE``, else ``<repo>/.cache``.

    Args:
        sub: optional sub-directory name (e.g. ``"features"``).
    """
    override = os.environ.get(CACHE_ENV, "").strip()
    if override:
        base = Path(override).expanduser()
    elif repo_root() is not None:
        base = repo_root() / ".cache"
    else:
        base = Path.home() / ".cache" / "course_lib"
    path = base / sub if sub else base
    path.mkdir(parents=True, exist_ok=True)
    return path
