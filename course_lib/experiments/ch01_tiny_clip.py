"""Train tiny CLIP contrastively on toy-world frames and captions (resumable, seeded).

Recipe: frames of ``train``-split trimmed clips are rendered once into a uint8 tensor (cached
on disk); every step draws a batch, writes a fresh random true caption per frame
(:func:`~course_lib.experiments.ch01_toy_frames.frame_caption`) and minimises the multi-positive symmetric
InfoNCE loss (:mod:`course_lib.clip.loss`) with the model's own learnable ``logit_scale``.
AdamW, linear warm-up then cosine decay. The run state (model, optimizer, step) is saved
atomically every ``save_every`` steps in the cache directory and resumed from there.

The command line that writes the committed checkpoints is ``scripts/train_tiny_clip.py``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from course_lib.clip.loss import MAX_LOGIT_SCALE, symmetric_info_nce
from course_lib.experiments.ch01_toy_frames import (
    DETAIL_PROBS,
    FrameSample,
    frame_caption,
    match_matrix,
)


@dataclass(frozen=True)
class TinyClipTrainingConfig:
    """Hyper-parameters of a tiny-CLIP run (the defaults reproduce the committed checkpoint)."""

    steps: int = 400
    batch_size: int = 128
    n_frames: int = 6000
    lr: float = 1e-3
    weight_decay: float = 0.1
    warmup: int = 30
    seed: int = 0
    save_every: int = 50
    threads: int = 1  # one thread: on a shared 2-core machine two OpenMP threads stall each other
    patch_size: int = 16  # vision patch side (64 px frames: 16 -> 4x4 grid, 8 -> 8x8 grid)
    detail_probs: tuple[float, float, float] = DETAIL_PROBS  # colour+shape / colour / shape
    scenes_per_batch: int = 0  # >0: each batch shows only this many scenes (harder negatives)
    hflip: bool = False  # flip half the frames left-right (captions never name a side)
    hard_negatives: bool = False  # add one NegCLIP caption per frame (one attribute swapped)
    cycle_steps: int = 0  # >0: warm restarts, the warm-up + cosine schedule repeats every cycle

    @classmethod
    def fast(cls) -> TinyClipTrainingConfig:
        """A run of a few seconds (tests, CI, FAST notebooks)."""
        return cls(steps=20, batch_size=32, n_frames=256, warmup=5, save_every=10)

    @classmethod
    def improved(cls, steps: int = 6400) -> TinyClipTrainingConfig:
        """The recipe that learns shapes (patch 8, NegCLIP negatives, warm restarts, flips).

        Resumable like every run; ``steps`` is a multiple of the 800-step restart cycle.
        """
        return cls(
            steps=steps,
            warmup=40,
            patch_size=8,
            detail_probs=(0.5, 0.15, 0.35),
            hflip=True,
            hard_negatives=True,
            cycle_steps=800,
        )

    def key(self) -> str:
        """Hash of every field except ``threads`` and ``save_every``: names the run's files."""
        fields = {
            k: v for k, v in dataclasses.asdict(self).items() if k not in {"threads", "save_every"}
        }
        return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:12]


@dataclass(frozen=True)
class WarmStart:
    """Continue a finished run from its checkpoint when its run state is gone.

    A checkpoint keeps the weights (fp16) but not the optimizer's moments, so this is a warm
    restart rather than an exact resume: the weights are loaded, AdamW starts afresh, and the
    loop runs steps ``step .. config.steps - 1`` with the same batches and learning-rate
    schedule that an uninterrupted longer run would use there. Start at a cycle boundary
    (``step`` a multiple of ``cycle_steps``) so the schedule begins with its warm-up.

    Attributes:
        checkpoint: safetensors checkpoint of the earlier run (SHA256-verified on load).
        step: steps that run took; the earlier losses come from its ``_history.json`` if present.
    """

    checkpoint: Path
    step: int

    def apply(self, model: torch.nn.Module, config: TinyClipTrainingConfig) -> tuple[int, list[float]]:
        """Load the weights into ``model``; return ``(first step, earlier losses)``.

        Raises:
            ValueError: ``step`` is not inside ``[0, config.steps)``.
        """
        from course_lib.clip.checkpoint import load_state_dict

        if not 0 <= self.step < config.steps:
            raise ValueError(
                f"warm start at step {self.step} is outside the run's 0..{config.steps - 1}"
            )
        state, _ = load_state_dict(self.checkpoint)
        model.load_state_dict(state, strict=True)
        history_file = history_path(self.checkpoint)
        history = json.loads(history_file.read_text())["loss"] if history_file.is_file() else []
        return self.step, list(history[: self.step])


def training_frames(config: TinyClipTrainingConfig, cache: Path) -> tuple[list[FrameSample], np.ndarray]:
    """The training samples and their frames, rendered once and cached as npz."""
    from course_lib.experiments.ch01_toy_frames import render_samples, sample_frames
    from course_lib.files import atomic_save_npz

    samples = sample_frames("train", config.n_frames, seed=config.seed)
    path = cache / f"frames-{config.n_frames}-{config.seed}.npz"
    if path.is_file():
        with np.load(path) as data:
            return samples, data["frames"]
    frames = render_samples(samples)
    atomic_save_npz(path, frames=frames)
    return samples, frames


