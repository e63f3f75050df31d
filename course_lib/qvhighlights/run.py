"""Train, predict and evaluate COREBA on a QVHighlights release (what the command line runs).

* :func:`train_run` - a resumable run folder: ``run_config.json`` (the settings, written once),
  ``best.*`` / ``last.*`` checkpoints, ``last_state.pt`` and ``history.json`` (see
  :mod:`course_lib.training.checkpoint`; every file is written atomically). Running the same
  command again continues after the last finished epoch; ``--epochs N`` with a larger N extends
  a finished run.
* :func:`predict_run` - ``hl_val_submission.jsonl`` / ``hl_test_submission.jsonl`` in the
  official format (moment_detr ``standalone_eval/README.md``), from the best checkpoint.
* :func:`eval_run` - the official metrics (:func:`course_lib.metrics.eval_qvhighlights`) of a
  submission against a ground-truth file, written next to it as ``*_metrics.json`` (moment_detr's
  ``inference.py`` naming).

Every function reports progress through ``log`` (``print`` by default) and raises
:class:`~course_lib.errors.CourseError` subclasses that name the bad file, record or field.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

from course_lib.alignment import build_model
from course_lib.datasets.records import read_jsonl
from course_lib.datasets.safe_read import read_json_file
from course_lib.env import pick_device, seed_everything
from course_lib.errors import CheckpointError, CourseError, DataValidationError
from course_lib.files import atomic_write
from course_lib.metrics import eval_qvhighlights, read_submission, write_submission
from course_lib.qvhighlights.config import (
    RunConfig,
    differences,
    load_run_config,
    run_config_from_dict,
    with_overrides,
)
from course_lib.qvhighlights.release import ReleaseFeatures, ReleaseLayout, read_split
from course_lib.training.checkpoint import load_checkpoint, read_checkpoint_info
from course_lib.training.loop import autocast_dtype, make_loader, predict, train

RUN_CONFIG = "run_config.json"
SUBMISSION = "hl_{split}_submission.jsonl"
REPORTED = ("MR-full-mAP", "MR-full-R1@0.5", "MR-full-R1@0.7", "HL-min-VeryGood-mAP")
Log = Callable[[str], None]


# ----------------------------------------------------------------------------- run folder
def _write_json(path: Path, data: dict) -> None:
    """Write ``data`` as indented json, atomically."""
    with atomic_write(path, "w") as handle:
        json.dump(data, handle, indent=2)


def read_run(run_dir: str | os.PathLike) -> tuple[RunConfig, Path]:
    """The settings and release folder of a run started by :func:`train_run`.

    Raises:
        CheckpointError: no run there (names the folder), or an unreadable ``run_config.json``.
    """
    path = Path(run_dir) / RUN_CONFIG
    if not path.is_file():
        raise CheckpointError(
            f"no QVHighlights run in {run_dir} ({RUN_CONFIG} is missing): run "
            f"`python -m course_lib.qvhighlights train --release DIR --run-dir {run_dir}` first"
        )
    data = read_json_file(path, "run config", CheckpointError)
    release = data.pop("release", None)
    try:
        config = run_config_from_dict(data, str(path))
    except DataValidationError as exc:
        raise CheckpointError(str(exc)) from None
    if not isinstance(release, str):
        raise CheckpointError(f"{path}: field 'release' must name the release folder")
    return config, Path(release)


def resolve_run_config(
    run_dir: Path, config_path: str | os.PathLike | None, overrides: dict
) -> tuple[RunConfig, RunConfig]:
    """The settings of a new or resumed run, and those to keep in its ``run_config.json``.

    A new run reads ``config_path`` (default: the shipped COREBA file) plus ``overrides``. A run
    folder that already has a ``run_config.json`` keeps it; a ``config_path`` or override that
    changes a result-determining field is refused (runtime fields and ``epochs`` may change).
    The kept settings leave out this call's device, workers and progress choices, so a run
    started on a GPU can be predicted on a CPU.

    Returns:
        ``(settings of this call, settings to store)``.

    Raises:
        DataValidationError: a bad config file, or settings that differ from the stored run's
            (every differing field named).
    """
    if not (run_dir / RUN_CONFIG).is_file():
        base = load_run_config(config_path)
        keep = {k: overrides.get(k) for k in ("video_features", "epochs")}
        return with_overrides(base, **overrides), with_overrides(base, **keep)
    stored, _ = read_run(run_dir)
    base = load_run_config(config_path) if config_path is not None else stored
    requested = with_overrides(base, **overrides)
    changed = differences(stored, requested)
    if changed:
        raise DataValidationError(
            f"run {run_dir} was started with other settings ({'; '.join(changed)}); continue it "
            "without them or use a new --run-dir"
        )
    return requested, stored


def choose_device(requested: str | None) -> str:
    """:func:`course_lib.env.pick_device`, a device that is not there raised as a CourseError."""
    try:
        return pick_device(requested)
    except ValueError as exc:
        raise CourseError(str(exc)) from None


def _workers(requested: int) -> int:
    """DataLoader workers: the config's number, at most one per CPU core."""
    return min(requested, os.cpu_count() or 1)


