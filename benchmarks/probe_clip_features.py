"""Probe: do the clip features see what happens, and when? Frame CLIP vs the video encoder.

Generates toy data from ``--seed`` (``--videos`` untrimmed videos of ``--split`` and as many of
``test_novel`` for unseen colour-shape-action compositions) and prints, for the committed tiny
CLIP (the mean of its k frame embeddings per 2-s clip) and the video encoder side by side, in
one run: text-to-clip accuracy per attribute (action, colour, shape, scene), accuracy on
compositions (all of colour, shape and action right) on the split and on novel compositions,
localisation AUC inside relevant videos and video retrieval AUC
(:func:`course_lib.experiments.ch01_video_encoder.evaluate`). With ``--json`` the last line is
one JSON object ``{"frame_clip": {...}, "video_encoder": {...}, "seed", "split", "videos"}``.

    python benchmarks/probe_clip_features.py --seed 1 --videos 20
    python benchmarks/probe_clip_features.py --run-dir .cache/video_early --json   # a run's state
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from course_lib.experiments import ch01_video_encoder as ve

KEYS = (
    "action_acc",
    "colour_acc",
    "shape_acc",
    "scene_acc",
    "composition_acc",
    "novel_composition_acc",
    "localisation_auc",
    "video_retrieval_auc",
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0, help="toy-world draw of the videos")
    parser.add_argument("--videos", type=int, default=20)
    parser.add_argument("--split", default="test", choices=["val", "test"])
    parser.add_argument("--frames", type=int, default=4, help="frames per clip (frame CLIP)")
    parser.add_argument("--checkpoint", type=Path, default=None, help="video-text checkpoint")
    parser.add_argument("--run-dir", type=Path, default=None, help="or a training run's state")
    parser.add_argument("--json", action="store_true")
    return parser.parse_args(argv)


def measure(model, tokenizer, k: int, args: argparse.Namespace) -> dict[str, float]:
    """The probe's figures of one model."""
    result = ve.evaluate(model, tokenizer, k, args.split, args.videos, args.seed)
    novel = ve.evaluate(model, tokenizer, k, "test_novel", args.videos, args.seed)
    result["novel_composition_acc"] = novel["composition_acc"]
    return {key: round(float(result[key]), 4) for key in KEYS}


def video_model(args: argparse.Namespace):
    """The video encoder to probe: a run's state, a checkpoint, or None."""
    if args.run_dir is not None:
        model, tokenizer, config = ve.load_run(args.run_dir)
        return model, tokenizer, config["tower"]["frames"]
    if args.checkpoint is not None:
        import open_clip

        from course_lib.clip.video_encoder import load_video_text_model

        model, meta = load_video_text_model(args.checkpoint)
        return model, open_clip.get_tokenizer(meta["model_name"]), model.visual.config.frames
    return None


def main(argv: list[str] | None = None) -> None:
    """Measure both encoders and print a table (and the JSON line)."""
    from course_lib.env import pin_cpu_numerics

    pin_cpu_numerics()
    args = parse_args(argv)
    torch.set_num_threads(1)
    rows = {"frame_clip": measure(*ve.frame_clip_model(args.frames), args.frames, args)}
    found = video_model(args)
    if found is not None:
        rows["video_encoder"] = measure(*found, args)
    print(f"toy {args.split} split, seed {args.seed}, {args.videos} videos (+ test_novel)")
    print(f"{'':24s}" + "".join(f"{name:>16s}" for name in rows))
    for key in KEYS:
        print(f"{key:24s}" + "".join(f"{rows[name][key]:16.3f}" for name in rows))
    if args.json:
        print(json.dumps({**rows, "seed": args.seed, "split": args.split, "videos": args.videos}))


if __name__ == "__main__":
    main()
