"""The UCoFiA retrieval experiment on the toy world: features, training, evaluation, ablation.

The pipeline of chapter 2, kept out of the notebook so it is tested and reusable:

1. :func:`extract_retrieval_features` renders every trimmed clip, encodes its frames (CLS + patch
   tokens) and its caption (sentence + word tokens) with a frozen CLIP encoder, and caches the
   result atomically on disk, keyed by the encoder identity and every sampling setting.
2. :func:`train_ucofia` trains the :class:`~course_lib.similarity.model.UCoFiA` head on frozen
   features with the symmetric cross-entropy, and keeps the epoch that is best on validation.
3. :func:`evaluate` computes the per-granularity similarities, optionally normalises every
   granularity with a Sinkhorn video bias from a query bank (UCoFiA inference), averages them and
   returns text-to-video and video-to-text retrieval metrics.
4. :func:`run_ablation` trains each model variant once, chooses the Sinkhorn temperature on
   validation only, and reports the test split in one table, next to the untrained CLIP baseline.

A split's features are aligned: text ``i`` describes video ``i`` (one caption per clip).
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from course_lib.errors import DataValidationError
from course_lib.similarity.granularity import video_sentence_similarity
from course_lib.similarity.isa import masked_mean
from course_lib.similarity.model import UCoFiA, UCoFiAConfig, symmetric_ce_loss
from course_lib.similarity.retrieval_metrics import retrieval_metrics
from course_lib.similarity.sinkhorn import fuse_with_video_bias

CACHE_VERSION = 1
GRANULARITY_NAMES = {"video": "video-sentence", "frame": "frame-sentence", "patch": "patch-word"}


# ============================================================================ features
@dataclass
class RetrievalFeatures:
    """Frozen CLIP features of aligned (video, caption) pairs; text ``i`` matches video ``i``.

    Attributes:
        frames: ``(V, F, D)`` frame (CLS) embeddings, zero where padded.
        frame_mask: ``(V, F)`` bool, True for real frames.
        patches: ``(V, F, P, D)`` projected patch tokens (CLS excluded), zero where padded.
        sentence: ``(Q, D)`` sentence embeddings (``Q == V``).
        words: ``(Q, L, D)`` word (token) embeddings, zero where padded.
        word_mask: ``(Q, L)`` bool, True for real tokens (start, words, end).
        vids: the ``V`` video ids.
        captions: the ``Q`` captions.
    """

    frames: torch.Tensor
    frame_mask: torch.Tensor
    patches: torch.Tensor
    sentence: torch.Tensor
    words: torch.Tensor
    word_mask: torch.Tensor
    vids: list[str]
    captions: list[str]

    def __post_init__(self) -> None:
        n = self.frames.shape[0]
        sizes = {f.name: len(getattr(self, f.name)) for f in fields(self)}
        bad = {k: v for k, v in sizes.items() if v != n}
        if bad:
            raise DataValidationError(f"RetrievalFeatures: {n} videos but field sizes {bad}")

    def __len__(self) -> int:
        return self.frames.shape[0]

    def subset(self, index: Sequence[int] | torch.Tensor) -> RetrievalFeatures:
        """The pairs at ``index`` (same order), e.g. a mini-batch."""
        idx = torch.as_tensor(index, dtype=torch.long)
        tensors = {
            f.name: getattr(self, f.name)[idx]
            for f in fields(self)
            if f.name not in ("vids", "captions")
        }
        pick = idx.tolist()
        return RetrievalFeatures(
            **tensors,
            vids=[self.vids[i] for i in pick],
            captions=[self.captions[i] for i in pick],
        )

    @property
    def dim(self) -> int:
        """Feature dimension ``D``."""
        return int(self.frames.shape[-1])

    def arrays(self) -> dict[str, np.ndarray]:
        """Plain numpy arrays (strings as unicode arrays), as stored in the cache file."""
        out = {
            f.name: getattr(self, f.name).numpy()
            for f in fields(self)
            if f.name not in ("vids", "captions")
        }
        out["vids"] = np.asarray(self.vids, dtype=np.str_)
        out["captions"] = np.asarray(self.captions, dtype=np.str_)
        return out

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray]) -> RetrievalFeatures:
        """Inverse of :meth:`arrays`."""
        names = [f.name for f in fields(cls) if f.name not in ("vids", "captions")]
        tensors = {k: torch.from_numpy(np.array(arrays[k])) for k in names}
        return cls(
            **tensors,
            vids=[str(v) for v in arrays["vids"]],
            captions=[str(c) for c in arrays["captions"]],
        )


def frame_times(duration: float, fps: float, n_frames: int) -> np.ndarray:
    """Frame times: sample at ``fps`` (frame centres), then keep at most ``n_frames`` uniformly.

    As in CLIP4Clip / UCoFiA: decode at a fixed rate and subsample uniformly when a clip has
    more frames than the model takes; shorter clips are padded later (and masked).

    Args:
        duration: clip length in seconds (> 0).
        fps: sampling rate (> 0).
        n_frames: the most frames kept (>= 1).

    Returns:
        float64 times in seconds, sorted, ``1 <= len <= n_frames``.
    """
    if not duration > 0 or not fps > 0 or n_frames < 1:
        raise DataValidationError(
            f"frame_times needs duration > 0, fps > 0, n_frames >= 1; got {duration}, {fps}, {n_frames}"
        )
    n_all = max(1, int(np.floor(duration * fps + 1e-9)))
    times = (np.arange(n_all) + 0.5) / fps
    times = times[times < duration] if (times < duration).any() else np.array([duration / 2])
    if len(times) > n_frames:
        keep = np.linspace(0, len(times) - 1, n_frames).round().astype(int)
        times = times[keep]
    return times.astype(np.float64)


def features_cache_key(encoder: Any, pairs: Sequence[dict], settings: Mapping[str, Any]) -> str:
    """Hex key naming a feature file: encoder identity, sampling settings and the pairs."""
    payload = {
        "version": CACHE_VERSION,
        "encoder": encoder.identity,
        "settings": dict(settings),
        "pairs": [[p["vid"], p["caption"]] for p in pairs],
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode("utf-8")).hexdigest()[:24]


def _encode_videos(
    encoder: Any, vids: Sequence[str], durations: Sequence[float], fps: float, n_frames: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Render, encode and pad the frames of every video -> (frames, frame_mask, patches)."""
    from course_lib.toyworld import render_frame

    size = int(encoder.image_size)
    times = [frame_times(float(d), fps, n_frames) for d in durations]
    # 1. render every frame of every video at the encoder's resolution, encode them in one go
    images = np.stack(
        [render_frame(v, float(t), size=size) for v, ts in zip(vids, times) for t in ts]
    )
    tokens = encoder.encode_frame_tokens(images)  # (sum F_v, 1 + P, D), CLS first
    # 2. scatter into padded (V, F, ...) tensors with a frame mask
    n_v, n_tok, dim = len(vids), tokens.shape[1], tokens.shape[2]
    padded = torch.zeros(n_v, n_frames, n_tok, dim)
    mask = torch.zeros(n_v, n_frames, dtype=torch.bool)
    start = 0
    for i, ts in enumerate(times):
        padded[i, : len(ts)] = tokens[start : start + len(ts)]
        mask[i, : len(ts)] = True
        start += len(ts)
    return padded[:, :, 0].contiguous(), mask, padded[:, :, 1:].contiguous()


