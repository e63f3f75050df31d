"""Environment check for notebook 00: every package importable, the data/ files there, the device.

A wheel install (``pip install course_lib``) ships the library but not the repository's ``data/``
folder of committed checkpoints, so the report says what is missing and how to get it instead of
``[OK]``: install from a clone, or point ``COURSE_DATA_DIR`` (:data:`course_lib.env.DATA_ENV`) at
a clone's ``data/`` folder. Only one faiss build may be installed: ``faiss-cpu`` and
``faiss-gpu-cu12`` write the same ``faiss`` module, and the report flags both being present.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
from dataclasses import dataclass, field
from pathlib import Path

from course_lib import project

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

#: The committed checkpoints under ``data/`` that the notebooks load (a wheel has none of them):
#: chapter 1's tiny CLIP and clip-level video encoder, chapter 5's COREBA model.
REQUIRED_DATA_FILES: tuple[str, ...] = (
    "tiny_clip.safetensors",
    "video_clip.safetensors",
    "coreba_toy.safetensors",
)

#: pip distributions that each install the ``faiss`` module (at most one may be installed).
FAISS_DISTRIBUTIONS: tuple[str, ...] = (
    "faiss-cpu",
    "faiss-gpu-cu12",
    "faiss-gpu-cu11",
    "faiss-gpu",
)

#: The install that brings every package the notebooks need, from a clone of the repository.
EDITABLE_INSTALL = 'pip install -e ".[notebooks,faiss-cpu]"'


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


@dataclass
class DataStatus:
    """Whether the committed ``data/`` files are where :func:`course_lib.env.data_dir` looks.

    Attributes:
        folder: the data folder, or ``None`` when there is none (an installed wheel, or
            ``COURSE_DATA_DIR`` naming no folder).
        missing: the :data:`REQUIRED_DATA_FILES` not found there.
        problem: :func:`course_lib.env.data_dir`'s message when ``COURSE_DATA_DIR`` names no
            folder, else empty.
    """

    folder: Path | None
    missing: list[str] = field(default_factory=list)
    problem: str = ""  # why there is no folder, when COURSE_DATA_DIR names none

    @property
    def ok(self) -> bool:
        """True when the folder exists and holds every required file."""
        return self.folder is not None and not self.missing


def data_status() -> DataStatus:
    """Look for :data:`REQUIRED_DATA_FILES` in :func:`course_lib.env.data_dir`; never raises."""
    from course_lib import env

    # 1. a wheel install has no checkout, so data_dir() has nowhere to point unless
    #    COURSE_DATA_DIR names a folder (one that is not there is reported as such)
    try:
        folder = env.data_dir()
    except FileNotFoundError as exc:
        problem = str(exc) if os.environ.get(env.DATA_ENV, "").strip() else ""
        return DataStatus(None, list(REQUIRED_DATA_FILES), problem)
    # 2. a checkout (or a folder set up by hand) must hold every committed checkpoint
    missing = [name for name in REQUIRED_DATA_FILES if not (folder / name).is_file()]
    return DataStatus(folder, missing)


def data_report(status: DataStatus) -> list[str]:
    """The report lines for ``status``: one ``[OK]`` line, or ``[FAIL]`` with what to do."""
    if status.ok:
        return [f"[OK]   {'data/':<12} {len(REQUIRED_DATA_FILES)} committed checkpoints"]
    from course_lib.env import DATA_ENV  # lazily: env imports numpy, whose absence is reported

    name = project.github_slug().split("/")[1]
    clone = f"{project.clone_command()} && cd {name}"
    point = f"export {DATA_ENV}=/path/to/{name}/data"
    if status.folder is None and status.problem:
        # COURSE_DATA_DIR is set but names no folder
        return [
            f"[FAIL] {'data/':<12} {status.problem}",
            f"       {'':<12} -> {point} (the data/ folder of a clone: {project.clone_command()})",
        ]
    if status.folder is None:
        # an installed wheel: the library is there, the repository's data/ folder is not
        return [
            f"[FAIL] {'data/':<12} not found: course_lib is installed as a package (a wheel), "
            "which holds the library but not the repository's data/ folder of committed "
            "checkpoints the notebooks load",
            f"       {'':<12} missing: {', '.join(status.missing)}",
            f"       {'':<12} -> clone the course and install it from the clone: "
            f"{clone} && {EDITABLE_INSTALL}",
            f"       {'':<12} -> or keep this install and point {DATA_ENV} at a clone's data/ "
            f'folder: {clone} && export {DATA_ENV}="$PWD/data"',
        ]
    # a data folder without some of the committed files (deleted, or an incomplete copy)
    where = f" ({DATA_ENV})" if os.environ.get(DATA_ENV, "").strip() else ""
    return [
        f"[FAIL] {'data/':<12} {status.folder}{where} lacks {', '.join(status.missing)}",
        f"       {'':<12} -> restore them from the repository (`git checkout -- data/` in a "
        f"clone, or a fresh `{project.clone_command()}`)",
    ]


def installed_faiss() -> list[str]:
    """The :data:`FAISS_DISTRIBUTIONS` installed in this environment, in that order."""
    found = []
    for name in FAISS_DISTRIBUTIONS:
        try:
            importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
        found.append(name)
    return found


def faiss_conflict_report(distributions: list[str]) -> list[str]:
    """A ``[FAIL]`` line when more than one faiss build is installed, else nothing."""
    if len(distributions) < 2:
        return []
    keep = next((name for name in distributions if name != "faiss-cpu"), distributions[0])
    return [
        f"[FAIL] {'faiss':<12} {' and '.join(distributions)} are all installed and overwrite one "
        f"faiss module   -> pip uninstall -y {' '.join(distributions)} && pip install {keep}"
    ]


def print_environment_report() -> bool:
    """Print ``[OK]``/``[FAIL]`` per package, for data/ and the device; True when all are OK."""
    from course_lib.env import fast_mode, in_colab, pick_device

    # 1. one line per package
    statuses = check_environment()
    for status in statuses:
        mark = "[OK]  " if status.ok else "[FAIL]"
        hint = "" if status.ok else f"   -> pip install {status.pip_name}"
        print(f"{mark} {status.module:<12} {status.version}{hint}")
    # 2. two faiss builds at once break each other
    conflict = faiss_conflict_report(installed_faiss())
    # 3. the committed checkpoints (absent from a wheel install)
    data = data_status()
    for line in conflict + data_report(data):
        print(line)
    all_ok = all(s.ok for s in statuses) and not conflict and data.ok
    # 4. the device, once torch imports
    if statuses[0].ok:
        print(f"device: {pick_device()}   FAST mode: {fast_mode()}   Colab: {in_colab()}")
    return all_ok


def main() -> int:
    """Command line (``python -m course_lib.setup_check``): exit status 1 when any check fails."""
    return 0 if print_environment_report() else 1


if __name__ == "__main__":
    raise SystemExit(main())