def learning_rate(step: int, config: TinyClipTrainingConfig) -> float:
    """Linear warm-up to ``lr`` over ``warmup`` steps, then cosine decay to 0.

    With ``cycle_steps > 0`` the schedule restarts every ``cycle_steps`` steps (SGDR, Loshchilov
    & Hutter, ICLR 2017), so a longer run continues a shorter one exactly.
    """
    length = config.cycle_steps if config.cycle_steps > 0 else config.steps
    step = step % length
    if step < config.warmup:
        return config.lr * (step + 1) / config.warmup
    progress = (step - config.warmup) / max(1, length - config.warmup)
    return 0.5 * config.lr * (1.0 + math.cos(math.pi * progress))


def batch_indices(step: int, n: int, batch_size: int, seed: int) -> np.ndarray:
    """Frame indices of one step: a fresh seeded permutation per epoch (resumable)."""
    per_epoch = n // batch_size
    epoch, k = divmod(step, per_epoch)
    order = np.random.default_rng([seed, epoch]).permutation(n)
    return order[k * batch_size : (k + 1) * batch_size]


def scene_batch_indices(
    step: int, scenes: np.ndarray, batch_size: int, n_scenes: int, seed: int
) -> np.ndarray:
    """Frame indices of one step drawn from ``n_scenes`` random scenes only (hard negatives).

    Within such a batch the scene rarely tells frames apart, so a caption's colour and shape
    words must: the in-batch negatives are frames of the same scene with other objects.

    Args:
        step: training step (seeds the draw, so runs are resumable).
        scenes: (N,) scene label of every training frame.
        batch_size: frames per batch (at most the number of frames of the chosen scenes).
        n_scenes: how many distinct scenes a batch may show.
        seed: run seed.
    """
    rng = np.random.default_rng([seed, step, 2])
    chosen = rng.choice(np.unique(scenes), size=n_scenes, replace=False)
    pool = np.flatnonzero(np.isin(scenes, chosen))
    return rng.choice(pool, size=batch_size, replace=False)


def step_batch(
    step: int, samples: list[FrameSample], frames: np.ndarray, config: TinyClipTrainingConfig
) -> tuple[torch.Tensor, list[FrameSample]]:
    """The frames (uint8 tensor, maybe flipped) and samples of one training step."""
    if config.scenes_per_batch > 0:
        scenes = np.array([s.scene for s in samples])
        idx = scene_batch_indices(
            step, scenes, config.batch_size, config.scenes_per_batch, config.seed
        )
    else:
        idx = batch_indices(step, len(samples), config.batch_size, config.seed)
    batch = frames[idx]
    if config.hflip:  # left-right flip of a random half: shapes, colours, scenes unchanged
        flip = np.random.default_rng([config.seed, step, 3]).random(len(idx)) < 0.5
        batch = batch.copy()
        batch[flip] = batch[flip, :, ::-1]
    return torch.from_numpy(np.ascontiguousarray(batch)), [samples[i] for i in idx]


