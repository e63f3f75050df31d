"""Train and measure the tiny video-text encoder on toy-world clips (chapter 1).

Model: the committed tiny CLIP's text tower (open_clip's tokenizer and text transformer, warm
started from ``data/tiny_clip.safetensors``) with its image tower replaced by a
:class:`course_lib.clip.video_encoder.VideoTower`, so ``model.encode_image`` encodes 2-s clips of
``k`` frames. Training: clips of the train split's untrimmed videos with random true captions
(:mod:`course_lib.experiments.ch01_clip_captions`), one action-swapped hard negative per caption,
multi-positive symmetric InfoNCE (:func:`course_lib.clip.loss.symmetric_info_nce`), AdamW with
warm-up and cosine decay. The run state is saved atomically in a run directory and resumed.

Measurements (:func:`evaluate`), on held-out clips and videos:

* attribute accuracy, text to clip: for clips with exactly one action under way, the caption of
  that clip's actor with each of the toy world's actions is scored against the clip and the best
  must be the true action ("action"); likewise colour, shape (clips with one visible object:
  "a {colour} shape", "a {shape}") and scene ("{scene phrase}");
* localisation AUC inside relevant videos: for each moment query, the clip-query cosine of the
  query's clips against the video's other clips (ROC AUC, 0.5 = chance), averaged over queries.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from course_lib.clip.loss import MAX_LOGIT_SCALE, symmetric_info_nce
from course_lib.clip.video_encoder import (
    VideoTower,
    VideoTowerConfig,
    inflate_from_image_tower,
    preprocess_clips,
)
from course_lib.experiments.ch01_clip_captions import (
    ClipMeaning,
    ClipSample,
    clip_caption,
    match_matrix,
    negative_caption,
    render_clips,
    split_samples,
)

#: length of the unit embeddings fed to the attribute head (a fixed temperature of its logits)
ATTRIBUTE_HEAD_SCALE = 10.0
#: the attribute groups the head reads, in the order of its labels
ATTRIBUTE_GROUPS = ("colour", "shape", "action", "scene")


@dataclass(frozen=True)
class VideoTrainingConfig:
    """Data, optimisation and schedule of a video-encoder training run.

    Attributes:
        tower: the video tower's architecture.
        train_videos: untrimmed train videos whose clips are the training set.
        batch_size: clips per step (one caption and one hard negative each).
        steps: optimisation steps; warmup: linear warm-up steps, then cosine decay.
        lr: peak learning rate of the video tower; text_lr: of the (warm-started) text tower.
        weight_decay: AdamW weight decay of matrices.
        seed: seed of initialisation, batches and captions.
        inflate: start the video tower from the tiny CLIP's image tower
            (:func:`course_lib.clip.video_encoder.inflate_from_image_tower`) instead of at random.
        attribute_weight: weight of the auxiliary attribute losses (:func:`train_step`): one
            linear head ``model.attribute_head`` shared by both towers reads colour, shape,
            action and scene from clip and caption embeddings; 0 = contrastive only. The head is
            a training aid, not exported.
        pretrain_steps: the first steps train the video tower and the attribute head on the
            clips' attribute loss alone (no text), so the tower sees actions before the
            contrastive phase starts (the contrastive loss alone barely moves action features:
            the text tower starts with near-identical action words, so it gives the video tower
            no reason to separate them); these steps count in ``steps``.
        pretrain_groups: the attribute groups the pretraining loss covers (``("action",)``: the
            tower spends the whole phase on what a frame cannot show).
    """

    tower: VideoTowerConfig = VideoTowerConfig()
    train_videos: int = 200
    batch_size: int = 64
    steps: int = 2000
    warmup: int = 100
    lr: float = 5e-4
    text_lr: float = 3e-4
    weight_decay: float = 0.05
    seed: int = 0
    inflate: bool = True
    attribute_weight: float = 0.0
    pretrain_steps: int = 0
    pretrain_groups: tuple[str, ...] = ATTRIBUTE_GROUPS

    def to_dict(self) -> dict:
        """Plain dict (json)."""
        return dataclasses.asdict(self)


def build_model(
    tower: VideoTowerConfig, seed: int = 0, inflate: bool = True, attribute_head: bool = False
):
    """The tiny CLIP (committed weights) with its image tower replaced by a video tower.

    Args:
        tower: the video tower's architecture.
        seed: seed of the video tower's random initialisation.
        inflate: start it from the tiny CLIP's image tower (I3D-style inflation).
        attribute_head: add the auxiliary head ``model.attribute_head`` (see the config).

    Returns:
        ``(model, tokenizer)``: an open_clip ``CLIP`` whose ``encode_image`` takes float
        (B, k, 3, H, W) clips, and its tokenizer.
    """
    from course_lib.clip import ClipEncoder

    encoder = ClipEncoder.tiny(device="cpu", progress=False)
    model = encoder.model
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        video = VideoTower(tower)
        if attribute_head:
            model.attribute_head = torch.nn.Linear(tower.embed_dim, len(attribute_labels()))
    if inflate:
        inflate_from_image_tower(video, model.visual)
    model.visual = video
    return model.train(), encoder.tokenizer


def make_optimizer(model, config: VideoTrainingConfig) -> torch.optim.AdamW:
    """AdamW: the video tower at ``lr``, the rest at ``text_lr``; no decay on vectors."""
    groups: dict[tuple[bool, bool], list] = {}
    for name, param in model.named_parameters():
        key = (name.startswith(("visual.", "attribute_head.")), param.ndim >= 2)
        groups.setdefault(key, []).append(param)
    return torch.optim.AdamW(
        [
            {
                "params": params,
                "lr": config.lr if visual else config.text_lr,
                "base_lr": config.lr if visual else config.text_lr,
                "weight_decay": config.weight_decay if matrix else 0.0,
            }
            for (visual, matrix), params in groups.items()
        ],
        betas=(0.9, 0.98),
        eps=1e-6,
    )


def lr_factor(step: int, config: VideoTrainingConfig) -> float:
    """Linear warm-up to 1, then cosine decay to 0 at ``config.steps``."""
    if step < config.warmup:
        return (step + 1) / config.warmup
    progress = (step - config.warmup) / max(1, config.steps - config.warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def train_step(
    model,
    tokenizer,
    clips: torch.Tensor,
    samples: list[ClipSample],
    rng: np.random.Generator,
    optimizer: torch.optim.Optimizer,
    factor: float,
    attribute_weight: float = 0.0,
) -> float:
    """One step: caption each clip, add a hard negative each, multi-positive InfoNCE, AdamW.

    With ``attribute_weight > 0`` the loss adds ``attribute_weight`` times the losses of the
    shared attribute head (:func:`attribute_logits`): binary cross-entropy of the clips against
    what they show, and cross-entropy of each attribute a caption names.
    """
    # 1. a random true caption per clip and one with a swapped attribute
    captions, meanings = zip(*(clip_caption(s, rng) for s in samples), strict=True)
    negatives = [negative_caption(s, m, rng) for s, m in zip(samples, meanings, strict=True)]
    texts = list(captions) + [t for t, _ in negatives]
    positives = torch.from_numpy(
        match_matrix(list(meanings) + [m for _, m in negatives], samples)
    )
    # 2. encode, normalise, loss with the learnable temperature
    features = model.encode_image(clips)
    video = F.normalize(features, dim=-1)
    text = F.normalize(model.encode_text(tokenizer(texts)), dim=-1)
    loss = symmetric_info_nce(video, text, model.logit_scale, positives)
    if attribute_weight > 0:
        named = list(meanings) + [m for _, m in negatives]
        loss = loss + attribute_weight * (
            _clip_attribute_loss(attribute_logits(model, features), samples)
            + _text_attribute_loss(attribute_logits(model, text), named)
        )
    # 3. update with the scheduled learning rates
    return _update(model, loss, optimizer, factor)


def attribute_step(
    model,
    clips: torch.Tensor,
    samples: list[ClipSample],
    optimizer: torch.optim.Optimizer,
    factor: float,
    groups: tuple[str, ...] = ATTRIBUTE_GROUPS,
) -> float:
    """One supervised step of the video tower: the clip attribute loss alone (pretraining phase).

    The loss is the binary cross-entropy of ``model.attribute_head`` on the clip embeddings
    against what each clip shows (:func:`_clip_attribute_loss`); the text tower gets no gradient.
    """
    logits = attribute_logits(model, model.encode_image(clips))
    loss = _clip_attribute_loss(logits, samples, groups)
    return _update(model, loss, optimizer, factor)


def _update(model, loss: torch.Tensor, optimizer: torch.optim.Optimizer, factor: float) -> float:
    """Backward and AdamW step at the scheduled learning rates; clamp the temperature as CLIP."""
    for group in optimizer.param_groups:
        group["lr"] = group["base_lr"] * factor
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    with torch.no_grad():
        model.logit_scale.clamp_(0.0, MAX_LOGIT_SCALE)
    return float(loss.item())


def _uses_attribute_head(config: dict) -> bool:
    """Whether a run (its config as a dict) trains the auxiliary attribute head."""
    return config.get("attribute_weight", 0.0) > 0 or config.get("pretrain_steps", 0) > 0


def attribute_labels() -> tuple[tuple[str, str], ...]:
    """The attribute head's labels: ``(group, value)`` for every colour, shape, action and scene."""
    from course_lib.toyworld import ACTIONS, COLOURS, SCENES, SHAPES

    values = {"colour": COLOURS, "shape": SHAPES, "action": ACTIONS, "scene": SCENES}
    return tuple((group, value) for group in ATTRIBUTE_GROUPS for value in values[group])


