"""Checkpoints: safetensors weights + sha256 manifest + json sidecar, and a resumable state.

Layout for a checkpoint ``<stem>`` (e.g. ``runs/coreba/best``):

* ``<stem>.safetensors`` - the model's ``state_dict`` (no pickle: safe to load from anywhere);
* ``<stem>.sha256`` - its checksum manifest in ``sha256sum`` format (``<hex>  <stem
  name>.safetensors``), the convention of every weights file in the course
  (:func:`course_lib.files.write_manifest`); :func:`load_checkpoint` refuses weights whose hash
  differs from it, or that have no manifest;
* ``<stem>.json`` - ``{"model_config", "train_config", "epoch", "metrics", ...}``. Checkpoints
  written before the manifest existed stored the hash in this json as ``"weights_sha256"``;
  they load once their manifest is written (the error message says how).

The resume state ``<out_dir>/last_state.pt`` (next to ``last.safetensors`` / ``last.json``) holds
optimizer, scheduler, epoch, best score and the python / numpy / torch RNG states, all as tensors
or plain numbers, so ``torch.load(..., weights_only=True)`` reads it. Every file is written
atomically (:func:`course_lib.files.atomic_write`).
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors
from torch import nn

from course_lib.datasets.safe_read import (
    check_regular_file,
    cut_text,
    load_torch_file,
    read_bytes,
    read_json_file,
    short_repr,
)
from course_lib.errors import CheckpointError
from course_lib.files import atomic_write, manifest_path, verify_manifest, write_manifest
from course_lib.training.config import MomentTrainingConfig, config_from_dict

LAST, STATE_FILE, HISTORY_FILE = "last", "last_state.pt", "history.json"
# what save_training_state writes into last_state.pt
_STATE_FIELDS = ("epoch", "best_score", "optimizer", "scheduler", "rng")


def _paths(stem: str | os.PathLike) -> tuple[Path, Path]:
    """``(<stem>.safetensors, <stem>.json)``; the manifest is ``manifest_path`` of the first."""
    stem = Path(stem)
    return stem.with_name(stem.name + ".safetensors"), stem.with_name(stem.name + ".json")


def save_checkpoint(
    stem: str | os.PathLike, model: nn.Module, config: MomentTrainingConfig | None, info: dict
) -> Path:
    """Write ``<stem>.safetensors``, its ``<stem>.sha256`` manifest and ``<stem>.json`` atomically.

    Args:
        stem: path without suffix; parent directories are created.
        model: the model (its ``config`` dataclass, if any, is stored as ``model_config``).
        config: the training config (stored as ``train_config``) or None.
        info: json-serialisable extras, e.g. ``{"epoch": 3, "metrics": {...}}``.

    Returns:
        The weights path.
    """
    weights, sidecar = _paths(stem)
    # 1. the weights, then their manifest (hashed from the file as written)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_write(weights, "wb") as handle:
        handle.write(save_safetensors(state))
    write_manifest(weights)
    # 2. the json sidecar: configs and the caller's extras
    model_config = getattr(model, "config", None)
    meta = {
        "model_config": dataclasses.asdict(model_config) if model_config is not None else None,
        "train_config": config.to_dict() if config is not None else None,
        **info,
    }
    with atomic_write(sidecar, "w") as handle:
        json.dump(meta, handle, indent=2, allow_nan=True)
    return weights


def read_checkpoint_info(stem: str | os.PathLike) -> dict:
    """The json sidecar of a checkpoint.

    Args:
        stem: checkpoint path without suffix.

    Returns:
        The sidecar's dict.

    Raises:
        CheckpointError: the sidecar is missing or not a regular file, not UTF-8 (binary), not
            valid JSON, or not a JSON object (names the file and line).
    """
    _, sidecar = _paths(stem)
    return read_json_file(sidecar, "checkpoint sidecar", CheckpointError, expect=dict)


def load_checkpoint(
    stem: str | os.PathLike, model: nn.Module | None = None, device: str | torch.device = "cpu"
) -> tuple[nn.Module, dict]:
    """Load weights into ``model`` (or a COREBA model built from the sidecar's config).

    Args:
        stem: checkpoint path without suffix.
        model: target model; None builds one with :func:`course_lib.alignment.build_model`.
        device: where the loaded model lives.

    Returns:
        ``(model, info)`` with ``info`` the json sidecar.

    Raises:
        CheckpointError: missing or special file, missing manifest, SHA256 mismatch, a bad
            sidecar (see :func:`read_checkpoint_info`; unknown ``model_config`` fields are
            named), damaged weights, or weights that do not fit the model.
    """
    weights, sidecar = _paths(stem)
    info = read_checkpoint_info(stem)
    check_regular_file(weights, "checkpoint weights", CheckpointError)
    # 1. the hash check comes first: a tampered file is never parsed
    _check_legacy_manifest(weights, info)
    verify_manifest(weights)
    if model is None:
        model = _model_from_info(info, sidecar)
    data = read_bytes(weights, "checkpoint weights", CheckpointError)  # never waits on a FIFO
    try:
        state = load_safetensors(data)
    except Exception as error:  # SafetensorError: a file whose manifest matches, but damaged
        raise CheckpointError(f"checkpoint {weights} could not be read: {error}") from error
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise CheckpointError(f"checkpoint {weights} does not fit the model: {error}") from error
    return model.to(device), info


def _model_from_info(info: dict, sidecar: Path) -> nn.Module:
    """A COREBA model built from a sidecar's ``model_config`` (CheckpointError naming the field).

    Args:
        info: the sidecar's dict.
        sidecar: its path, for messages.

    Returns:
        The freshly built model.
    """
    from course_lib.alignment import CorebaConfig, build_model

    if info.get("model_config") is None:
        raise CheckpointError(f"{sidecar}: sidecar has no model_config; pass a model")
    where = f"checkpoint sidecar {sidecar}: field 'model_config'"
    config = config_from_dict(CorebaConfig, info["model_config"], where, CheckpointError)
    try:
        return build_model(config)
    except (TypeError, ValueError) as error:  # sizes that cannot go together
        raise CheckpointError(f"{where}: cannot build the model ({error})") from None


def _check_legacy_manifest(weights: Path, info: dict) -> None:
    """Refuse, with the fix, a checkpoint whose hash is only in its json (the old convention).

    Args:
        weights: the ``<stem>.safetensors`` file.
        info: its json sidecar.

    Raises:
        CheckpointError: the manifest is missing and the sidecar holds ``weights_sha256``.
    """
    manifest = manifest_path(weights)
    legacy = info.get("weights_sha256")
    if legacy is not None and not manifest.is_file():
        raise CheckpointError(
            f"checksum manifest {manifest} for {weights} is missing: the checkpoint was written "
            f"with its hash in the json (weights_sha256 {cut_text(str(legacy))}). If "
            f"`sha256sum {weights}` prints that hash, write it with "
            f"`sha256sum {weights.name} > {manifest.name}` "
            f"in {weights.parent}"
        )


def rng_state() -> dict:
    """Python, numpy and torch (CPU + CUDA) RNG states as tensors and numbers."""
    version, mt, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python_version": version,
        "python_mt": torch.tensor(mt, dtype=torch.int64),
        "python_gauss": gauss,
        "numpy_name": name,
        "numpy_keys": torch.from_numpy(keys.astype(np.int64)),
        "numpy_pos": int(pos),
        "numpy_has_gauss": int(has_gauss),
        "numpy_cached_gaussian": float(cached),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore the states captured by :func:`rng_state`."""
    mt = tuple(int(x) for x in state["python_mt"].tolist())
    random.setstate((state["python_version"], mt, state["python_gauss"]))
    keys = state["numpy_keys"].numpy().astype(np.uint32)
    np.random.set_state(
        (
            state["numpy_name"],
            keys,
            state["numpy_pos"],
            state["numpy_has_gauss"],
            state["numpy_cached_gaussian"],
        )
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def latest_checkpoint_exists(out_dir: str | os.PathLike) -> bool:
    """True when ``out_dir`` holds a resume state (``last_state.pt`` and ``last.json``)."""
    out_dir = Path(out_dir)
    return (out_dir / STATE_FILE).is_file() and _paths(out_dir / LAST)[1].is_file()


def save_training_state(
    out_dir: str | os.PathLike,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    config: MomentTrainingConfig,
    info: dict,
    best_score: float,
    scaler: torch.amp.GradScaler | None = None,
) -> None:
    """Write ``last.safetensors`` / ``last.json`` and ``last_state.pt`` (everything to resume).

    ``info["epoch"]`` is the epoch just finished; resuming starts at the next one. A float16
    run's gradient ``scaler`` is saved too (its loss scale and growth tracker), so a resumed
    run continues with the scale it had reached.
    """
    out_dir = Path(out_dir)
    save_checkpoint(out_dir / LAST, model, config, info)
    state = {
        "epoch": int(info["epoch"]),
        "best_score": float(best_score),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "rng": rng_state(),
    }
    if scaler is not None:
        state["scaler"] = scaler.state_dict()
    with atomic_write(out_dir / STATE_FILE, "wb") as handle:
        torch.save(state, handle)


def load_training_state(
    out_dir: str | os.PathLike,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    scaler: torch.amp.GradScaler | None = None,
) -> dict:
    """Restore model, optimizer, scheduler and RNG states from ``out_dir`` (weights_only load).

    ``scaler`` (a float16 run's gradient scaler) gets the saved scale when the state has one; a
    state written without a scaler leaves it at its initial scale.

    Returns:
        ``{"epoch": last finished epoch, "best_score": best selection score so far}``.

    Raises:
        CheckpointError: missing / unreadable files, or weights and state from different epochs.
    """
    out_dir = Path(out_dir)
    device = next(model.parameters()).device
    _, info = load_checkpoint(out_dir / LAST, model, device)
    path = out_dir / STATE_FILE
    state = load_torch_file(path, "training state", CheckpointError)
    _check_state(state, path)
    if state["epoch"] != info.get("epoch"):
        raise CheckpointError(
            f"{path} is from epoch {state['epoch']} but {out_dir / LAST}.json from epoch "
            f"{short_repr(info.get('epoch'))}: an interrupted save; delete one of them"
        )
    restores = [
        ("optimizer", optimizer.load_state_dict),
        ("scheduler", scheduler.load_state_dict),
        ("rng", set_rng_state),
    ]
    if scaler is not None and "scaler" in state:
        restores.append(("scaler", scaler.load_state_dict))
    for field, restore in restores:
        try:
            restore(state[field])
        except (AttributeError, KeyError, TypeError, ValueError, IndexError, RuntimeError) as error:
            raise CheckpointError(
                f"training state {path}: field {field!r} does not fit this run "
                f"({type(error).__name__}: {cut_text(str(error))})"
            ) from None
    return {"epoch": state["epoch"], "best_score": state["best_score"]}


def _check_state(state: object, path: Path) -> None:
    """Refuse a resume state that is not a dict with every field :func:`save_training_state` writes.

    Args:
        state: what ``last_state.pt`` holds.
        path: the file, for messages.

    Raises:
        CheckpointError: not a dict, a missing field, or an epoch / best score of the wrong type.
    """
    if not isinstance(state, dict):
        raise CheckpointError(
            f"training state {path} holds {type(state).__name__}, expected a dict"
        )
    missing = [field for field in _STATE_FIELDS if field not in state]
    if missing:
        raise CheckpointError(f"training state {path}: missing field(s) {', '.join(missing)}")
    if isinstance(state["epoch"], bool) or not isinstance(state["epoch"], int):
        raise CheckpointError(
            f"training state {path}: field 'epoch' is {short_repr(state['epoch'])}, expected an int"
        )
    if isinstance(state["best_score"], bool) or not isinstance(state["best_score"], (int, float)):
        raise CheckpointError(
            f"training state {path}: field 'best_score' is {short_repr(state['best_score'])}, "
            "expected a number"
        )


def read_history(out_dir: str | os.PathLike) -> list[dict]:
    """Every epoch row a run in ``out_dir`` has recorded (``[]`` when none).

    Args:
        out_dir: the run folder.

    Returns:
        The rows, each a dict with an int ``epoch``.

    Raises:
        CheckpointError: ``history.json`` is not a regular file, not UTF-8 or JSON, not a list,
            or has a row without an int ``epoch`` (names the file and row).
    """
    path = Path(out_dir) / HISTORY_FILE
    if not os.path.lexists(path):
        return []
    rows = read_json_file(path, "training history", CheckpointError, expect=list)
    for index, row in enumerate(rows):
        epoch = row.get("epoch") if isinstance(row, dict) else None
        if isinstance(epoch, bool) or not isinstance(epoch, int):
            raise CheckpointError(
                f"training history {path}: row {index} is {short_repr(row)}, expected a dict "
                "with an int 'epoch'"
            )
    return rows


def append_history(out_dir: str | os.PathLike, row: dict) -> list[dict]:
    """Record one finished epoch in ``out_dir/history.json`` (atomic rewrite).

    Rows of this epoch or later (left by a run interrupted after writing its history but before
    saving its state) are replaced, so a resumed run's history has every epoch exactly once.

    Returns:
        The whole history after the append.
    """
    rows = [r for r in read_history(out_dir) if r["epoch"] < row["epoch"]] + [row]
    with atomic_write(Path(out_dir) / HISTORY_FILE, "w") as handle:
        json.dump(rows, handle)
    return rows
