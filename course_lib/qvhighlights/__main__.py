"""Command line: ``python -m course_lib.qvhighlights train|predict|eval`` (see the package docstring).

Exits 0 on success and 1 with ``ERROR: <message>`` (naming the bad file, record or field) when an
input is wrong; progress goes to stdout.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from course_lib.errors import CourseError
from course_lib.qvhighlights.release import SPLITS, VIDEO_FEATURES
from course_lib.qvhighlights.run import eval_run, predict_run, train_run


def _parser() -> argparse.ArgumentParser:
    """The three sub-commands and their options."""
    parser = argparse.ArgumentParser(
        prog="python -m course_lib.qvhighlights",
        description="COREBA on the QVHighlights release: train, predict, eval.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    # train
    train = sub.add_parser("train", help="train COREBA (resumable: run it again to continue)")
    train.add_argument("--release", type=Path, required=True, help="QVHighlights release folder")
    train.add_argument("--run-dir", type=Path, required=True, help="run folder (checkpoints)")
    train.add_argument(
        "--config", type=Path, default=None, help="settings json (default: COREBA's)"
    )
    train.add_argument(
        "--video-features",
        choices=tuple(VIDEO_FEATURES),
        default=None,
        help="video streams (default: the config's, clip+slowfast)",
    )
    train.add_argument("--epochs", type=int, default=None, help="total epochs (extends a run)")
    train.add_argument(
        "--device", default=None, help="cpu, cuda, cuda:1 ... (default: auto; COURSE_DEVICE wins)"
    )
    train.add_argument("--num-workers", type=int, default=None, help="DataLoader workers")
    train.add_argument("--no-progress", action="store_true", help="no per-batch progress bars")
    # predict
    pred = sub.add_parser("predict", help="write hl_{split}_submission.jsonl")
    pred.add_argument("--run-dir", type=Path, required=True)
    pred.add_argument("--split", nargs="+", choices=SPLITS, default=["val", "test"])
    pred.add_argument("--release", type=Path, default=None, help="default: the run's release")
    pred.add_argument("--checkpoint", choices=("best", "last"), default="best")
    pred.add_argument("--out-dir", type=Path, default=None, help="default: the run folder")
    pred.add_argument("--device", default=None)
    # eval
    ev = sub.add_parser("eval", help="official QVHighlights metrics of a submission")
    ev.add_argument("--submission", type=Path, required=True)
    ev.add_argument("--ground-truth", type=Path, required=True, help="highlight_val_release.jsonl")
    ev.add_argument("--out", type=Path, default=None, help="default: <submission>_metrics.json")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "train":
            train_run(
                args.release,
                args.run_dir,
                args.config,
                video_features=args.video_features,
                epochs=args.epochs,
                device=args.device,
                num_workers=args.num_workers,
                progress=False if args.no_progress else None,
            )
        elif args.command == "predict":
            predict_run(
                args.run_dir, args.split, args.release, args.checkpoint, args.out_dir, args.device
            )
        else:
            eval_run(args.submission, args.ground_truth, args.out)
    except CourseError as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