def _encode_texts(encoder: Any, captions: Sequence[str]) -> tuple[torch.Tensor, ...]:
    """Sentence and word features, word padding cut to the longest caption."""
    words, mask = encoder.encode_text_tokens(list(captions))
    if getattr(encoder.model, "text_pool_type", "argmax") == "argmax":
        # the end-of-text token (the last real one) is the sentence embedding, as in CLIP
        sentence = words[torch.arange(len(words)), mask.sum(1) - 1]
    else:
        sentence = encoder.encode_text(list(captions))
    length = int(mask.sum(1).max())
    return sentence.contiguous(), words[:, :length].contiguous(), mask[:, :length].contiguous()


def _top_k_patches(frames: torch.Tensor, patches: torch.Tensor, top_k: int) -> torch.Tensor:
    """Keep the ``top_k`` patches most similar to their frame's CLS token (spatial order)."""
    from course_lib.similarity.granularity import select_patches

    tokens, _ = select_patches(frames, patches, top_k)
    return tokens[:, :, 1:].contiguous()


def extract_retrieval_features(
    encoder: Any,
    pairs: Sequence[dict],
    fps: float = 0.5,
    n_frames: int = 8,
    top_k: int | None = None,
    cache_root: str | os.PathLike | None = None,
    refresh: bool = False,
) -> RetrievalFeatures:
    """Encode toy-world retrieval pairs with a frozen CLIP encoder (cached on disk).

    Args:
        encoder: a :class:`~course_lib.clip.encoder.ClipEncoder` (``identity``, ``image_size``,
            ``encode_frame_tokens``, ``encode_text_tokens``).
        pairs: retrieval pairs ``{"pair_id", "vid", "caption", "duration"}`` (toy-world ids).
        fps: frame sampling rate before uniform subsampling.
        n_frames: frames per video ``F`` (padded and masked when a clip has fewer).
        top_k: keep only the ``top_k`` patches per frame most similar to the frame's CLS token
            (a parameter-free pre-selection that bounds the cache for big encoders); None keeps
            all ``P`` patches.
        cache_root: cache directory; default ``cache_dir("retrieval_features")``.
        refresh: recompute even when a cache file exists.

    Returns:
        :class:`RetrievalFeatures` (float32, CPU); identical whether computed or loaded.

    Raises:
        DataValidationError: no pairs, or a pair without ``vid`` / ``caption`` / ``duration``.
    """
    from course_lib.env import cache_dir
    from course_lib.files import atomic_save_npz

    if not pairs:
        raise DataValidationError("extract_retrieval_features: no pairs given")
    for i, p in enumerate(pairs):
        missing = [k for k in ("vid", "caption", "duration") if k not in p]
        if missing:
            raise DataValidationError(f"retrieval pair {i} lacks field(s) {missing}")
    settings = {"fps": float(fps), "n_frames": int(n_frames), "top_k": top_k}
    root = Path(cache_root) if cache_root is not None else cache_dir("retrieval_features")
    path = root / f"{features_cache_key(encoder, pairs, settings)}.npz"
    # 1. cached: load without pickle (a cache file can never run code)
    if path.is_file() and not refresh:
        with np.load(path, allow_pickle=False) as data:
            return RetrievalFeatures.from_arrays(data)
    # 2. compute: frames + patches, sentences + words
    vids = [p["vid"] for p in pairs]
    frames, frame_mask, patches = _encode_videos(
        encoder, vids, [p["duration"] for p in pairs], fps, n_frames
    )
    if top_k is not None and top_k < patches.shape[2]:
        patches = _top_k_patches(frames, patches, top_k)
    sentence, words, word_mask = _encode_texts(encoder, [p["caption"] for p in pairs])
    feats = RetrievalFeatures(
        frames, frame_mask, patches, sentence, words, word_mask, vids, [p["caption"] for p in pairs]
    )
    # 3. store atomically (a crash never leaves half a file)
    atomic_save_npz(path, **feats.arrays())
    return feats