def _group_columns(group: str) -> list[int]:
    """Columns of the attribute head that belong to one group (e.g. the 11 actions)."""
    return [i for i, (g, _) in enumerate(attribute_labels()) if g == group]


def attribute_logits(model, embeddings: torch.Tensor) -> torch.Tensor:
    """The shared attribute head on unit embeddings of either tower: (B, D) -> (B, n_labels).

    One linear head reads colour, shape, action and scene from clip embeddings and from caption
    embeddings, so both towers must place each attribute value along the same directions of the
    joint space (labels: :func:`attribute_labels`).
    """
    return model.attribute_head(F.normalize(embeddings, dim=-1) * ATTRIBUTE_HEAD_SCALE)


def _clip_attribute_loss(
    logits: torch.Tensor, samples: list[ClipSample], groups: tuple[str, ...] = ATTRIBUTE_GROUPS
) -> torch.Tensor:
    """Binary cross-entropy of (B, n_labels) logits against what each clip shows.

    Positive labels: the colour and shape of every visible object, every action under way, the
    scene. Each group's labels are averaged, and the ``groups`` summed.
    """
    labels = attribute_labels()
    index = {label: i for i, label in enumerate(labels)}
    # 1. multi-hot targets: what each clip shows
    target = torch.zeros_like(logits)
    for row, sample in enumerate(samples):
        shown = [("scene", sample.scene)] + [("action", a) for _, _, a in sample.actions]
        for colour, shape in sample.objects:
            shown += [("colour", colour), ("shape", shape)]
        target[row, [index[label] for label in shown]] = 1.0
    # 2. mean over each group's labels, summed over groups (11 actions weigh as much as 5 scenes)
    loss = logits.sum() * 0.0
    for group in groups:
        columns = _group_columns(group)
        loss = loss + F.binary_cross_entropy_with_logits(logits[:, columns], target[:, columns])
    return loss


