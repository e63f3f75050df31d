"""Training, evaluation and prediction loops for COREBA / QD-DETR on moment records.

* :func:`make_loader` - records + feature sources -> a DataLoader of collated batches;
* :func:`predict` - official QVHighlights submission dicts (windows in seconds, clip saliency);
* :func:`evaluate` - :func:`course_lib.metrics.eval_qvhighlights` on :func:`predict`'s output;
* :func:`train_one_epoch` / :func:`train` - AdamW + gradient clipping, validation every epoch,
  best checkpoint by a chosen metric, resumable (see :mod:`course_lib.training.checkpoint`);
* :func:`autocast_dtype` / :func:`autocast` - mixed precision on CUDA when
  ``MomentTrainingConfig.amp`` is set (the loss and the decoding always run in float32).
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from course_lib.alignment.decode import clip_saliency, windows_in_seconds
from course_lib.datasets import MomentDataset, collate_moments
from course_lib.env import pick_device, seed_everything
from course_lib.errors import CheckpointError
from course_lib.metrics import eval_qvhighlights
from course_lib.training.checkpoint import (
    append_history,
    latest_checkpoint_exists,
    load_training_state,
    save_checkpoint,
    save_training_state,
)
from course_lib.training.config import MomentTrainingConfig
from course_lib.training.criterion import SetCriterion, forward_with_negatives


def make_loader(
    records: list[dict],
    video_features: Callable | str | os.PathLike,
    query_features: Callable | str | os.PathLike,
    config: MomentTrainingConfig,
    shuffle: bool = False,
    require_labels: bool = True,
) -> DataLoader:
    """A DataLoader of :func:`course_lib.datasets.collate_moments` batches.

    Args:
        records: moment records.
        video_features: ``vid -> (T, D)`` float32 callable or a feature directory.
        query_features: ``qid -> (L, D)`` float32 callable or a feature directory.
        config: batch size, caps and workers.
        shuffle: shuffle every epoch (drawn from torch's global RNG, so seeded runs repeat).
        require_labels: False for unlabelled records (prediction only).
    """
    data = MomentDataset(
        records,
        video_features,
        query_features,
        clip_len=config.clip_len,
        require_labels=require_labels,
    )
    collate = partial(
        collate_moments,
        max_clips=config.max_clips,
        max_tokens=config.max_tokens,
        clip_len=config.clip_len,
    )
    return DataLoader(
        data,
        batch_size=config.batch_size,
        shuffle=shuffle,
        collate_fn=collate,
        num_workers=config.num_workers,
    )


def to_device(batch: dict, device: torch.device | str) -> dict:
    """Move every tensor of a batch (and the ``spans`` list) to ``device``."""
    out = {}
    for key, value in batch.items():
        if isinstance(value, torch.Tensor):
            out[key] = value.to(device)
        elif key == "spans":
            out[key] = [s.to(device) for s in value]
        else:
            out[key] = value
    return out


def _model_device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def autocast_dtype(device: torch.device | str, enabled: bool) -> torch.dtype | None:
    """The ``torch.autocast`` dtype of a run: None (full precision) unless ``enabled`` on CUDA.

    Args:
        device: where the model runs.
        enabled: ``MomentTrainingConfig.amp``.

    Returns:
        ``torch.bfloat16`` on GPUs that support it (Ampere and later: no gradient scaler needed),
        ``torch.float16`` on older ones (e.g. a T4; :func:`train` adds a ``GradScaler``), None
        off CUDA or when disabled.
    """
    device = torch.device(device)
    if not enabled or device.type != "cuda":
        return None
    # native bfloat16 from compute capability 8.0 (Ampere); emulated bfloat16 would be slow
    return torch.bfloat16 if torch.cuda.get_device_capability(device) >= (8, 0) else torch.float16


def grad_scaler(dtype: torch.dtype | None) -> torch.amp.GradScaler | None:
    """A CUDA ``GradScaler`` for float16 autocast (its gradients underflow without one), else None."""
    if dtype != torch.float16:
        return None
    if hasattr(torch.amp, "GradScaler"):  # torch >= 2.3
        return torch.amp.GradScaler("cuda")
    return torch.cuda.amp.GradScaler()


@contextlib.contextmanager
def autocast(device: torch.device | str, dtype: torch.dtype | None) -> Iterator[None]:
    """``torch.autocast(device.type, dtype)``, or nothing when ``dtype`` is None."""
    if dtype is None:
        yield
        return
    with torch.autocast(torch.device(device).type, dtype=dtype):
        yield


def to_float32(tree):
    """Floating tensors of a (nested dict / list) model output cast to float32 (losses, decoding)."""
    if isinstance(tree, torch.Tensor):
        return tree.float() if tree.is_floating_point() else tree
    if isinstance(tree, dict):
        return {k: to_float32(v) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return type(tree)(to_float32(v) for v in tree)
    return tree


@torch.no_grad()
def predict(
    model: nn.Module,
    loader: DataLoader,
    config: MomentTrainingConfig | None = None,
    progress: bool | None = None,
) -> list[dict]:
    """Official QVHighlights submission dicts for every record of ``loader``.

    Args:
        model: a :class:`~course_lib.alignment.CorebaModel` (put in eval mode here, restored after).
        loader: batches from :func:`make_loader` (any order).
        config: ``clip_len`` and ``max_windows`` (default :class:`MomentTrainingConfig`).
        progress: show a tqdm bar (default ``config.progress``).

    Returns:
        ``[{"qid", "query", "vid", "pred_relevant_windows": [[st, ed, score], ...],
        "pred_saliency_scores": [one float per 2-s clip]}, ...]``; windows in seconds, sorted by
        foreground probability (they pass :func:`course_lib.metrics.validate_submission`).
    """
    config = config or MomentTrainingConfig()
    show = config.progress if progress is None else progress
    device, was_training = _model_device(model), model.training
    dtype = autocast_dtype(device, config.amp)
    model.eval()
    submission = []
    try:
        for batch in tqdm(loader, desc="predict", disable=not show, leave=False):
            batch = to_device(batch, device)
            with autocast(device, dtype):
                out = model(
                    batch["video"], batch["video_mask"], batch["query"], batch["query_mask"]
                )
            out = to_float32(out)
            n_real = batch["video_mask"].sum(1).tolist()
            for i, rec in enumerate(batch["records"]):
                spans, logits = out["pred_spans"][i].cpu(), out["pred_logits"][i].cpu()
                duration = float(rec["duration"])
                submission.append(
                    {
                        "qid": rec["qid"],
                        "query": rec["query"],
                        "vid": rec["vid"],
                        "pred_relevant_windows": windows_in_seconds(
                            spans, logits, n_real[i], duration, config.clip_len, config.max_windows
                        ),
                        "pred_saliency_scores": clip_saliency(
                            out["saliency_scores"][i].cpu(), n_real[i], duration
                        ),
                    }
                )
    finally:
        model.train(was_training)
    return submission


def evaluate(
    model: nn.Module, loader: DataLoader, config: MomentTrainingConfig | None = None
) -> dict[str, float]:
    """Chapter-3 metrics (``eval_qvhighlights``'s brief dict) of the model on ``loader``.

    The ground truth is the records carried by the batches.
    """
    submission = predict(model, loader, config)
    records = getattr(loader.dataset, "records", None)
    if records is None:  # a loader without a MomentDataset: collect the records it yields
        records = [rec for batch in loader for rec in batch["records"]]
    ground_truth = list(records)
    return dict(eval_qvhighlights(submission, ground_truth)["brief"])


def selection_score(metrics: dict[str, float], names: tuple[str, ...]) -> float:
    """Sum of the chosen brief metrics (NaN counts as 0); the best checkpoint maximises it."""
    missing = [n for n in names if n not in metrics]
    if missing:
        raise KeyError(f"metrics {missing} not in the evaluation; have {sorted(metrics)}")
    return float(sum(0.0 if math.isnan(metrics[n]) else metrics[n] for n in names))


def make_optimizer(
    model: nn.Module, config: MomentTrainingConfig
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    """AdamW (lr 1e-4, weight decay 1e-4) and a StepLR stepped once per epoch (QD-DETR)."""
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, config.lr_drop, config.lr_gamma)
    return optimizer, scheduler


def train_step(
    model: nn.Module,
    batch: dict,
    criterion: SetCriterion,
    optimizer: torch.optim.Optimizer,
    grad_clip: float = 0.1,
    amp_dtype: torch.dtype | None = None,
    scaler: torch.amp.GradScaler | None = None,
) -> dict[str, float]:
    """One optimisation step on a collated batch; returns the loss terms as floats.

    Args:
        model, batch, criterion, optimizer: the model, a collated batch on its device, the
            :class:`SetCriterion` and the optimizer.
        grad_clip: largest gradient L2 norm (0 = no clipping).
        amp_dtype: run the forward pass under ``torch.autocast`` with this dtype (None: full
            precision); the losses are computed in float32 either way.
        scaler: a ``GradScaler`` (float16 autocast) or None.
    """
    model.train()
    c = criterion.config  # negatives feed the neg-pair and the rank-contrastive terms
    # 1. forward pass (mixed precision when asked), losses in float32
    with autocast(_model_device(model), amp_dtype):
        outputs = forward_with_negatives(model, batch, c.w_neg_pair > 0 or c.w_rank_contrastive > 0)
    losses = criterion(to_float32(outputs), batch)
    # 2. backward, clipping (of the unscaled gradients) and the step
    optimizer.zero_grad(set_to_none=True)
    if scaler is not None:
        scaler.scale(losses["total"]).backward()
        scaler.unscale_(optimizer)
    else:
        losses["total"].backward()
    if grad_clip > 0:
        nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    if scaler is not None:
        scaler.step(optimizer)  # skipped when the scaled gradients overflowed
        scaler.update()
    else:
        optimizer.step()
    return {k: float(v.detach()) for k, v in losses.items()}


def train_one_epoch(
    model: nn.Module,
    loader: DataLoader,
    criterion: SetCriterion,
    optimizer: torch.optim.Optimizer,
    config: MomentTrainingConfig,
    epoch: int = 0,
    scaler: torch.amp.GradScaler | None = None,
) -> dict[str, float]:
    """One pass over ``loader``; returns the mean of every loss term (weighted by batch size).

    With ``config.amp`` on CUDA the forward passes run under ``torch.autocast``
    (:func:`autocast_dtype`); ``scaler`` is the ``GradScaler`` float16 needs (:func:`train` makes it).
    """
    device = _model_device(model)
    dtype = autocast_dtype(device, config.amp)
    sums: dict[str, float] = defaultdict(float)
    count = 0
    bar = tqdm(loader, desc=f"epoch {epoch}", disable=not config.progress, leave=False)
    for batch in bar:
        batch = to_device(batch, device)
        losses = train_step(model, batch, criterion, optimizer, config.grad_clip, dtype, scaler)
        n = batch["video"].shape[0]
        for key, value in losses.items():
            sums[key] += value * n
        count += n
        bar.set_postfix(loss=f"{losses['total']:.3f}")
    return {k: v / max(count, 1) for k, v in sums.items()}


def train(
    model: nn.Module,
    train_loader: DataLoader,
    val_loader: DataLoader | None,
    config: MomentTrainingConfig,
    out_dir: str | os.PathLike | None = None,
    resume: bool = False,
    on_epoch: Callable[[dict], None] | None = None,
) -> list[dict]:
    """Train with validation every epoch, best-checkpoint saving and resuming.

    Args:
        model: the model to train (moved to ``config.device``).
        train_loader: shuffled training batches; val_loader: validation batches (or None).
        config: hyper-parameters (:class:`MomentTrainingConfig`).
        out_dir: where ``best.*`` (highest ``config.best_metrics`` sum) and ``last.*`` (resume
            state) checkpoints go; None = no checkpoints.
        resume: continue from ``out_dir/last.*`` (epoch, optimizer, scheduler, RNG states);
            starts fresh when there is none yet.
        on_epoch: called with each epoch's history row once it is saved (e.g. to print it).

    Returns:
        The history of this call: one dict per epoch run, ``{"epoch", "train": mean losses,
        "val": brief metrics, "score", "seconds"}``; with ``out_dir`` every row is also
        appended to ``out_dir/history.json`` as soon as its epoch ends (see
        :func:`~course_lib.training.checkpoint.read_history`).
    """
    device = torch.device(pick_device(config.device))
    model.to(device)
    seed_everything(config.seed)
    criterion = SetCriterion(config)
    optimizer, scheduler = make_optimizer(model, config)
    # float16 autocast needs a gradient scaler (saved with the resume state)
    scaler = grad_scaler(autocast_dtype(device, config.amp))
    start, best = 0, -math.inf
    if resume and out_dir is not None and latest_checkpoint_exists(out_dir):
        state = load_training_state(out_dir, model, optimizer, scheduler, scaler)
        start, best = state["epoch"] + 1, state["best_score"]
    elif resume and out_dir is None:
        raise CheckpointError("resume=True needs out_dir (where last.* checkpoints live)")
    history = []
    for epoch in range(start, config.epochs):
        started = time.perf_counter()
        train_losses = train_one_epoch(
            model, train_loader, criterion, optimizer, config, epoch, scaler
        )
        scheduler.step()
        metrics = evaluate(model, val_loader, config) if val_loader is not None else {}
        score = selection_score(metrics, config.best_metrics) if metrics else -train_losses["total"]
        seconds = time.perf_counter() - started
        history.append(
            {
                "epoch": epoch,
                "train": train_losses,
                "val": metrics,
                "score": score,
                "seconds": seconds,
            }
        )
        if out_dir is not None:
            append_history(out_dir, history[-1])  # before the state: a crash re-runs this epoch
            info = {"epoch": epoch, "metrics": metrics, "train_losses": train_losses}
            info["score"] = score
            if score > best:
                best = score
                save_checkpoint(Path(out_dir) / "best", model, config, info)
            save_training_state(out_dir, model, optimizer, scheduler, config, info, best, scaler)
        if on_epoch is not None:
            on_epoch(history[-1])
    return history