# ============================================================================ training
def config_for(features: RetrievalFeatures, **overrides: Any) -> UCoFiAConfig:
    """A :class:`UCoFiAConfig` sized for ``features`` (dim, frames, top-k), with ``overrides``."""
    base = UCoFiAConfig(
        dim=features.dim,
        n_frames=int(features.frames.shape[1]),
        max_words=max(32, int(features.words.shape[1])),
        top_k=min(3, int(features.patches.shape[2])),
    )
    return replace(base, **overrides)


def _forward(model: UCoFiA, batch: RetrievalFeatures) -> torch.Tensor:
    """``(B, B)`` training logits of a batch."""
    return model(
        batch.frames, batch.patches, batch.sentence, batch.words, batch.word_mask, batch.frame_mask
    ).logits


def train_ucofia(
    features: RetrievalFeatures,
    config: UCoFiAConfig,
    epochs: int = 10,
    batch_size: int = 64,
    lr: float = 1e-3,
    seed: int = 0,
    progress: bool = False,
    val: RetrievalFeatures | None = None,
    weight_decay: float = 0.01,
) -> tuple[UCoFiA, dict[str, Any]]:
    """Train a UCoFiA head on frozen features with the symmetric cross-entropy (UCoFiA's objective).

    Mini-batches are drawn without replacement from a seeded generator, so a run repeats exactly
    on a CPU; the global random state is left untouched. With ``val``, the model is evaluated
    after every epoch (no Sinkhorn) and the epoch with the best text-to-video
    ``R@1 + R@5 + R@10`` is returned (model selection on validation, never on test).

    Args:
        features: training pairs.
        config: model hyper-parameters (see :func:`config_for`).
        epochs: passes over the training pairs.
        batch_size: pairs per batch (the in-batch negatives of the contrastive loss).
        lr: AdamW learning rate.
        seed: seed of the initialisation and the batch order.
        progress: show a tqdm bar over epochs.
        val: validation pairs for epoch selection (None: keep the last epoch).
        weight_decay: AdamW weight decay.

    Returns:
        ``(model, history)``; the model is in eval mode and ``history`` holds ``loss`` (mean per
        epoch), ``val_rsum`` (per epoch, when ``val`` is given) and ``best_epoch`` (1-based).
    """
    from tqdm.auto import tqdm

    if epochs < 1 or batch_size < 2:
        raise DataValidationError(
            f"need epochs >= 1 and batch_size >= 2, got {epochs}, {batch_size}"
        )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = UCoFiA(config)
    gen = torch.Generator().manual_seed(seed)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    history: dict[str, Any] = {"loss": [], "val_rsum": [], "best_epoch": epochs}
    best, best_state = -1.0, None
    for _ in tqdm(range(epochs), desc="train UCoFiA", disable=not progress, leave=False):
        model.train()
        order = torch.randperm(len(features), generator=gen)
        losses = []
        # drop a last batch smaller than 2 (a 1 x 1 contrastive problem has no negatives)
        for start in range(0, len(order) - 1, batch_size):
            batch = features.subset(order[start : start + batch_size])
            loss = symmetric_ce_loss(_forward(model, batch))
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
        history["loss"].append(float(np.mean(losses)))
        if val is not None:
            t2v = evaluate(model, val, sinkhorn=False)["t2v"]
            rsum = t2v["R1"] + t2v["R5"] + t2v["R10"]
            history["val_rsum"].append(rsum)
            if rsum > best:  # strictly better: ties keep the earlier epoch
                best, best_state = rsum, copy.deepcopy(model.state_dict())
                history["best_epoch"] = len(history["loss"])
    if best_state is not None:
        model.load_state_dict(best_state)
    return model.eval(), history