def _text_attribute_loss(logits: torch.Tensor, meanings: list[ClipMeaning]) -> torch.Tensor:
    """Cross-entropy, per attribute group, of the captions that name a value of that group."""
    labels = attribute_labels()
    total = logits.sum() * 0.0
    for group in ATTRIBUTE_GROUPS:
        # 1. the group's columns and the captions naming one of its values
        columns = _group_columns(group)
        values = [labels[i][1] for i in columns]
        rows = [r for r, m in enumerate(meanings) if getattr(m, group) is not None]
        if rows:
            # 2. softmax over the group's values only
            target = torch.tensor([values.index(getattr(meanings[r], group)) for r in rows])
            total = total + F.cross_entropy(logits[rows][:, columns], target)
    return total


def train(
    config: VideoTrainingConfig,
    run_dir: Path,
    max_seconds: float | None = None,
    log_every: int = 50,
):
    """Train (or resume) a run in ``run_dir``; returns ``(model, tokenizer, history)``.

    Args:
        config: the run's settings (must equal the stored ones when resuming).
        run_dir: holds ``config.json``, ``state.pt`` (model, optimizer, step, history) and the
            training frames ``clips.npy``; written atomically.
        max_seconds: stop (after saving) once this much wall time has passed; resume later.
        log_every: save and print every this many steps.
    """
    from course_lib.files import atomic_write

    run_dir.mkdir(parents=True, exist_ok=True)
    _check_config(run_dir, config)
    model, tokenizer = build_model(
        config.tower, config.seed, config.inflate, _uses_attribute_head(config.to_dict())
    )
    optimizer = make_optimizer(model, config)
    step, history = _resume(run_dir, model, optimizer)
    samples = split_samples("train", config.train_videos)
    frames = _cached_frames(run_dir / "clips.npy", samples, config.tower)
    start = time.time()
    while step < config.steps:
        # batches and captions are drawn from (seed, step): a resumed run sees the same ones
        rng = np.random.default_rng([config.seed, step])
        rows = np.sort(rng.choice(len(samples), config.batch_size, replace=False))
        clips = preprocess_clips(frames[rows], config.tower.frames)
        batch = [samples[i] for i in rows]
        factor = lr_factor(step, config)
        if step < config.pretrain_steps:
            loss = attribute_step(model, clips, batch, optimizer, factor, config.pretrain_groups)
        else:
            loss = train_step(
                model, tokenizer, clips, batch, rng, optimizer, factor, config.attribute_weight
            )
        history.append(loss)
        step += 1
        timed_out = max_seconds is not None and time.time() - start > max_seconds
        if step % log_every == 0 or step == config.steps or timed_out:
            state = {"model": model.state_dict(), "optimizer": optimizer.state_dict()}
            state |= {"step": torch.tensor(step), "history": torch.tensor(history)}
            with atomic_write(run_dir / "state.pt", "wb") as handle:
                torch.save(state, handle)
            print(f"step {step}/{config.steps} loss {np.mean(history[-log_every:]):.3f} "
                  f"({time.time() - start:.0f} s)", flush=True)  # fmt: skip
        if timed_out:
            break
    return model.eval(), tokenizer, history


