"""Train the tiny video-text encoder of chapter 1 on toy-world clips, then measure it on validation.

The run directory keeps the run state and resumes; ``--max-minutes`` stops (after saving) so a
long run can be split over several sessions. At the end the script prints the validation
measurements of :func:`course_lib.experiments.ch01_video_encoder.evaluate` as one JSON line.

Design comparison on validation (same steps, batch, data and seed; one torch thread each)::

    python scripts/train_video_encoder.py --fusion early --steps 800 --run-dir .cache/video_early
    python scripts/train_video_encoder.py --fusion late --steps 800 --run-dir .cache/video_late
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from course_lib.clip.video_encoder import FUSIONS, VideoTowerConfig
from course_lib.experiments.ch01_video_encoder import (
    ATTRIBUTE_GROUPS,
    VideoTrainingConfig,
    evaluate,
    train,
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fusion", choices=FUSIONS, default="early")
    parser.add_argument("--no-differences", action="store_true", help="early fusion: frames only")
    parser.add_argument("--steps", type=int, default=VideoTrainingConfig.steps)
    parser.add_argument("--batch-size", type=int, default=VideoTrainingConfig.batch_size)
    parser.add_argument("--train-videos", type=int, default=VideoTrainingConfig.train_videos)
    parser.add_argument("--warmup", type=int, default=VideoTrainingConfig.warmup)
    parser.add_argument("--lr", type=float, default=VideoTrainingConfig.lr)
    parser.add_argument("--text-lr", type=float, default=VideoTrainingConfig.text_lr)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--random-init", action="store_true", help="do not inflate the tiny CLIP")
    parser.add_argument(
        "--attribute-weight", type=float, default=0.0, help="auxiliary attribute loss weight"
    )
    parser.add_argument(
        "--pretrain-steps", type=int, default=0, help="first steps: attribute loss alone, no text"
    )
    parser.add_argument(
        "--pretrain-groups",
        nargs="+",
        default=list(ATTRIBUTE_GROUPS),
        choices=ATTRIBUTE_GROUPS,
        help="attribute groups of the pretraining loss",
    )
    parser.add_argument("--run-dir", type=Path, required=True)
    parser.add_argument("--max-minutes", type=float, default=None)
    parser.add_argument("--eval-videos", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--export",
        type=Path,
        default=None,
        help="write the trained model to this .safetensors file (+ .sha256 and a .json record)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Train (or resume), then print the validation measurements as JSON."""
    from course_lib.env import pin_cpu_numerics

    pin_cpu_numerics()
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    tower = VideoTowerConfig(fusion=args.fusion, differences=not args.no_differences)
    config = VideoTrainingConfig(
        tower=tower,
        train_videos=args.train_videos,
        batch_size=args.batch_size,
        steps=args.steps,
        warmup=args.warmup,
        lr=args.lr,
        text_lr=args.text_lr,
        seed=args.seed,
        inflate=not args.random_init,
        attribute_weight=args.attribute_weight,
        pretrain_steps=args.pretrain_steps,
        pretrain_groups=tuple(args.pretrain_groups),
    )
    max_seconds = None if args.max_minutes is None else 60.0 * args.max_minutes
    model, tokenizer, history = train(config, args.run_dir, max_seconds)
    if len(history) < config.steps:
        print(f"stopped at step {len(history)} of {config.steps}; rerun the command to resume")
        return
    result = evaluate(model, tokenizer, tower.frames, "val", args.eval_videos)
    print(json.dumps({"fusion": args.fusion, "differences": tower.differences, **result}))
    if args.export is not None:
        export(model, args.export, config, history, result, argv)


def export(model, path: Path, config, history: list[float], val: dict, argv) -> None:
    """Write the checkpoint (fp16 safetensors + manifest) and its json record next to it."""
    import sys

    from course_lib.clip import ClipEncoder
    from course_lib.clip.video_encoder import save_video_text_model
    from course_lib.files import atomic_write

    name = ClipEncoder.tiny(device="cpu", progress=False).name
    if hasattr(model, "attribute_head"):  # a training aid, not part of the encoder
        del model.attribute_head
    command = "python scripts/train_video_encoder.py " + " ".join(argv or sys.argv[1:])
    record = {
        "training_config": config.to_dict(),
        "steps": len(history),
        "final_loss": round(sum(history[-50:]) / len(history[-50:]), 4),
        "val_metrics": {k: round(float(v), 4) for k, v in val.items()},
        "text_model": name,
        "command": command,
    }
    digest = save_video_text_model(model, path, name, record)
    with atomic_write(path.with_suffix(".json"), "w") as handle:
        json.dump(record, handle, indent=2)
    print(f"wrote {path} (sha256 {digest[:16]}...) and {path.with_suffix('.json')}")


if __name__ == "__main__":
    main()