# ============================================================================ evaluation
@torch.no_grad()
def similarity_matrices(
    model: UCoFiA,
    videos: RetrievalFeatures,
    texts: RetrievalFeatures | None = None,
    chunk_size: int | None = 64,
) -> dict[str, torch.Tensor]:
    """Per-granularity ``(Q, V)`` similarities of ``texts`` (default: the videos' own captions).

    Args:
        model: a (trained) UCoFiA head.
        videos: the video side.
        texts: the text side (e.g. a query bank); default ``videos``.
        chunk_size: block size of the patch-word level (bounds memory; same result).

    Returns:
        ``{"video"|"frame"|"patch": (Q, V)}`` for the model's granularities.
    """
    texts = videos if texts is None else texts
    model.eval()
    v = model.encode_videos(videos.frames, videos.patches, videos.frame_mask)
    t = model.encode_texts(texts.sentence, texts.words, texts.word_mask)
    return model.similarity(t, v, chunk_size=chunk_size)


def clip_baseline_similarity(
    videos: RetrievalFeatures, texts: RetrievalFeatures | None = None
) -> torch.Tensor:
    """Untrained CLIP: cosine of the mean-pooled frame embedding and the sentence embedding.

    Returns:
        ``(Q, V)`` similarities (the CLIP4Clip "meanP" baseline without any training).
    """
    texts = videos if texts is None else texts
    pooled = masked_mean(
        F.normalize(videos.frames, dim=-1).transpose(1, 2), videos.frame_mask[:, None]
    )
    return video_sentence_similarity(pooled, texts.sentence)


