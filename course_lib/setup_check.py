"""Environment check for notebook 00: is every package importable, which device is used."""

from __future__ import annotations

import importlib
from dataclasses import dataclass

# import name -> pip name; torch first so a missing torch is the first thing a learner sees
REQUIRED_PACKAGES: dict[str, str] = {
    "torch": "torch",
    "torchvision": "torchvision",
    "open_clip": "open_clip_torch",
    "faiss": "faiss-cpu",
    "av": "av",
    "numpy": "numpy",
    "scipy": "scipy",
    "pandas": "pandas",
    "matplotlib": "matplotlib",
    "seaborn": "seaborn",
    "ipywidgets": "ipywidgets",
    "tqdm": "tqdm",
    "safetensors": "safetensors",
}


@dataclass
class PackageStatus:
    """Import result of one package."""

    module: str
    pip_name: str
    ok: bool
    version: str


def package_status(module: str, pip_name: str) -> PackageStatus:
    """Try to import ``module`` and read its version; never raises."""
    try:
        imported = importlib.import_module(module)
    except Exception as error:  # any import failure is reported, not raised
        return PackageStatus(module, pip_name, False, f"{type(error).__name__}: {error}")
    return PackageStatus(module, pip_name, True, str(getattr(imported, "__version__", "?")))


def check_environment() -> list[PackageStatus]:
    """Status of every package the course needs."""
    return [package_status(module, pip) for module, pip in REQUIRED_PACKAGES.items()]


def print_environment_report() -> bool:
    """Print ``[OK]``/``[FAIL]`` per package and the device found; True when all are OK."""
    from course_lib.env import fast_mode, in_colab, pick_device

    statuses = check_environment()
    for status in statuses:
        mark = "[OK]  " if status.ok else "[FAIL]"
        hint = "" if status.ok else f"   -> pip install {status.pip_name}"
        print(f"{mark} {status.module:<12} {status.version}{hint}")
    all_ok = all(s.ok for s in statuses)
    if statuses[0].ok:
        print(f"device: {pick_device()}   FAST mode: {fast_mode()}   Colab: {in_colab()}")
    return all_ok


def main() -> int:
    """Command line (``python -m course_lib.setup_check``): exit status 1 when a package fails."""
    return 0 if print_environment_report() else 1


if __name__ == "__main__":
    raise SystemExit(main())
