"""COREBA on the toy world: splits, clip features, small sizes, baseline, load-or-train.

The pieces shared by ``scripts/train_coreba.py`` (which trains the committed checkpoint
``data/coreba_toy.*`` and the ablation table ``data/coreba_ablation.csv``) and notebooks 04-05:

* :func:`toy_splits` - moment records of the train / val / test splits;
* :class:`ToyFeatures` - clip features of a committed encoder (chapter 1's video encoder by
  default; disk cache + memory), query tokens for the model and pooled query embeddings for the
  training-free baseline; :func:`toy_features` builds one;
* :func:`input_widths`, :func:`toy_model_config` / :func:`toy_train_config` - the small sizes
  that train on one CPU thread in minutes;
* :func:`baseline_brief`, :func:`model_brief` - the official brief metrics of both on a split;
* :func:`train_toy_model` - seeded training with validation-based selection;
* :func:`load_toy_checkpoint` - the committed checkpoint, refused when it was trained on the
  features of another encoder (its features would not fit).
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from course_lib.alignment import CorebaConfig, CorebaModel, build_model
from course_lib.baseline import baseline_submission
from course_lib.errors import CheckpointError
from course_lib.experiments.ch05_feature_sources import toy_feature_sources
from course_lib.metrics import eval_qvhighlights
from course_lib.training.checkpoint import load_checkpoint, read_history
from course_lib.training.config import MomentTrainingConfig
from course_lib.training.loop import evaluate, make_loader, predict, train

SPLIT_NAMES = ("train", "val", "test")
CHECKPOINT_STEM = "coreba_toy"  # data/coreba_toy.safetensors + data/coreba_toy.json
ABLATION_CSV = "coreba_ablation.csv"


def toy_splits(n_train: int, n_val: int, n_test: int, seed: int = 0) -> dict[str, list[dict]]:
    """Moment records of ``n_*`` toy videos per split (about 8 queries per video).

    Args:
        n_train, n_val, n_test: videos per split.
        seed: which draw of videos (the same draw for every split).

    Returns:
        ``{"train": records, "val": records, "test": records}``.
    """
    from course_lib.toyworld import moment_records

    sizes = {"train": n_train, "val": n_val, "test": n_test}
    return {split: moment_records(split, n, seed=seed) for split, n in sizes.items()}


class ToyFeatures:
    """Clip features and query tokens of toy records, cached on disk (video) and in memory.

    Args:
        encoder: a committed encoder (``committed_encoder("video")``, chapter 1's video encoder:
            4 frames per 2-s clip; or ``ClipEncoder.tiny()``, one frame per clip).
        records: every record whose features will be asked for (all splits).
        cache_root: base directory of the video feature cache (default ``cache_dir``).

    Attributes:
        video: ``vid -> float32 (T, D)`` clip features (L2-normalised), the model's video input
            and what the training-free baseline compares with the query.
        query: ``qid -> float32 (L, D)`` projected query tokens (the model's text input).
        identity: the encoder identity (model name, weights SHA256, input size).
        dim: the encoder's embedding width ``D``.
    """

    def __init__(self, encoder, records: list[dict], cache_root: str | os.PathLike | None = None):
        video_source, self.query = toy_feature_sources(encoder, records, cache_root=cache_root)
        self._video_source, self._videos = video_source, {}
        self.identity = encoder.identity
        self.dim = int(encoder.embed_dim)
        # pooled sentence embeddings (CLIP's text feature) for the training-free baseline
        texts = sorted({rec["query"] for rec in records})
        pooled = encoder.encode_text(texts).cpu().numpy().astype(np.float32)
        self._sentence = dict(zip(texts, pooled))

    def video(self, vid: str) -> np.ndarray:
        """Clip features of ``vid`` (computed once, then served from memory).

        Features are rounded through float16, the precision of the disk cache, so that a run
        that computes them gives the same numbers as a run that loads them.
        """
        if vid not in self._videos:
            self._videos[vid] = self._clip_features(vid)
        return self._videos[vid]

    def _clip_features(self, vid: str) -> np.ndarray:
        """Clip features of ``vid`` rounded through float16 (the cache's precision)."""
        return np.asarray(self._video_source(vid), dtype=np.float16).astype(np.float32)

    def sentence(self, record: dict) -> np.ndarray:
        """Pooled (D,) embedding of a record's query (input of the baseline)."""
        return self._sentence[record["query"]]

    def warm(self, records: list[dict]) -> float:
        """Compute (or load) the features of every video of ``records``; returns seconds spent."""
        start = time.perf_counter()
        for vid in sorted({rec["vid"] for rec in records}):
            self.video(vid)
        return time.perf_counter() - start


def toy_features(encoder, records: list[dict], cache_root=None) -> ToyFeatures:
    """:class:`ToyFeatures` of ``encoder`` for ``records`` (features cached under ``cache_root``)."""
    return ToyFeatures(encoder, records, cache_root=cache_root)


def input_widths(features: ToyFeatures, record: dict) -> dict[str, int]:
    """``{"d_v", "d_t"}``: widths of a clip feature and of a query token of ``record``
    (both the encoder's embedding width)."""
    d_v = features.video(record["vid"]).shape[1]
    return {"d_v": int(d_v), "d_t": int(features.query(record["qid"]).shape[1])}


def toy_model_config(d_in: int, d: int = 64, **overrides) -> CorebaConfig:
    """COREBA sizes for the toy world: the paper's structure with a narrow, dropout-light width.

    Args:
        d_in: width of the CLIP features (video clips and query tokens).
        d: model width (the paper uses 256).
        **overrides: any other :class:`CorebaConfig` field (``mode``, ``n_recurrent``, ...).
    """
    base = dict(
        d_v=d_in,
        d_t=d_in,
        d=d,
        n_heads=4,
        dim_feedforward=2 * d,
        dropout=0.0,  # dropout is a third of a CPU step and the toy data do not need it
        input_dropout=0.1,
        n_balance_tokens=7,
        mode="rec",
        n_recurrent=3,
        max_clips=75,
    )
    base.update(overrides)
    return CorebaConfig(**base)


def toy_train_config(
    epochs: int = 8, lr: float = 1e-3, batch_size: int = 32, seed: int = 2018, **overrides
) -> MomentTrainingConfig:
    """QD-DETR's recipe with a larger learning rate and few epochs (small model, CPU budget).

    Args:
        epochs, lr, batch_size, seed: as :class:`MomentTrainingConfig`.
        **overrides: any other :class:`MomentTrainingConfig` field (default ``progress=False``).
    """
    fields = dict(progress=False) | overrides
    return MomentTrainingConfig(epochs=epochs, lr=lr, batch_size=batch_size, seed=seed, **fields)


def baseline_brief(records: list[dict], features: ToyFeatures) -> dict[str, float]:
    """Brief QVHighlights metrics of the training-free baseline (chapter 3).

    Args:
        records: the split to evaluate.
        features: supplies the clip features and the pooled query embeddings.
    """
    submission = baseline_submission(records, features.video, features.sentence)
    return dict(eval_qvhighlights(submission, records)["brief"])


def model_brief(
    model: CorebaModel, records: list[dict], features: ToyFeatures, config: MomentTrainingConfig
) -> dict[str, float]:
    """Brief QVHighlights metrics of ``model`` on ``records`` (eval mode, no gradient)."""
    loader = make_loader(records, features.video, features.query, config)
    return evaluate(model, loader, config)


def model_submission(
    model: CorebaModel, records: list[dict], features: ToyFeatures, config: MomentTrainingConfig
) -> list[dict]:
    """Official-format predictions of ``model`` for ``records``."""
    loader = make_loader(records, features.video, features.query, config)
    return predict(model, loader, config)


@torch.no_grad()
def align_initialisation(model: CorebaModel) -> CorebaModel:
    """Start from an initialisation that keeps the encoder's clip-word alignment (toy-budget recipe).

    The encoder puts a clip and the words that describe it close together, but two
    *independent* random projections (video / text MLPs) and independent query / key maps
    scramble that, so a freshly built model must re-learn the alignment from scratch, which
    takes thousands of steps. Here the text projection starts as a copy of the video projection
    and every attention's key map as a copy of its query map, so at step 0 a clip already
    attends most to the words its feature matches. The architecture and the training are
    unchanged; only the starting point differs (used by ``scripts/train_coreba.py`` for every
    variant).

    Args:
        model: a freshly built model whose clip features and query tokens share one embedding
            space (``d_v == d_t``).

    Returns:
        The same model, modified in place.
    """
    from course_lib.alignment import MaskedMultiHeadAttention

    d_v, d_t = model.config.d_v, model.config.d_t
    if d_v != d_t:
        raise ValueError(
            f"align_initialisation needs clip features and query tokens of one embedding space "
            f"(d_v == d_t), got d_v={d_v}, d_t={d_t}"
        )
    # 1. the text projection copies the video projection
    model.text_proj.load_state_dict(model.video_proj.state_dict())
    # 2. every attention's key map copies its query map
    for module in model.modules():
        if isinstance(module, MaskedMultiHeadAttention):
            module.k_proj.load_state_dict(module.q_proj.state_dict())
    return model


def train_toy_model(
    model_config: CorebaConfig,
    train_config: MomentTrainingConfig,
    splits: dict[str, list[dict]],
    features: ToyFeatures,
    out_dir: str | os.PathLike | None = None,
    aligned_init: bool = True,
    resume: bool = False,
) -> tuple[CorebaModel, dict]:
    """Train on ``splits["train"]``, select the epoch with the best val score, return that model.

    Args:
        model_config: architecture (see :func:`toy_model_config`).
        train_config: optimisation (see :func:`toy_train_config`); its seed also seeds the
            model's initial weights, so a run repeats exactly.
        splits: records with ``"train"`` and ``"val"``.
        features: :class:`ToyFeatures` covering both splits.
        out_dir: where ``best.*`` / ``last.*`` checkpoints and ``history.json`` (every epoch
            so far) go (default: a temporary directory).
        aligned_init: start from :func:`align_initialisation` (else the default random init).
        resume: continue the run saved in ``out_dir`` (same configs; a larger
            ``train_config.epochs`` extends it exactly as an uninterrupted longer run, the
            learning rate being constant within ``lr_drop`` epochs).

    Returns:
        ``(best model in eval mode, info)`` with info ``{"epoch", "metrics" (val), "history"
        (every epoch of the run, earlier calls included), "train_seconds" (this call),
        "run_seconds" (training and validation time of every epoch of the run)}``.
    """
    from course_lib.env import seed_everything

    if resume and out_dir is None:
        raise ValueError("resume=True needs out_dir (the run to continue)")
    seed_everything(train_config.seed)  # the initial weights depend on the seed too
    model = build_model(model_config)
    if aligned_init:
        align_initialisation(model)
    train_loader = make_loader(
        splits["train"], features.video, features.query, train_config, shuffle=True
    )
    val_loader = make_loader(splits["val"], features.video, features.query, train_config)
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(out_dir) if out_dir is not None else Path(tmp)
        start = time.perf_counter()
        train(model, train_loader, val_loader, train_config, out_dir=run_dir, resume=resume)
        seconds = time.perf_counter() - start
        history = read_history(run_dir)  # every epoch of the run, earlier calls included
        best, info = load_checkpoint(run_dir / "best", build_model(model_config))
    info = {
        "epoch": info["epoch"],
        "metrics": info["metrics"],
        "history": history,
        "train_seconds": seconds,
        "run_seconds": sum(row.get("seconds", 0.0) for row in history),
    }
    return best.eval(), info


def load_toy_checkpoint(
    features: ToyFeatures | None = None, stem: str | os.PathLike | None = None
) -> tuple[CorebaModel, dict] | None:
    """The committed toy COREBA checkpoint, or None when it is missing or does not fit.

    Args:
        features: when given, the checkpoint must have been trained on features of the same
            encoder weights (``info["clip_identity"]`` equal to ``features.identity``);
            otherwise None is returned.
        stem: checkpoint path without suffix (default ``data/coreba_toy``).

    Returns:
        ``(model in eval mode, info)`` or None.
    """
    from course_lib.env import data_dir

    stem = Path(stem) if stem is not None else data_dir() / CHECKPOINT_STEM
    try:
        model, info = load_checkpoint(stem)
    except CheckpointError:
        return None
    if features is not None and info.get("clip_identity") != features.identity:
        return None
    return model.eval(), info


def parameter_count(module: torch.nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def with_mode(config: CorebaConfig, **changes) -> CorebaConfig:
    """``dataclasses.replace`` for configs (re-validates the result)."""
    return replace(config, **changes)