def fuse(
    sims: Mapping[str, torch.Tensor],
    bank_sims: Mapping[str, torch.Tensor] | None = None,
    tau: float = 0.01,
    n_iters: int = 4,
) -> torch.Tensor:
    """Average the granularities; with ``bank_sims`` normalise each one by its Sinkhorn bias first.

    Args:
        sims: granularity -> ``(Q, V)`` similarities.
        bank_sims: granularity -> ``(N_bank, V)`` similarities of the bank texts (None: no
            Sinkhorn normalisation).
        tau: Sinkhorn temperature on cosine similarities (UCoFiA: ``1 / logit_scale``).
        n_iters: Sinkhorn iterations (4 in UCoFiA).

    Returns:
        ``(Q, V)`` fused similarities.
    """
    if bank_sims is None:
        return torch.stack([sims[k] for k in sorted(sims)]).mean(0)
    return fuse_with_video_bias(sims, bank_sims, tau=tau, n_iters=n_iters)


def evaluate(
    model: UCoFiA | None,
    features: RetrievalFeatures,
    bank_features: RetrievalFeatures | None = None,
    sinkhorn: bool = True,
    tau: float | None = None,
    n_iters: int = 4,
) -> dict[str, dict[str, float]]:
    """Retrieval metrics of a model (or of the untrained CLIP baseline when ``model`` is None).

    With ``sinkhorn``, every granularity gets a per-video log bias from Sinkhorn-Knopp on the
    bank texts x these videos (UCoFiA inference, 4 iterations); without ``bank_features`` the
    features' own captions form the bank (transductive, as in DSL). Pass the *training*
    captions for the inductive setting used in UCoFiA.

    Args:
        model: trained head, or None for :func:`clip_baseline_similarity`.
        features: the split to evaluate (text ``i`` matches video ``i``).
        bank_features: query bank (only its texts are used).
        sinkhorn: apply the bank normalisation.
        tau: Sinkhorn temperature; default ``1 / logit_scale`` (the model's logits at ``tau=1``)
            or 0.01 for the baseline.
        n_iters: Sinkhorn iterations.

    Returns:
        ``{"t2v": {...}, "v2t": {...}}`` from :func:`retrieval_metrics`.
    """
    sims, bank = _scored(model, features, bank_features if sinkhorn else None, sinkhorn)
    tau = default_tau(model) if tau is None else tau
    return retrieval_metrics(fuse(sims, bank, tau=tau, n_iters=n_iters))


def default_tau(model: UCoFiA | None) -> float:
    """UCoFiA's Sinkhorn temperature: ``1 / logit_scale`` (its logits at ``tau = 1``).

    For the untrained CLIP baseline (``model=None``) it is 0.01, CLIP's own ``1 / 100``.
    """
    if model is None:
        return 0.01
    return 1.0 / float(model.logit_scale.detach().exp().clamp(max=100.0))


def _scored(
    model: UCoFiA | None,
    features: RetrievalFeatures,
    bank_features: RetrievalFeatures | None,
    sinkhorn: bool,
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor] | None]:
    """Test similarities and, with ``sinkhorn``, bank similarities per granularity."""
    bank_texts = bank_features if bank_features is not None else features
    if model is None:
        sims = {"video": clip_baseline_similarity(features)}
        bank = {"video": clip_baseline_similarity(features, bank_texts)} if sinkhorn else None
        return sims, bank
    sims = similarity_matrices(model, features)
    bank = similarity_matrices(model, features, bank_texts) if sinkhorn else None
    return sims, bank


def top1_counts(sims: torch.Tensor) -> np.ndarray:
    """How often each video is retrieved first: ``bincount(argmax_v sims[q, v])`` (hubness).

    Args:
        sims: ``(Q, V)`` similarities.

    Returns:
        int64 ``(V,)`` counts summing to ``Q``; a hub has a large count, an unreachable video 0.
    """
    sims = torch.as_tensor(sims)
    return np.bincount(sims.argmax(dim=1).numpy(), minlength=sims.shape[1]).astype(np.int64)


