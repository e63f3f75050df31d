"""Train the tiny CLIP on toy-world frames and write a committed checkpoint (chapter 1).

Reproduce the committed checkpoint, the improved recipe (about 2.5 hours on one CPU thread; not
bit-exact, see ``data/tiny_clip_history.json``'s note)::

    python scripts/train_tiny_clip.py --out data/tiny_clip.safetensors

and the first, default recipe kept for comparison (patch 16, 400 steps, minutes)::

    python scripts/train_tiny_clip.py --recipe default --out data/tiny_clip_default_recipe.safetensors

The run state is kept in the cache and resumed; the recipe lives in
:mod:`course_lib.experiments.ch01_tiny_clip`.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import numpy as np

from course_lib.experiments.ch01_tiny_clip import (
    TinyClipTrainingConfig,
    WarmStart,
    history_path,
    save_history,
    save_tiny_checkpoint,
    train_tiny_clip,
)


def main(argv: list[str] | None = None) -> None:
    """Command line: train and write the checkpoint."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("data/tiny_clip.safetensors"))
    parser.add_argument("--fast", action="store_true", help="a few-second smoke run")
    parser.add_argument(
        "--recipe",
        choices=["improved", "default"],
        default="improved",
        help="improved: TinyClipTrainingConfig.improved() (patch 8, hard negatives, warm restarts; "
        "data/tiny_clip.safetensors); default: TinyClipTrainingConfig() (patch 16, 400 steps; "
        "data/tiny_clip_default_recipe.safetensors)",
    )
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--no-resume", action="store_true")
    parser.add_argument(
        "--warm-start",
        type=Path,
        default=None,
        help="continue from this checkpoint (weights only, fresh optimizer) at --warm-step",
    )
    parser.add_argument("--warm-step", type=int, default=None, help="steps the checkpoint took")
    args = parser.parse_args(argv)
    from course_lib.env import pin_cpu_numerics

    print(f"numerics: {pin_cpu_numerics()}")  # before any tensor work, as `make` runs
    if args.fast:
        config = TinyClipTrainingConfig.fast()
    else:
        config = TinyClipTrainingConfig.improved() if args.recipe == "improved" else TinyClipTrainingConfig()
    if args.steps is not None:
        config = dataclasses.replace(config, steps=args.steps)
    start = time.time()
    warm = None
    if args.warm_start is not None:
        if args.warm_step is None:
            parser.error("--warm-start needs --warm-step")
        warm = WarmStart(args.warm_start, args.warm_step)
    model, history = train_tiny_clip(config, resume=not args.no_resume, warm_start=warm)
    digest = save_tiny_checkpoint(model, args.out, config)
    save_history(history_path(args.out), history, config, time.time() - start)
    print(
        f"trained {config.steps} steps in {time.time() - start:.0f} s, "
        f"final loss {np.mean(history[-20:]):.3f}; wrote {args.out} sha256 {digest}"
    )




if __name__ == "__main__":
    main()