def _check_config(run_dir: Path, config: VideoTrainingConfig) -> None:
    """Store the config in a new run directory; refuse to resume one with other settings."""
    from course_lib.files import atomic_write

    path = run_dir / "config.json"
    wanted = json.loads(json.dumps(config.to_dict()))
    if path.is_file():
        stored = json.loads(path.read_text(encoding="utf-8"))
        if stored != wanted:
            raise ValueError(f"{path} holds another run's settings: {stored} != {wanted}")
        return
    with atomic_write(path, "w") as handle:
        json.dump(wanted, handle, indent=2)


def _resume(run_dir: Path, model, optimizer) -> tuple[int, list[float]]:
    """Load ``state.pt`` if present: ``(step, history)``; ``(0, [])`` for a new run."""
    path = run_dir / "state.pt"
    if not path.is_file():
        return 0, []
    state = torch.load(path, map_location="cpu", weights_only=True)
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    return int(state["step"]), [float(x) for x in state["history"]]


def _cached_frames(path: Path, samples: list[ClipSample], tower: VideoTowerConfig) -> np.ndarray:
    """Rendered training clips, cached as ``.npy`` next to the run state."""
    from course_lib.files import atomic_write

    expected = (len(samples), tower.frames, tower.image_size, tower.image_size, 3)
    if path.is_file():
        frames = np.load(path, mmap_mode="r")
        if frames.shape == expected:
            return frames
    frames = render_clips(samples, tower.frames, tower.image_size)
    with atomic_write(path, "wb") as handle:
        np.save(handle, frames)
    return frames


