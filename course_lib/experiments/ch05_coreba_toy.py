"""COREBA on the toy world: splits, tiny-CLIP features, small sizes, baseline, load-or-train.

The pieces shared by ``scripts/train_coreba.py`` (which trains the committed checkpoints
``data/coreba_toy.*``, ``data/coreba_toy_motion.*`` and ``data/coreba_toy_words.*`` and the
ablation table ``data/coreba_ablation.csv``) and notebooks 04-05:

* :func:`toy_splits` - moment records of the train / val / test splits;
* :class:`ToyFeatures` - tiny-CLIP clip features (disk cache + memory), query tokens for the
  model and pooled query embeddings for the training-free baseline;
* :class:`MotionToyFeatures` - the same plus a motion stream (:mod:`course_lib.clip.motion`);
* :class:`WordMotionToyFeatures` - and query tokens that also carry CLIP's input embedding of
  their word (the tiny CLIP's contextual token features barely tell actions apart);
  :func:`toy_features` picks one by name;
* :func:`input_widths`, :func:`toy_model_config` / :func:`toy_train_config` - the small sizes that train on one CPU
  thread in minutes;
* :func:`baseline_brief`, :func:`model_brief` - the official brief metrics of both on a split;
* :func:`train_toy_model` - seeded training with validation-based selection;
* :func:`load_toy_checkpoint` - the committed checkpoint, refused when it was trained on
  features of another kind or of another tiny-CLIP checkpoint (its features would not fit).
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
from course_lib.experiments.ch05_feature_sources import VideoSource, toy_feature_sources
from course_lib.metrics import eval_qvhighlights
from course_lib.training.checkpoint import load_checkpoint, read_history
from course_lib.training.config import MomentTrainingConfig
from course_lib.training.loop import evaluate, make_loader, predict, train

SPLIT_NAMES = ("train", "val", "test")
CHECKPOINT_STEM = "coreba_toy"  # data/coreba_toy.safetensors + data/coreba_toy.json
MOTION_CHECKPOINT_STEM = "coreba_toy_motion"  # the same model on clip + motion features
WORDS_CHECKPOINT_STEM = "coreba_toy_words"  # ... and query tokens that carry their word
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
    """Tiny-CLIP features of toy records, cached on disk (video) and in memory (everything).

    Args:
        encoder: a :class:`course_lib.clip.ClipEncoder` (e.g. ``ClipEncoder.tiny()``).
        records: every record whose features will be asked for (all splits).
        cache_root: base directory of the video feature cache (default ``cache_dir``).

    Attributes:
        video: ``vid -> float32 (T, D)`` clip features (L2-normalised), the model's video input.
        query: ``qid -> float32 (L, D)`` projected query tokens (the model's text input).
        identity: the encoder identity (model name, weights SHA256, image size).
        kind: which video features (``"clip"``; :class:`MotionToyFeatures`: ``"clip+motion"``).
        checkpoint_stem: file stem under ``data/`` of the committed checkpoint for this kind.
        clip_views: how many leading ``D``-wide blocks of a video feature lie in CLIP's
            embedding space (used by :func:`align_initialisation`; so does the first ``D``
            columns of a query token).
    """

    kind = "clip"
    checkpoint_stem = CHECKPOINT_STEM
    clip_views = 1

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
        """Tiny-CLIP clip features of ``vid`` rounded through float16 (the cache's precision)."""
        return np.asarray(self._video_source(vid), dtype=np.float16).astype(np.float32)

    def text_space(self, vid: str) -> np.ndarray:
        """The clip features in CLIP's text space (what the training-free baseline compares)."""
        return self.video(vid)

    def sentence(self, record: dict) -> np.ndarray:
        """Pooled (D,) embedding of a record's query (input of the baseline)."""
        return self._sentence[record["query"]]

    def warm(self, records: list[dict]) -> float:
        """Compute (or load) the features of every video of ``records``; returns seconds spent."""
        start = time.perf_counter()
        for vid in sorted({rec["vid"] for rec in records}):
            self.video(vid)
        return time.perf_counter() - start


class MotionToyFeatures(ToyFeatures):
    """:class:`ToyFeatures` plus a motion stream: ``[CLIP clip feature, CLIP(moving pixels),
    motion descriptor]`` per clip (:mod:`course_lib.clip.motion`), like the CLIP + SlowFast
    ``d_v`` of QVHighlights models.

    The training-free baseline still reads the plain CLIP part (:meth:`text_space`): the
    descriptor is not in CLIP's text space, so only a trained model can use it.

    Args:
        encoder, records, cache_root: as :class:`ToyFeatures`.
        **motion_settings: :class:`~course_lib.clip.motion.MotionFeatureCache` options
            (``frames_per_clip``, ``threshold``, ``grid``).
    """

    kind = "clip+motion"
    checkpoint_stem = MOTION_CHECKPOINT_STEM
    clip_views = 2

    def __init__(self, encoder, records, cache_root=None, **motion_settings):
        from course_lib.clip.motion import MotionFeatureCache

        super().__init__(encoder, records, cache_root=cache_root)
        self._motion = MotionFeatureCache(encoder, root=cache_root, **motion_settings)
        self.motion_settings = self._motion.settings
        self._plain: dict[str, np.ndarray] = {}

    def text_space(self, vid: str) -> np.ndarray:
        """The plain CLIP clip features (fp16-rounded like the cache)."""
        if vid not in self._plain:
            self._plain[vid] = self._clip_features(vid)
        return self._plain[vid]

    def summed_view(self, vid: str) -> np.ndarray:
        """``unit(plain + moving-pixel view)``: both CLIP-space views in one (D,) per clip.

        What a training-free method can read of the motion stream (the descriptor is not in
        CLIP's text space); reported next to the chapter-3 baseline for comparison.
        """
        both = self.video(vid)[:, : 2 * self.dim]
        summed = both[:, : self.dim] + both[:, self.dim :]
        return summed / np.maximum(np.linalg.norm(summed, axis=1, keepdims=True), 1e-12)

    def video(self, vid: str) -> np.ndarray:
        """``[plain (D), moving-pixel CLIP (D), descriptor]`` per clip (computed once)."""
        if vid not in self._videos:
            plain, motion = self.text_space(vid), self._motion.get(vid)
            if len(plain) != len(motion):
                raise ValueError(f"{vid}: {len(plain)} CLIP clips but {len(motion)} motion clips")
            self._videos[vid] = np.concatenate([plain, motion], axis=1).astype(np.float32)
        return self._videos[vid]


class WordMotionToyFeatures(MotionToyFeatures):
    """:class:`MotionToyFeatures` whose query tokens also carry their word: each token is
    ``[CLIP token feature (D), CLIP input word embedding (W)]``
    (:meth:`~course_lib.clip.ClipEncoder.encode_word_embeddings`).

    The tiny CLIP's text tower learned from frame captions, which never name actions, so its
    contextual token features of "the green cross spins" and "the green cross grows" are nearly
    equal (cosine about 0.995 for the action word): a model reading them cannot tell which
    event a query asks for. Its input word embeddings of "spins" and "grows" still differ. The
    first ``D`` columns stay in CLIP's space (:func:`align_initialisation` copies the video
    projection there); the baseline still reads the pooled sentence embedding.

    Args:
        encoder, records, cache_root, **motion_settings: as :class:`MotionToyFeatures`.
    """

    kind = "clip+motion+words"
    checkpoint_stem = WORDS_CHECKPOINT_STEM

    def __init__(self, encoder, records, cache_root=None, **motion_settings):
        super().__init__(encoder, records, cache_root=cache_root, **motion_settings)
        # 1. the input word embeddings of every distinct query text (real tokens only)
        texts = sorted({rec["query"] for rec in records})
        words, mask = encoder.encode_word_embeddings(texts)
        self._words = {t: words[i][mask[i]].numpy().astype(np.float32) for i, t in enumerate(texts)}
        self._text_of = {rec["qid"]: rec["query"] for rec in records}
        # 2. query tokens = [contextual CLIP token, word embedding]
        self._clip_tokens, self.query = self.query, self._tokens_with_words

    def _tokens_with_words(self, qid) -> np.ndarray:
        """``(L, D + W)`` tokens of query ``qid``: CLIP token features next to word embeddings."""
        tokens = self._clip_tokens(qid)  # raises naming the qid when it is unknown
        words = self._words[self._text_of[qid]]
        if len(words) != len(tokens):
            raise ValueError(f"query {qid}: {len(tokens)} CLIP tokens but {len(words)} words")
        return np.concatenate([tokens, words], axis=1)


def feature_class(kind: str) -> type[ToyFeatures]:
    """The features class of a kind: ``"clip"`` (:class:`ToyFeatures`), ``"clip+motion"``
    (:class:`MotionToyFeatures`) or ``"clip+motion+words"`` (:class:`WordMotionToyFeatures`)."""
    classes = {cls.kind: cls for cls in (ToyFeatures, MotionToyFeatures, WordMotionToyFeatures)}
    if kind not in classes:
        raise ValueError(f"unknown video feature kind {kind!r}; expected one of {sorted(classes)}")
    return classes[kind]


def toy_features(encoder, records: list[dict], kind: str = "clip", cache_root=None) -> ToyFeatures:
    """Features of ``kind`` (see :func:`feature_class`) for ``records``."""
    return feature_class(kind)(encoder, records, cache_root=cache_root)


def input_widths(features: ToyFeatures, record: dict) -> dict[str, int]:
    """``{"d_v", "d_t"}``: widths of a clip feature and of a query token of ``record``
    (CLIP's width, or more with a motion stream or word embeddings)."""
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


def baseline_brief(
    records: list[dict], features: ToyFeatures, video: VideoSource | None = None
) -> dict[str, float]:
    """Brief QVHighlights metrics of the training-free baseline.

    Args:
        records: the split to evaluate.
        features: supplies the pooled query embeddings (and the clip features by default).
        video: clip features to compare with the query (default ``features.text_space``, the
            plain CLIP clip features of chapter 3).
    """
    video = features.text_space if video is None else video
    submission = baseline_submission(records, video, features.sentence)
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
def align_initialisation(
    model: CorebaModel, clip_views: int = 1, clip_dim: int | None = None
) -> CorebaModel:
    """Start from an initialisation that keeps CLIP's clip-word alignment (toy-budget recipe).

    CLIP puts a clip and the words that describe it close together, but two *independent*
    random projections (video / text MLPs) and independent query / key maps scramble that, so
    a freshly built model must re-learn the alignment from scratch, which takes thousands of
    steps. Here the text projection starts as a copy of the video projection and every
    attention's key map as a copy of its query map, so at step 0 a clip already attends most
    to the words its CLIP feature matches. The architecture and the training are unchanged;
    only the starting point differs (used by ``scripts/train_coreba.py`` for every variant).

    With a wider video input (``d_v > d_t``: :class:`MotionToyFeatures`), the first
    ``clip_views`` blocks of ``clip_dim`` video columns are CLIP-space views: each of them starts
    with the same first-layer weights, which the text projection copies; the remaining
    columns (a descriptor outside CLIP's space) keep their random start. Likewise only the first
    ``clip_dim`` columns of a query token need to be CLIP's (:class:`WordMotionToyFeatures`
    appends word embeddings): the text projection copies those, the rest start random.

    Args:
        model: a freshly built model with ``d_v >= clip_views * clip_dim`` and ``d_t >= clip_dim``.
        clip_views: leading ``clip_dim``-wide blocks of the video feature in CLIP's space.
        clip_dim: CLIP's embedding width (default ``d_t``: the query tokens are CLIP's only).

    Returns:
        The same model, modified in place.
    """
    from course_lib.alignment import MaskedMultiHeadAttention

    d_v, d_t = model.config.d_v, model.config.d_t
    clip_dim = d_t if clip_dim is None else clip_dim
    if clip_views < 1 or d_v < clip_views * clip_dim or d_t < clip_dim:
        raise ValueError(
            f"align_initialisation needs d_v >= clip_views * clip_dim and d_t >= clip_dim (one "
            f"CLIP embedding space), got d_v={d_v}, d_t={d_t}, clip_views={clip_views}, "
            f"clip_dim={clip_dim}"
        )
    # 1. every CLIP-space block of the video input starts with the first block's weights
    first = next(m for m in model.video_proj.modules() if isinstance(m, torch.nn.Linear))
    for view in range(1, clip_views):
        first.weight[:, view * clip_dim : (view + 1) * clip_dim] = first.weight[:, :clip_dim]
    # 2. the text projection copies the video projection (its first layer: the CLIP block)
    text_state = model.text_proj.state_dict()
    for key, value in model.video_proj.state_dict().items():
        if value.shape == text_state[key].shape:
            text_state[key] = value
        else:  # first LayerNorm / Linear: last axis d_v vs d_t
            text_state[key][..., :clip_dim] = value[..., :clip_dim]
    model.text_proj.load_state_dict(text_state)
    # 3. every attention's key map copies its query map
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
        aligned_init: start from :func:`align_initialisation` with ``features.clip_views``
            (else the default random init).
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
    if aligned_init:  # features without ``clip_views`` (e.g. planted ones) have one CLIP view
        views, clip_dim = getattr(features, "clip_views", 1), getattr(features, "dim", None)
        align_initialisation(model, clip_views=views, clip_dim=clip_dim)
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
            kind (``info["video_features"]``, ``"clip"`` when absent) from the same tiny-CLIP
            weights (``info["clip_identity"]``) and, when it recorded them, with the same
            motion-stream settings (``info["motion_settings"]``); otherwise None is returned.
        stem: checkpoint path without suffix (default: :func:`checkpoint_stem` of the
            features' kind, ``data/coreba_toy`` without features).

    Returns:
        ``(model in eval mode, info)`` or None.
    """
    from course_lib.env import data_dir

    kind = getattr(features, "kind", ToyFeatures.kind)
    stem = Path(stem) if stem is not None else data_dir() / checkpoint_stem(kind)
    try:
        model, info = load_checkpoint(stem)
    except CheckpointError:
        return None
    if features is not None and (
        info.get("clip_identity") != features.identity
        or info.get("video_features", ToyFeatures.kind) != kind
        or not _same_motion_settings(info, features)
    ):
        return None
    return model.eval(), info


def _same_motion_settings(info: dict, features) -> bool:
    """Whether a checkpoint's motion-stream settings (if it recorded them) are the features'."""
    recorded = info.get("motion_settings")
    return recorded is None or recorded == getattr(features, "motion_settings", None)


def checkpoint_stem(kind: str = "clip") -> str:
    """File stem (under ``data/``) of the committed checkpoint for a video feature kind."""
    return feature_class(kind).checkpoint_stem


def parameter_count(module: torch.nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def with_mode(config: CorebaConfig, **changes) -> CorebaConfig:
    """``dataclasses.replace`` for configs (re-validates the result)."""
    return replace(config, **changes)