# ----------------------------------------------------------------------------- train
def _epoch_line(row: dict, epochs: int) -> str:
    """One progress line per finished epoch."""
    val = row.get("val") or {}
    metrics = "  ".join(f"{k} {val[k]:.2f}" for k in REPORTED if k in val)
    return (
        f"epoch {row['epoch'] + 1}/{epochs}  loss {row['train']['total']:.4f}  {metrics}  "
        f"({row['seconds']:.1f} s)"
    )


def train_run(
    release: str | os.PathLike,
    run_dir: str | os.PathLike,
    config_path: str | os.PathLike | None = None,
    log: Log = print,
    **overrides,
) -> dict:
    """Train COREBA on the train split, validating on val every epoch; resumable.

    Args:
        release: the release folder (:class:`~course_lib.qvhighlights.release.ReleaseLayout`).
        run_dir: the run folder (created; an existing run continues).
        config_path: settings file (default: the shipped ``coreba_qvhighlights.json``).
        log: where progress lines go.
        **overrides: ``video_features``, ``epochs``, ``device``, ``num_workers``, ``progress``
            (see :func:`~course_lib.qvhighlights.config.with_overrides`; None keeps the file's).

    Returns:
        The best checkpoint's sidecar (``epoch``, ``metrics`` on val, configs).
    """
    run_dir = Path(run_dir)
    # 1. settings: the stored run's, or the file's with the overrides; saved before training
    config, stored = resolve_run_config(run_dir, config_path, overrides)
    layout = ReleaseLayout(Path(release).resolve())
    run_dir.mkdir(parents=True, exist_ok=True)
    _write_json(run_dir / RUN_CONFIG, stored.to_dict() | {"release": str(layout.root)})
    # 2. records and features (widths from the first training record)
    training = config.training
    splits = {name: read_split(layout, name, training.clip_len) for name in ("train", "val")}
    features = ReleaseFeatures(layout, config.features)
    widths = features.widths(splits["train"][0])
    # 3. the model, seeded, and the loaders
    device = choose_device(training.device)
    training = replace(training, device=device, num_workers=_workers(training.num_workers))
    seed_everything(training.seed)
    model = build_model(config.model_config(**widths))
    train_loader = make_loader(
        splits["train"], features.video, features.query, training, shuffle=True
    )
    val_loader = make_loader(splits["val"], features.video, features.query, training)
    amp = autocast_dtype(device, training.amp)
    log(
        f"QVHighlights {layout.root}: {len(splits['train'])} train / {len(splits['val'])} val "
        f"queries; video {config.features.describe()}, d_v {widths['d_v']}, d_t {widths['d_t']}"
    )
    log(
        f"COREBA ({sum(p.numel() for p in model.parameters())} parameters) on {device}"
        f"{f', autocast {amp}' if amp is not None else ''}; run folder {run_dir}"
    )
    # 4. train (continues after the last finished epoch, prints one line per epoch)
    start = time.perf_counter()
    history = train(
        model,
        train_loader,
        val_loader,
        training,
        out_dir=run_dir,
        resume=True,
        on_epoch=lambda row: log(_epoch_line(row, training.epochs)),
    )
    if not history:
        log(f"nothing to train: the run already has {training.epochs} epochs (--epochs extends it)")
    # 5. report the best epoch
    best = read_checkpoint_info(run_dir / "best")
    log(
        f"best epoch {best['epoch'] + 1} (val): "
        + "  ".join(f"{k} {best['metrics'][k]:.2f}" for k in REPORTED if k in best["metrics"])
        + f"; {time.perf_counter() - start:.0f} s this call"
    )
    return best


