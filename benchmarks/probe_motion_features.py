"""Probe: do clip features that see *what moves* carry the moment that single frames miss?

Chapters 3 and 5 read one tiny-CLIP feature per 2-s clip, the mean of its frames' features. It
says which objects and which scene are on screen, but toy queries are about *actions* ("the green
cross spins") of objects that stay on screen all video long, so it barely tells the moment's clips
from the rest (notebook 05 measures a clip-level AUC near 0.5). QVHighlights models read a motion
stream (SlowFast) next to CLIP for this reason. This probe tries the simplest motion view that the
same tiny CLIP can encode, the clip's **moving pixels**: the middle frame of the clip with every
pixel blanked whose colour changes by at most ``--threshold`` (0-255) between consecutive frames,
so only objects that move, turn, grow or change colour remain. The clip feature of the probe is
the sum of the plain and the moving-pixel features, L2-normalised (same width as before).

Measured on the toy splits of ``scripts/train_coreba.py`` (200 / 40 / 60 videos, data seed 0):

1. the clip-level AUC (inside vs outside the moment) of the clip-query cosine on val, for the
   plain, moving-pixel and summed features;
2. the chapter-3 training-free baseline on test with plain and with summed features;
3. with ``--epochs N``: COREBA at the checkpoint's sizes trained N epochs on summed features,
   selected on val, evaluated on test (one torch thread).

Usage::

    python benchmarks/probe_motion_features.py               # 1 and 2 (about 5 min)
    python benchmarks/probe_motion_features.py --epochs 8    # and 3 (about 8 min more)
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from course_lib.clip import ClipEncoder
from course_lib.clip.frames import toy_frame_source
from course_lib.clip.motion import moving_pixels
from course_lib.env import pin_cpu_numerics
from course_lib.experiments.ch05_coreba_toy import (
    ToyFeatures,
    baseline_brief,
    model_brief,
    toy_model_config,
    toy_splits,
    toy_train_config,
    train_toy_model,
)
from course_lib.experiments.ch06_corpus_eval import roc_auc

REPORTED = ("MR-full-mAP", "MR-full-R1@0.5", "HL-min-VeryGood-mAP", "HL-min-VeryGood-Hit1")


def _unit(x: np.ndarray) -> np.ndarray:
    """Rows of ``x`` scaled to unit L2 norm."""
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def clip_views(
    encoder: ClipEncoder, vid: str, frames_per_clip: int, threshold: int
) -> tuple[np.ndarray, np.ndarray]:
    """Plain (mean of frames) and moving-pixel features of every 2-s clip of a toy video.

    Returns:
        ``(plain, moving)``, both float32 (T, D) and L2-normalised.
    """
    frames, _, _ = toy_frame_source(frames_per_clip=frames_per_clip)(vid)
    clips = frames.reshape(-1, frames_per_clip, *frames.shape[1:])
    plain = encoder.encode_frames(frames).numpy().reshape(len(clips), frames_per_clip, -1)
    moving = encoder.encode_frames(np.stack([moving_pixels(c, threshold) for c in clips]))
    return _unit(plain.mean(axis=1)).astype(np.float32), moving.numpy().astype(np.float32)


class MotionAwareFeatures(ToyFeatures):
    """:class:`ToyFeatures` whose clip feature is ``unit(unit(plain) + moving)``."""

    def __init__(
        self, encoder: ClipEncoder, records: list[dict], frames_per_clip: int, threshold: int
    ):
        super().__init__(encoder, records)
        self.encoder, self.frames_per_clip, self.threshold = encoder, frames_per_clip, threshold
        self._views: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def views(self, vid: str) -> tuple[np.ndarray, np.ndarray]:
        """``(plain, moving)`` clip features of ``vid`` (computed once)."""
        if vid not in self._views:
            self._views[vid] = clip_views(self.encoder, vid, self.frames_per_clip, self.threshold)
        return self._views[vid]

    def video(self, vid: str) -> np.ndarray:
        """The summed clip features the baseline and COREBA read (computed once)."""
        if vid not in self._videos:
            self._videos[vid] = _unit(sum(self.views(vid)))
        return self._videos[vid]


def moment_auc(sims: np.ndarray, relevant_clip_ids: list[int]) -> float | None:
    """AUC of clip similarities inside vs outside the moment (None when one side is empty)."""
    inside = np.zeros(len(sims), dtype=bool)
    inside[[c for c in relevant_clip_ids if c < len(sims)]] = True
    if inside.all() or not inside.any():
        return None
    return roc_auc(sims[inside], sims[~inside])


def view_aucs(records: list[dict], features: MotionAwareFeatures) -> dict[str, float]:
    """Mean clip-level AUC of the clip-query cosine for each view over ``records``."""
    scores: dict[str, list[float]] = {"plain": [], "moving pixels": [], "sum": []}
    for rec in records:
        plain, moving = features.views(rec["vid"])
        query = features.sentence(rec)
        for name, clips in [
            ("plain", plain),
            ("moving pixels", moving),
            ("sum", _unit(plain + moving)),
        ]:
            auc = moment_auc(clips @ query, rec["relevant_clip_ids"])
            if auc is not None:
                scores[name].append(auc)
    return {name: float(np.mean(values)) for name, values in scores.items()}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--frames-per-clip", type=int, default=4)
    p.add_argument("--threshold", type=int, default=24, help="pixel change (0-255) that counts")
    p.add_argument("--epochs", type=int, default=0, help="train COREBA this long (0: skip)")
    args = p.parse_args(argv)
    print(f"numerics: {pin_cpu_numerics()}")  # before any tensor work, as `make` runs
    torch.set_num_threads(1)
    splits = toy_splits(200, 40, 60, seed=0)
    records = [rec for recs in splits.values() for rec in recs]
    encoder = ClipEncoder.tiny(device="cpu", progress=False)
    print(
        f"tiny CLIP {encoder.identity}; {args.frames_per_clip} frames per clip, threshold {args.threshold}"
    )
    # 1. how well each view separates the moment, without training
    start = time.perf_counter()
    features = MotionAwareFeatures(encoder, records, args.frames_per_clip, args.threshold)
    aucs = view_aucs(splits["val"], features)
    print("clip-level AUC on val (0.5 = no signal):", {k: round(v, 3) for k, v in aucs.items()})
    # 2. the chapter-3 baseline on plain (the committed pipeline's) and on summed features
    plain_features = ToyFeatures(encoder, records)
    rows = {"baseline, plain features": baseline_brief(splits["test"], plain_features)}
    rows["baseline, plain + moving"] = baseline_brief(splits["test"], features)
    # 3. COREBA trained on summed features
    if args.epochs > 0:
        model_config = toy_model_config(features.dim, d=64)
        train_config = toy_train_config(args.epochs)
        model, info = train_toy_model(model_config, train_config, splits, features)
        rows[f"COREBA, plain + moving ({args.epochs} ep)"] = model_brief(
            model, splits["test"], features, train_config
        )
        print(f"COREBA: best epoch {info['epoch']} of {args.epochs}, {info['train_seconds']:.0f} s")
    print(
        f"test split ({len(splits['test'])} queries), {time.perf_counter() - start:.0f} s in all:"
    )
    for name, brief in rows.items():
        print(f"  {name:<34}" + "  ".join(f"{k} {brief[k]:6.2f}" for k in REPORTED))


if __name__ == "__main__":
    main()