# ----------------------------------------------------------------------------- evaluation
@torch.no_grad()
def encode_clips(model, frames: np.ndarray, k: int, batch: int = 128) -> torch.Tensor:
    """L2-normalised clip embeddings (N, D) of uint8 (N, k, H, W, 3) clips."""
    out = [
        F.normalize(model.encode_image(preprocess_clips(frames[i : i + batch], k)), dim=-1)
        for i in range(0, len(frames), batch)
    ]
    return torch.cat(out)


@torch.no_grad()
def encode_texts(model, tokenizer, texts: list[str]) -> torch.Tensor:
    """L2-normalised text embeddings (M, D)."""
    return F.normalize(model.encode_text(tokenizer(texts)), dim=-1)


def attribute_accuracy(
    model, tokenizer, samples: list[ClipSample], video: torch.Tensor
) -> dict[str, float]:
    """Text-to-clip accuracy of action, colour, shape and scene (see the module docstring)."""
    from course_lib.toyworld import ACTIONS, COLOURS, SCENES, SHAPES
    from course_lib.toyworld.captions import SCENE_PHRASES, describe_event

    result: dict[str, float] = {}
    # 1. action: the actor's caption with every action; one action under way in the clip
    single = [i for i, s in enumerate(samples) if len(s.actions) == 1]
    hits = []
    for i in single:
        colour, shape, action = samples[i].actions[0]
        prompts = [describe_event(colour, shape, a) for a in ACTIONS]
        scores = encode_texts(model, tokenizer, prompts) @ video[i]
        hits.append(ACTIONS[int(scores.argmax())] == action)
    result["action_acc"] = float(np.mean(hits)) if hits else float("nan")
    # 2. colour and shape on clips with one visible object, scene on all clips
    lone = [i for i, s in enumerate(samples) if len(s.objects) == 1]
    for name, values, prompt, index in (
        ("colour", COLOURS, "a {} shape", 0),
        ("shape", SHAPES, "a {}", 1),
    ):
        text = encode_texts(model, tokenizer, [prompt.format(v) for v in values])
        pred = (video[lone] @ text.T).argmax(1).numpy()
        truth = [values.index(samples[i].objects[0][index]) for i in lone]
        result[f"{name}_acc"] = float(np.mean(pred == np.array(truth)))
    text = encode_texts(model, tokenizer, [SCENE_PHRASES[s][0] for s in SCENES])
    pred = (video @ text.T).argmax(1).numpy()
    result["scene_acc"] = float(np.mean(pred == np.array([SCENES.index(s.scene) for s in samples])))
    result["n_action_clips"] = float(len(single))
    return result


def composition_accuracy(
    model, tokenizer, samples: list[ClipSample], video: torch.Tensor
) -> float:
    """Clips with one action under way: the true (colour, shape, action) must beat every other.

    Each clip is scored against the canonical caption of every (colour, shape, action) triple of
    the toy world; a hit needs all three attributes right.
    """
    from itertools import product

    from course_lib.toyworld import ACTIONS, COLOURS, SHAPES
    from course_lib.toyworld.captions import describe_event

    triples = list(product(COLOURS, SHAPES, ACTIONS))
    text = encode_texts(model, tokenizer, [describe_event(*t) for t in triples])
    single = [i for i, s in enumerate(samples) if len(s.actions) == 1]
    if not single:
        return float("nan")
    best = (video[single] @ text.T).argmax(1).tolist()
    return float(np.mean([triples[b] == samples[i].actions[0] for b, i in zip(best, single)]))