# ----------------------------------------------------------------------------- predict
def predict_run(
    run_dir: str | os.PathLike,
    splits: Sequence[str] = ("val", "test"),
    release: str | os.PathLike | None = None,
    checkpoint: str = "best",
    out_dir: str | os.PathLike | None = None,
    device: str | None = None,
    log: Log = print,
) -> list[Path]:
    """Write ``hl_{split}_submission.jsonl`` for each split with a trained run's checkpoint.

    Args:
        run_dir: a run folder of :func:`train_run`.
        splits: ``val`` and / or ``test`` (``train`` works too).
        release: the release folder (default: the one the run was trained on).
        checkpoint: ``best`` (highest val score) or ``last``.
        out_dir: where the files go (default: ``run_dir``).
        device: torch device (default: the GPU when there is one).
        log: where progress lines go.

    Returns:
        The written files.

    Raises:
        CheckpointError: no run, or a missing / damaged checkpoint.
        DataValidationError: a missing or bad release file (names file, record, field).
    """
    run_dir = Path(run_dir)
    if checkpoint not in ("best", "last"):
        raise CheckpointError(f"checkpoint must be 'best' or 'last', got {checkpoint!r}")
    # 1. the run's settings, its release and its checkpoint
    config, trained_on = read_run(run_dir)
    layout = ReleaseLayout(Path(release) if release is not None else trained_on)
    device = choose_device(device or config.training.device)
    model, info = load_checkpoint(run_dir / checkpoint, device=device)
    training = replace(
        config.training, device=device, num_workers=_workers(config.training.num_workers)
    )
    features = ReleaseFeatures(layout, config.features)
    log(f"{checkpoint} checkpoint of {run_dir} (epoch {info['epoch'] + 1}) on {device}")
    # 2. one official submission file per split
    written = []
    for split in splits:
        records = read_split(layout, split, training.clip_len)
        loader = make_loader(
            records, features.video, features.query, training, require_labels=split != "test"
        )
        submission = predict(model, loader, training)
        path = Path(out_dir or run_dir) / SUBMISSION.format(split=split)
        write_submission(path, submission)
        log(f"{split}: {len(submission)} predictions -> {path}")
        written.append(path)
    return written


# ----------------------------------------------------------------------------- eval
def metrics_path(submission: str | os.PathLike) -> Path:
    """``X.jsonl`` -> ``X_metrics.json`` (moment_detr ``inference.py``)."""
    path = Path(submission)
    return path.with_name(path.name.removesuffix(".jsonl") + "_metrics.json")


def eval_run(
    submission: str | os.PathLike,
    ground_truth: str | os.PathLike,
    out: str | os.PathLike | None = None,
    log: Log = print,
) -> dict:
    """Score a submission with the official QVHighlights metrics and write them as json.

    Args:
        submission: a ``hl_*_submission.jsonl`` file.
        ground_truth: the split's ``highlight_*_release.jsonl`` (with labels).
        out: metrics file (default: :func:`metrics_path` of the submission).
        log: where the brief metrics go.

    Returns:
        :func:`~course_lib.metrics.eval_qvhighlights`'s dict (``brief`` and the full tables).

    Raises:
        MetricInputError: a bad submission, or one that does not match the ground truth (names
            the qid and field).
        DataValidationError: a missing or unreadable ground-truth file.
    """
    # 1. read both files (errors name file and line)
    predictions = read_submission(submission)
    records = read_jsonl(ground_truth)
    # 2. the official metrics, written next to the submission
    metrics = eval_qvhighlights(predictions, records)
    path = Path(out) if out is not None else metrics_path(submission)
    _write_json(path, metrics)
    for key, value in metrics["brief"].items():
        log(f"{key:<24}{value:8.2f}")
    log(f"metrics -> {path}")
    return metrics