def find_confusions(
    coarse: torch.Tensor,
    fine: torch.Tensor,
    attributes: Sequence[Any],
    differ_in: str,
) -> list[tuple[int, int]]:
    """Pairs the coarse level confuses and the fine level separates, for a one-attribute swap.

    A pair ``(i, j)`` is returned when video ``j`` differs from text ``i``'s true video ``i``
    *only* in the attribute ``differ_in`` (e.g. ``"colour"`` or ``"action"``), the coarse level
    scores the wrong video higher (``coarse[i, j] > coarse[i, i]``) and the fine level scores the
    true video higher (``fine[i, i] > fine[i, j]``).

    Args:
        coarse: ``(Q, V)`` coarse similarities (e.g. video-sentence).
        fine: ``(Q, V)`` finer similarities (e.g. patch-word).
        attributes: per pair, a named tuple with ``colour, shape, action, scene``.
        differ_in: the attribute that must differ; all others must be equal.

    Returns:
        ``[(text_index, wrong_video_index), ...]``, largest coarse error first.
    """
    names = attributes[0]._fields
    if differ_in not in names:
        raise DataValidationError(f"differ_in must be one of {names}, got {differ_in!r}")
    found = []
    for i, a in enumerate(attributes):
        for j, b in enumerate(attributes):
            same = all(getattr(a, n) == getattr(b, n) for n in names if n != differ_in)
            swapped = same and getattr(a, differ_in) != getattr(b, differ_in)
            if swapped and coarse[i, j] > coarse[i, i] and fine[i, i] > fine[i, j]:
                found.append((float(coarse[i, j] - coarse[i, i]), i, j))
    return [(i, j) for _, i, j in sorted(found, key=lambda x: (-x[0], x[1], x[2]))]


# ============================================================================ ablation
MODEL_VARIANTS: dict[str, dict[str, Any]] = {
    "video": {"granularities": ("video",)},
    "frame": {"granularities": ("frame",)},
    "patch": {"granularities": ("patch",)},
    "all-mean": {"aggregation": "mean"},
    "all-isa": {},
}


@dataclass(frozen=True)
class Variant:
    """One row of the ablation table.

    Attributes:
        name: row label.
        model: key of :data:`MODEL_VARIANTS` (config overrides), or None for untrained CLIP.
        sinkhorn: normalise with the training-caption bank at evaluation.
    """

    name: str
    model: str | None
    sinkhorn: bool = False


DEFAULT_VARIANTS: tuple[Variant, ...] = (
    Variant("CLIP zero-shot, video-sentence (no training)", None),
    Variant("video-sentence", "video"),
    Variant("frame-sentence (ISA)", "frame"),
    Variant("patch-word (ISA)", "patch"),
    Variant("all three, mean pooling", "all-mean"),
    Variant("all three, ISA", "all-isa"),
    Variant("CLIP zero-shot + Sinkhorn", None, True),
    Variant("all three, mean pooling + Sinkhorn", "all-mean", True),
    Variant("all three, ISA + Sinkhorn (UCoFiA)", "all-isa", True),
)

TAU_GRID: tuple[float, ...] = (0.005, 0.01, 0.02, 0.05)


def _best_tau(
    sims: Mapping[str, torch.Tensor], bank_sims: Mapping[str, torch.Tensor], taus: Sequence[float]
) -> float:
    """The temperature in ``taus`` with the best t2v R@1+R@5+R@10 (first one on ties)."""
    scores = []
    for tau in taus:
        t2v = retrieval_metrics(fuse(sims, bank_sims, tau=tau))["t2v"]
        scores.append(t2v["R1"] + t2v["R5"] + t2v["R10"])
    return float(taus[int(np.argmax(scores))])


def select_tau(
    model: UCoFiA | None,
    val: RetrievalFeatures,
    bank: RetrievalFeatures,
    taus: Sequence[float] = TAU_GRID,
) -> float:
    """The Sinkhorn temperature with the best validation text-to-video R@1+R@5+R@10.

    Args:
        model: trained head, or None for the untrained CLIP baseline.
        val: validation pairs (never the test split).
        bank: query bank (its texts), e.g. the training pairs.
        taus: candidate temperatures.

    Returns:
        The chosen temperature (the first best one on ties).
    """
    sims, bank_sims = _scored(model, val, bank, sinkhorn=True)
    return _best_tau(sims, bank_sims, taus)


