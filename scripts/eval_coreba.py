"""Evaluate a COREBA toy checkpoint on a fresh draw of toy test videos, next to the baseline.

The checkpoint's json records which encoder it was trained on (``encoder``: ``tiny`` when
absent); the same features are computed for
``toyworld.moment_records("test", --videos, seed=--seed)`` and both the model and the chapter-3
training-free baseline are scored with the official brief QVHighlights metrics. A checkpoint
trained on other features is refused (``load_toy_checkpoint``).

    python scripts/eval_coreba.py --seed 1 --videos 60                  # data/coreba_toy
    python scripts/eval_coreba.py --checkpoint runs/my_coreba --seed 2 --json

With ``--json`` the last printed line is one JSON object: ``{"checkpoint", "seed", "videos",
"queries", "encoder", "model": {...}, "baseline": {...}}``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

#: metrics printed in the table (the JSON line holds every brief metric)
SHOWN = ("MR-full-mAP", "MR-full-R1@0.5", "MR-full-R1@0.7", "HL-min-VeryGood-mAP",
         "HL-min-VeryGood-Hit1")  # fmt: skip


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", type=Path, default=None, help="stem (default data/coreba_toy)")
    p.add_argument("--seed", type=int, default=1, help="draw of toy test videos")
    p.add_argument("--videos", type=int, default=60, help="test videos")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--cache", type=Path, default=None, help="feature cache (default .cache)")
    p.add_argument("--json", action="store_true", help="end with one JSON line")
    return p.parse_args(argv)


def evaluate_checkpoint(stem: Path, seed: int, videos: int, cache: Path | None) -> dict:
    """Model and baseline brief metrics of checkpoint ``stem`` on a fresh draw of test videos.

    Args:
        stem: checkpoint path without suffix.
        seed: draw of toy test videos.
        videos: how many test videos.
        cache: feature cache root (None: the default).

    Returns:
        ``{"queries", "encoder", "model": brief metrics, "baseline": brief metrics}``.

    Raises:
        SystemExit: the checkpoint is missing or was trained on other features.
    """
    from course_lib.clip.clip_encoder import committed_encoder
    from course_lib.experiments.ch05_coreba_toy import (
        baseline_brief,
        load_toy_checkpoint,
        model_brief,
        toy_features,
        toy_train_config,
    )
    from course_lib.toyworld import moment_records
    from course_lib.training.checkpoint import read_checkpoint_info

    # 1. the encoder the checkpoint was trained on
    info = read_checkpoint_info(stem)
    encoder_name = info.get("encoder", "tiny")
    encoder = committed_encoder(encoder_name, device="cpu", progress=False)
    # 2. the same features for a fresh draw of test videos; the checkpoint must fit them
    records = moment_records("test", videos, seed=seed)
    features = toy_features(encoder, records, cache_root=cache)
    loaded = load_toy_checkpoint(features, stem=stem)
    if loaded is None:
        raise SystemExit(f"{stem} does not fit the features of the {encoder_name} encoder")
    # 3. both methods, scored with the official brief metrics
    model, _ = loaded
    return {
        "queries": len(records),
        "encoder": encoder_name,
        "model": model_brief(model, records, features, toy_train_config()),
        "baseline": baseline_brief(records, features),
    }


def main(argv: list[str] | None = None) -> dict:
    """Evaluate, print the table (and the JSON line); returns the result."""
    args = parse_args(argv)
    import torch

    from course_lib.env import data_dir, pin_cpu_numerics

    pin_cpu_numerics()
    torch.set_num_threads(args.threads)
    stem = args.checkpoint or data_dir() / "coreba_toy"
    result = evaluate_checkpoint(stem, args.seed, args.videos, args.cache)
    print(f"{stem.name}: toy test seed {args.seed}, {args.videos} videos, {result['queries']} "
          f"queries, {result['encoder']} encoder")  # fmt: skip
    for name in ("model", "baseline"):
        print(f"  {name:<9}" + "  ".join(f"{k} {result[name][k]:6.2f}" for k in SHOWN))
    if args.json:
        line = {"checkpoint": str(stem), "seed": args.seed, "videos": args.videos} | result
        print(json.dumps(line))
    return result


if __name__ == "__main__":
    main()