def query_aucs(
    model, tokenizer, records: list[dict], clips_by_vid: dict[str, torch.Tensor]
) -> dict[str, float]:
    """Localisation AUC inside relevant videos and video retrieval AUC, averaged over queries.

    Localisation: clip-query cosine of the query's clips vs the rest of its video. Retrieval:
    each video scores as its best clip; the videos that show the query's (colour, shape, action)
    (:func:`course_lib.toyworld.videos_showing`) vs the others.
    """
    from course_lib.experiments.ch06_corpus_eval import roc_auc
    from course_lib.toyworld import videos_showing

    vids = sorted(clips_by_vid)
    text = encode_texts(model, tokenizer, [r["query"] for r in records])
    local, retrieval = [], []
    for rec, q in zip(records, text, strict=True):
        sims = (clips_by_vid[rec["vid"]] @ q).numpy()
        inside = np.zeros(len(sims), dtype=bool)
        inside[[c for c in rec["relevant_clip_ids"] if c < len(sims)]] = True
        if inside.any() and not inside.all():
            local.append(roc_auc(sims[inside], sims[~inside]))
        best = np.array([float((clips_by_vid[v] @ q).max()) for v in vids])
        relevant = np.isin(vids, sorted(videos_showing(rec["attributes"], vids) | {rec["vid"]}))
        if not relevant.all():
            retrieval.append(roc_auc(best[relevant], best[~relevant]))
    return {"localisation_auc": float(np.mean(local)), "video_retrieval_auc": float(np.mean(retrieval))}


def evaluate(
    model, tokenizer, k: int, split: str = "val", n_videos: int = 20, seed: int = 0
) -> dict[str, float]:
    """All measurements of the module docstring on ``n_videos`` videos of draw (split, seed)."""
    from course_lib.toyworld import moment_records

    model.eval()
    samples = split_samples(split, n_videos, seed)
    video = encode_clips(model, render_clips(samples, k), k)
    result = attribute_accuracy(model, tokenizer, samples, video)
    result["composition_acc"] = composition_accuracy(model, tokenizer, samples, video)
    rows: dict[str, list[int]] = {}
    for i, sample in enumerate(samples):
        rows.setdefault(sample.vid, []).append(i)
    clips_by_vid = {vid: video[idx] for vid, idx in rows.items()}
    records = moment_records(split, n_videos, seed=seed, with_attributes=True)
    return result | query_aucs(model, tokenizer, records, clips_by_vid)


def frame_clip_model(frames: int):
    """The committed tiny CLIP as a clip encoder: the mean of its k frame embeddings per clip.

    Returns:
        ``(model, tokenizer)`` in the interface of :func:`build_model` (for :func:`evaluate`).
    """
    from course_lib.clip import ClipEncoder
    from course_lib.clip.video_encoder import FramePoolingTower

    encoder = ClipEncoder.tiny(device="cpu", progress=False)
    model = encoder.model
    model.visual = FramePoolingTower(model.visual, frames)
    return model.eval(), encoder.tokenizer


def load_run(run_dir: Path):
    """The model of a run directory's latest state: ``(model, tokenizer, config dict)``."""
    config = json.loads((run_dir / "config.json").read_text(encoding="utf-8"))
    tower = VideoTowerConfig(**config["tower"])
    head = _uses_attribute_head(config)
    model, tokenizer = build_model(tower, config["seed"], config.get("inflate", False), head)
    state = torch.load(run_dir / "state.pt", map_location="cpu", weights_only=True)
    model.load_state_dict(state["model"])
    return model.eval(), tokenizer, config