class _SimilarityCache:
    """Per-(model, split) similarity matrices, each computed once (test and bank sides)."""

    def __init__(self, bank: RetrievalFeatures) -> None:
        self.bank = bank
        self.store: dict[tuple[str, str, bool], dict[str, torch.Tensor]] = {}

    def get(
        self, key: str, model: UCoFiA | None, split: str, feats: RetrievalFeatures, bank: bool
    ) -> dict[str, torch.Tensor]:
        """``(Q, V)`` sims of ``feats`` (``bank=False``) or bank texts x ``feats`` videos."""
        if (key, split, bank) not in self.store:
            texts = self.bank if bank else None
            if model is None:
                sims = {"video": clip_baseline_similarity(feats, texts)}
            else:
                sims = similarity_matrices(model, feats, texts)
            self.store[(key, split, bank)] = sims
        return self.store[(key, split, bank)]


def _metrics(
    cache: _SimilarityCache,
    key: str,
    model: UCoFiA | None,
    split: str,
    feats: RetrievalFeatures,
    tau: float | None,
) -> dict[str, dict[str, float]]:
    """Retrieval metrics from cached sims; ``tau`` None means no Sinkhorn."""
    sims = cache.get(key, model, split, feats, bank=False)
    bank = None if tau is None else cache.get(key, model, split, feats, bank=True)
    return retrieval_metrics(fuse(sims, bank, tau=tau if tau is not None else 1.0))


def run_ablation(
    train: RetrievalFeatures,
    val: RetrievalFeatures,
    test: RetrievalFeatures,
    variants: Sequence[Variant] = DEFAULT_VARIANTS,
    seed: int = 0,
    epochs: int = 10,
    batch_size: int = 64,
    lr: float = 1e-3,
    taus: Sequence[float] = TAU_GRID,
    trained: dict[str, tuple[UCoFiA, dict]] | None = None,
    base_config: Mapping[str, Any] | None = None,
):
    """Train each model variant once, select epoch and Sinkhorn tau on ``val``, report ``test``.

    Args:
        train, val, test: feature splits; the bank for Sinkhorn is the training captions.
        variants: rows of the table (see :class:`Variant`).
        seed: seed of every training run.
        epochs, batch_size, lr: training settings (see :func:`train_ucofia`).
        taus: Sinkhorn temperatures tried on validation.
        trained: optional cache ``model key -> (model, history)``; models found there are
            reused, newly trained ones are added (so a notebook can inspect them afterwards).
        base_config: config overrides shared by all variants (e.g. ``{"n_layers": 1}``).

    Returns:
        A pandas DataFrame indexed by variant name with columns ``sinkhorn``, ``tau``,
        ``best_epoch``, ``val t2v R@1`` and test ``t2v R@1/5/10``, ``t2v MedR``, ``v2t R@1``.
    """
    import pandas as pd

    trained = {} if trained is None else trained
    cache = _SimilarityCache(train)
    rows = []
    for v in variants:
        # 1. the model of this row: trained once, shared by rows with the same model key
        model, key = None, v.model or "clip"
        if v.model is not None:
            if v.model not in MODEL_VARIANTS:
                raise DataValidationError(f"variant {v.name!r}: unknown model {v.model!r}")
            if v.model not in trained:
                cfg = config_for(train, **{**dict(base_config or {}), **MODEL_VARIANTS[v.model]})
                trained[v.model] = train_ucofia(train, cfg, epochs, batch_size, lr, seed, val=val)
            model = trained[v.model][0]
        # 2. Sinkhorn temperature chosen on validation only
        tau = None
        if v.sinkhorn:
            val_sims = cache.get(key, model, "val", val, bank=False)
            tau = _best_tau(val_sims, cache.get(key, model, "val", val, bank=True), taus)
        # 3. report validation R@1 and the test metrics
        val_m = _metrics(cache, key, model, "val", val, tau)
        test_m = _metrics(cache, key, model, "test", test, tau)
        rows.append({
            "variant": v.name,
            "sinkhorn": v.sinkhorn,
            "tau": float("nan") if tau is None else tau,
            "best_epoch": trained[v.model][1]["best_epoch"] if v.model else 0,
            "val t2v R@1": val_m["t2v"]["R1"],
            "t2v R@1": test_m["t2v"]["R1"],
            "t2v R@5": test_m["t2v"]["R5"],
            "t2v R@10": test_m["t2v"]["R10"],
            "t2v MedR": test_m["t2v"]["MedR"],
            "v2t R@1": test_m["v2t"]["R1"],
        })  # fmt: skip
    return pd.DataFrame(rows).set_index("variant")