def make_optimizer(model: torch.nn.Module, config: TinyClipTrainingConfig) -> torch.optim.AdamW:
    """AdamW; no weight decay on gains, biases, embeddings and the temperature."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        flat = param.ndim < 2 or "embedding" in name or "logit_scale" in name
        (no_decay if flat else decay).append(param)
    groups = [
        {"params": decay, "weight_decay": config.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=config.lr, betas=(0.9, 0.98), eps=1e-6)


def train_step(
    model,
    tokenizer,
    frames: torch.Tensor,
    samples: list[FrameSample],
    rng: np.random.Generator,
    optimizer,
    lr: float,
    detail_probs: tuple[float, float, float] = DETAIL_PROBS,
    hard_negatives: bool = False,
) -> float:
    """One optimisation step on a batch: caption, encode, multi-positive InfoNCE, AdamW."""
    from course_lib.clip.encoder import preprocess_frames
    from course_lib.experiments.ch01_toy_frames import negative_caption

    # 1. a fresh random caption per frame (+ a one-word-swapped negative of it); positives =
    #    frames showing all a caption names
    captions, meanings = zip(*(frame_caption(s, rng, detail_probs) for s in samples), strict=True)
    captions, meanings = list(captions), list(meanings)
    if hard_negatives:
        for sample, meaning in zip(samples, meanings[: len(samples)], strict=True):
            text, wrong = negative_caption(sample, meaning, rng)
            captions.append(text)
            meanings.append(wrong)
    positives = torch.from_numpy(match_matrix(meanings, samples))
    # 2. encode both sides, L2-normalise
    image = F.normalize(model.encode_image(preprocess_frames(frames, frames.shape[1])), dim=-1)
    text = F.normalize(model.encode_text(tokenizer(captions)), dim=-1)
    # 3. loss with the model's learnable temperature, update, clamp the temperature as CLIP does
    loss = symmetric_info_nce(image, text, model.logit_scale, positives)
    for group in optimizer.param_groups:
        group["lr"] = lr
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    with torch.no_grad():
        model.logit_scale.clamp_(0.0, MAX_LOGIT_SCALE)
    return loss.item()


def _save_state(path: Path, model, optimizer, step: int, history: list[float]) -> None:
    """Resumable run state, written atomically (loadable with ``weights_only=True``)."""
    from course_lib.files import atomic_write

    state = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "step": step,
        "history": history,
    }
    with atomic_write(path, "wb") as handle:
        torch.save(state, handle)


def train_tiny_clip(
    config: TinyClipTrainingConfig | None = None,
    cache: Path | None = None,
    resume: bool = True,
    progress: bool = True,
    callback: Callable[[int, torch.nn.Module], None] | None = None,
    warm_start: WarmStart | None = None,
) -> tuple[torch.nn.Module, list[float]]:
    """Train tiny CLIP from scratch (or resume an interrupted run with the same config).

    Args:
        config: hyper-parameters; default :class:`TinyClipTrainingConfig` (``.fast()`` when FAST mode).
        cache: directory for rendered frames and run state; default ``cache_dir("tiny_clip")``.
        resume: continue from a saved run state of the same config if there is one.
        progress: show a tqdm bar.
        callback: called as ``callback(step, model)`` after each saved run state (e.g. to
            evaluate); it must leave the model in train mode.
        warm_start: continue a finished run from its saved checkpoint (see :class:`WarmStart`)
            when there is no run state of this config to resume.

    Returns:
        ``(model, losses)``: the trained open_clip model (eval mode, CPU) and the loss per step.
    """
    import open_clip
    from tqdm.auto import tqdm

    from course_lib.clip.encoder import create_random_model
    from course_lib.clip.tiny_config import register_config, tiny_variant
    from course_lib.env import cache_dir, fast_mode, seed_everything

    config = config or (TinyClipTrainingConfig.fast() if fast_mode() else TinyClipTrainingConfig())
    cache = Path(cache) if cache is not None else cache_dir("tiny_clip")
    torch.set_num_threads(config.threads)
    seed_everything(config.seed)
    # 1. data (rendered once), model, optimizer
    samples, frames = training_frames(config, cache)
    name = register_config(*tiny_variant(config.patch_size))
    model, tokenizer = create_random_model(name), open_clip.get_tokenizer(name)
    optimizer = make_optimizer(model, config)
    # 2. resume from the saved run state when there is one
    state_path, step, history = cache / f"run-{config.key()}.pt", 0, []
    if resume and state_path.is_file():
        state = torch.load(state_path, map_location="cpu", weights_only=True)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        step, history = int(state["step"]), list(state["history"])
    elif warm_start is not None:
        step, history = warm_start.apply(model, config)
    # 3. the loop
    model.train()
    bar = tqdm(range(step, config.steps), initial=step, total=config.steps, disable=not progress)
    for step in bar:
        batch, batch_samples = step_batch(step, samples, frames, config)
        rng = np.random.default_rng([config.seed, step, 1])
        lr = learning_rate(step, config)
        loss = train_step(
            model,
            tokenizer,
            batch,
            batch_samples,
            rng,
            optimizer,
            lr,
            config.detail_probs,
            config.hard_negatives,
        )
        history.append(loss)
        bar.set_postfix(loss=f"{loss:.3f}", scale=f"{model.logit_scale.exp().item():.1f}")
        if (step + 1) % config.save_every == 0 or step + 1 == config.steps:
            _save_state(state_path, model, optimizer, step + 1, history)
            if callback is not None:
                callback(step + 1, model)
    return model.eval(), history


def save_tiny_checkpoint(model: torch.nn.Module, out: Path, config: TinyClipTrainingConfig) -> str:
    """Store the trained weights as fp16 safetensors + SHA256 manifest; returns the hash."""
    from course_lib.clip.checkpoint import save_state_dict
    from course_lib.clip.tiny_config import tiny_variant

    meta = {
        "model_name": tiny_variant(config.patch_size)[0],
        "train_config": json.dumps(dataclasses.asdict(config)),
    }
    return save_state_dict(model.state_dict(), out, metadata=meta)


def history_path(checkpoint: Path) -> Path:
    """Where the loss history of a checkpoint lives: ``<stem>_history.json`` next to it."""
    checkpoint = Path(checkpoint)
    return checkpoint.with_name(f"{checkpoint.stem}_history.json")


def save_history(path: Path, history: list[float], config: TinyClipTrainingConfig, seconds: float) -> None:
    """Write the per-step training losses (and the run's config and duration) as JSON."""
    from course_lib.files import atomic_write

    record = {
        "train_config": dataclasses.asdict(config),
        "seconds": round(float(seconds), 1),
        "loss": [round(float(x), 5) for x in history],
    }
    with atomic_write(path, "w") as handle:
        json.dump(record, handle)
