"""Train COREBA on the toy world, compare it with the training-free baseline, run the ablations.

Three modes (run from the repository root; every run is seeded and uses one torch thread unless
``--threads`` says otherwise, so re-running gives the same numbers on the same machine):

* default: extract the clip features of chapter 1's video encoder (``data/video_clip``, 4 frames
  per 2-s clip; ``--encoder tiny``: the frame CLIP ``data/tiny_clip``, one frame per clip) and its
  query tokens for the train / val / test toy splits (cached on disk), train the full model
  (REC_3, 7 balance tokens) selecting the epoch on val, save it as
  ``data/coreba_toy.safetensors`` + ``data/coreba_toy.json`` (configs, val/test metrics, the
  baseline's test metrics and the identity of the encoder the features came from), and print the
  brief test metrics of the model and of :func:`course_lib.baseline.baseline_submission`. The
  committed checkpoint (600 training videos, 40 epochs, about an hour on one CPU thread)::

      python scripts/train_coreba.py --train-videos 600 --epochs 40 --run-dir .cache/coreba_video_run

* ``--ablation``: train every variant of the grid below over ``--seeds`` seeds with the same
  sizes, select each run on val, report test mean and std in ``data/coreba_ablation.csv``.
  Finished runs are remembered in ``<cache>/coreba_ablation_runs*.jsonl`` (keyed by variant,
  seed, sizes and encoder identity), so an interrupted grid resumes where it stopped. The sizes
  of the committed ``data/coreba_ablation.csv`` (which records them in its ``train videos`` and
  ``epochs`` columns; smaller than the checkpoint's so that the grid, 10 distinct variants x 5
  seeds at about 4 minutes each (its ``train seconds`` column), takes about 3.5 hours on one CPU
  thread). On two cores, run two shards in parallel, then the same command without ``--shard``
  (it trains nothing more and writes the table)::

      python scripts/train_coreba.py --ablation --seeds 5 --train-videos 400 --epochs 8 --shard 0/2 &
      python scripts/train_coreba.py --ablation --seeds 5 --train-videos 400 --epochs 8 --shard 1/2
      wait; python scripts/train_coreba.py --ablation --seeds 5 --train-videos 400 --epochs 8

  The grid runs seed-major (every variant's first seed, then every variant's second, ...), so
  ``--finished-only`` can write a table from a grid stopped early, each row with the seeds it has.

  Grid: components ``baseline`` (QD-DETR T2V encoder) -> ``+BAT`` -> ``+CFC`` -> ``+RAM`` (= all,
  full COREBA), recurrence ``REC_N`` (shared block) vs ``MOD_N`` (N blocks) for N = 2, 3, and
  balance tokens ``L_b`` in {0, 1, 3, 7} on the full model; shared configurations are trained
  once (REC_3 = +RAM = L_b 7; REC_1 = +CFC).

Defaults: 200 train / 40 val / 60 test videos (about 8 queries per video), d = 64, batch 32,
AdamW lr 1e-3, 8 epochs, seed 2018 for the checkpoint and seeds 2018, 2019, ... for the ablation.
The exact sizes, times, command and metrics of the committed checkpoint are stored in
``data/coreba_toy.json``; the ablation's per-variant train seconds in the CSV.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

from course_lib.alignment import ablation_config
from course_lib.clip.clip_encoder import COMMITTED_ENCODERS, committed_encoder
from course_lib.env import cache_dir, data_dir, pin_cpu_numerics
from course_lib.experiments.ch05_coreba_toy import (
    ABLATION_CSV,
    CHECKPOINT_STEM,
    ToyFeatures,
    baseline_brief,
    input_widths,
    model_brief,
    parameter_count,
    toy_features,
    toy_model_config,
    toy_splits,
    toy_train_config,
    train_toy_model,
)
from course_lib.files import atomic_write
from course_lib.training import save_checkpoint

REPORTED = (
    "MR-full-mAP",
    "MR-full-R1@0.5",
    "MR-full-R1@0.7",
    "HL-min-VeryGood-mAP",
    "HL-min-VeryGood-Hit1",
)
TARGET_GAP = 15.0  # chapter 5's bar: beat the training-free baseline by >= 15 points on both
ACCEPTANCE = ("MR-full-mAP", "HL-min-VeryGood-Hit1")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options (sizes, optimisation, outputs)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--train-videos", type=int, default=200)
    p.add_argument("--val-videos", type=int, default=40)
    p.add_argument("--test-videos", type=int, default=60)
    p.add_argument("--data-seed", type=int, default=0, help="which draw of toy videos")
    p.add_argument(
        "--encoder",
        choices=COMMITTED_ENCODERS,
        default="video",
        help="clip features and query tokens from chapter 1's video encoder (data/video_clip, 4 "
        "frames per clip; the committed checkpoint) or the frame CLIP (data/tiny_clip, one "
        "frame per clip)",
    )
    p.add_argument("--d", type=int, default=64, help="model width")
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--seed", type=int, default=2018, help="training seed of the checkpoint")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--device", default="cpu", help="torch device (the committed files: cpu)")
    p.add_argument("--cache", type=Path, default=None, help="feature cache (default .cache)")
    p.add_argument("--out", type=Path, default=None, help="checkpoint stem (data/coreba_toy)")
    p.add_argument(
        "--run-dir",
        type=Path,
        default=None,
        help="full model only: keep the run's best/last checkpoints and history here and resume "
        "from them (a larger --epochs extends a finished run)",
    )
    p.add_argument("--ablation", action="store_true", help="train the ablation grid instead")
    p.add_argument("--seeds", type=int, default=3, help="seeds per ablation variant")
    p.add_argument("--csv", type=Path, default=None, help="ablation table (data/...csv)")
    p.add_argument(
        "--shard",
        type=parse_shard,
        default=None,
        metavar="I/N",
        help="ablation only: train every N-th run starting at I (0-based) and write no table; "
        "run N shards in parallel (one per core), then once without --shard to write the CSV",
    )
    p.add_argument(
        "--finished-only",
        action="store_true",
        help="ablation only: train nothing, write the table from the runs finished so far (its "
        "'seeds' column says how many each row has)",
    )
    p.add_argument("--progress", action="store_true", help="tqdm bars for every epoch")
    return p.parse_args(argv)


def sizes_of(args: argparse.Namespace) -> dict:
    """The options that determine a run's result (stored with every output)."""
    keys = ("train_videos", "val_videos", "test_videos", "data_seed", "d", "epochs", "lr")
    sizes = {k: getattr(args, k) for k in keys} | {"batch_size": args.batch_size}
    # frame-CLIP runs have no "encoder" key, so their finished ablation runs are still found
    return sizes if args.encoder == "tiny" else sizes | {"encoder": args.encoder}


def prepare(args: argparse.Namespace) -> tuple[dict, ToyFeatures]:
    """Toy splits and the features of ``--encoder`` (computed once, cached on disk)."""
    splits = toy_splits(args.train_videos, args.val_videos, args.test_videos, args.data_seed)
    records = [rec for recs in splits.values() for rec in recs]
    encoder = committed_encoder(args.encoder, device="cpu", progress=False)
    features = toy_features(encoder, records, cache_root=args.cache)
    seconds = features.warm(records)
    counts = ", ".join(f"{k} {len(v)} queries" for k, v in splits.items())
    print(
        f"clip features (width {features.video(records[0]['vid']).shape[1]}): "
        f"{counts}; {seconds:.0f} s ({args.encoder} encoder {encoder.identity})",
        flush=True,
    )
    return splits, features


def brief_line(name: str, brief: dict) -> str:
    """One line with the reported metrics."""
    return f"{name:<24}" + "  ".join(f"{k} {brief[k]:6.2f}" for k in REPORTED)


# ----------------------------------------------------------------------------- full model
def run_full(args: argparse.Namespace, splits: dict, features: ToyFeatures) -> dict:
    """Train the full model, save it to data/, print its and the baseline's test metrics."""
    model_config = toy_model_config(
        features.dim, d=args.d, **input_widths(features, splits["train"][0])
    )
    train_config = toy_train_config(
        args.epochs, args.lr, args.batch_size, args.seed, progress=args.progress, device=args.device
    )
    cpu_start = time.process_time()
    model, info = train_toy_model(
        model_config,
        train_config,
        splits,
        features,
        out_dir=args.run_dir,
        resume=args.run_dir is not None,
    )
    cpu_seconds = time.process_time() - cpu_start
    test = model_brief(model, splits["test"], features, train_config)
    base = baseline_brief(splits["test"], features)
    print(
        f"trained {info['train_seconds']:.0f} s wall, {cpu_seconds:.0f} s CPU; "
        f"best epoch {info['epoch']} on val"
    )
    for row in info["history"]:
        val = row["val"]
        print(
            f"  epoch {row['epoch']}: loss {row['train']['total']:.3f}  val MR-full-mAP "
            f"{val['MR-full-mAP']:.2f}  HL-min-VeryGood-Hit1 {val['HL-min-VeryGood-Hit1']:.2f}"
        )
    print("test (model):   ", json.dumps(test))
    print("test (baseline):", json.dumps(base))
    print(brief_line("COREBA (REC_3, L_b 7)", test))
    print(brief_line("training-free", base))
    gaps = {k: test[k] - base[k] for k in ACCEPTANCE}
    passed = all(gap >= TARGET_GAP for gap in gaps.values())
    print(
        f"gaps {json.dumps({k: round(v, 2) for k, v in gaps.items()})}: "
        f"{'meets' if passed else 'MISSES'} the >= {TARGET_GAP:.0f}-point target"
    )
    stem = args.out or data_dir() / CHECKPOINT_STEM
    extra = {
        "epoch": info["epoch"],
        "metrics": info["metrics"],
        "test_metrics": test,
        "baseline_test_metrics": base,
        "clip_identity": features.identity,
        "encoder": args.encoder,
        "sizes": sizes_of(args),
        "n_queries": {k: len(v) for k, v in splits.items()},
        # every epoch of the run, resumed calls included; this call's share next to it
        "train_seconds": round(info["run_seconds"], 1),
        "call_seconds": round(info["train_seconds"], 1),
        "train_cpu_seconds": round(cpu_seconds, 1),
        "history": [
            {"epoch": row["epoch"], "loss": round(row["train"]["total"], 4), "val": row["val"]}
            for row in info["history"]
        ],
        "torch_threads": torch.get_num_threads(),
        "parameters": parameter_count(model),
        "command": "python scripts/train_coreba.py " + " ".join(sys.argv[1:]),
    }
    path = save_checkpoint(stem, model, train_config, extra)
    print(f"saved {path} ({path.stat().st_size / 1e6:.1f} MB) and {path.with_suffix('.json')}")
    return extra


# ----------------------------------------------------------------------------- ablation
def ablation_variants() -> list[tuple[str, str, dict]]:
    """``(group, variant, CorebaConfig overrides)``; rows that name the same config share runs."""
    full = dict(mode="rec", n_recurrent=3, n_balance_tokens=7)
    rows = []
    for name in ("baseline", "+BAT", "+CFC", "+RAM"):
        cfg = ablation_config(name)
        over = dict(
            mode=cfg.mode, n_recurrent=cfg.n_recurrent, n_balance_tokens=cfg.n_balance_tokens
        )
        rows.append(("components", name if name != "+RAM" else "+RAM (all)", over))
    for mode in ("rec", "mod"):
        for n in (1, 2, 3):
            if mode == "mod" and n == 1:
                continue  # MOD_1 is REC_1
            rows.append(
                ("recurrence", f"{mode.upper()}_{n}", full | dict(mode=mode, n_recurrent=n))
            )
    for n_tokens in (0, 1, 3, 7):
        rows.append(("balance tokens", f"L_b = {n_tokens}", full | dict(n_balance_tokens=n_tokens)))
    return rows


def config_key(overrides: dict) -> str:
    """A canonical name of a configuration (runs are shared between rows with equal keys)."""
    return json.dumps(overrides, sort_keys=True)


def parse_shard(text: str) -> tuple[int, int]:
    """``"I/N"`` -> ``(I, N)`` with ``0 <= I < N`` (argparse type of ``--shard``)."""
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--shard must look like 0/2, got {text!r}") from None
    if not 0 <= index < count:
        raise argparse.ArgumentTypeError(f"--shard {text}: need 0 <= I < N")
    return index, count


def in_shard(position: int, shard: tuple[int, int] | None) -> bool:
    """Whether the run at ``position`` of the grid (seed-major, then variant) is this shard's."""
    return shard is None or position % shard[1] == shard[0]


def runs_files(directory: Path) -> list[Path]:
    """Every finished-runs file: the shared one and one per shard (``..._runs.1of2.jsonl``)."""
    return sorted(directory.glob("coreba_ablation_runs*.jsonl"))


def load_done(paths: list[Path]) -> dict:
    """Finished ablation runs of every file in ``paths``: ``{run key: result}``."""
    done = {}
    for path in paths:
        for line in path.read_text().splitlines():
            if line.strip():
                row = json.loads(line)
                done[row["key"]] = row
    return done


def append_done(path: Path, row: dict) -> None:
    """Append one finished run (rewrites the file atomically with all previous runs)."""
    lines = path.read_text().splitlines() if path.is_file() else []
    lines.append(json.dumps(row))
    with atomic_write(path, "w") as handle:
        handle.write("\n".join(lines) + "\n")


def run_ablation(args: argparse.Namespace, splits: dict, features: ToyFeatures) -> None:
    """Train every variant x seed (resumable) and write the mean / std table."""
    variants = ablation_variants()
    seeds = [args.seed + i for i in range(args.seeds)]
    # a shard appends to its own file (two processes never rewrite the same file); every run
    # reads them all, so the final run without --shard finds every shard's results
    shard = getattr(args, "shard", None)
    name = "coreba_ablation_runs" + (f".{shard[0]}of{shard[1]}" if shard else "") + ".jsonl"
    runs_file = cache_dir() / name
    done = load_done(runs_files(cache_dir()))
    sizes = sizes_of(args)
    results: dict[str, list[dict]] = {}
    configs = {config_key(over): over for _, _, over in variants}
    start = time.perf_counter()
    position = -1
    # seed-major: an interrupted grid has every variant at (nearly) the same number of seeds
    for seed in seeds:
        for i, (key, over) in enumerate(configs.items()):
            position += 1
            run_key = json.dumps([key, seed, sizes, features.identity], sort_keys=True)
            if not in_shard(position, shard) or (args.finished_only and run_key not in done):
                continue
            if run_key not in done:
                model_config = toy_model_config(
                    features.dim, d=args.d, **input_widths(features, splits["train"][0]), **over
                )
                train_config = toy_train_config(
                    args.epochs,
                    args.lr,
                    args.batch_size,
                    seed,
                    progress=args.progress,
                    device=args.device,
                )
                model, info = train_toy_model(model_config, train_config, splits, features)
                row = {
                    "key": run_key,
                    "val": info["metrics"],
                    "test": model_brief(model, splits["test"], features, train_config),
                    "epoch": info["epoch"],
                    "seconds": info["train_seconds"],
                    "parameters": parameter_count(model),
                }
                append_done(runs_file, row)
                done[run_key] = row
                print(
                    f"[{i + 1}/{len(configs)}] {key} seed {seed}: test MR-full-mAP "
                    f"{row['test']['MR-full-mAP']:.2f} HL-VG-Hit1 "
                    f"{row['test']['HL-min-VeryGood-Hit1']:.2f} ({row['seconds']:.0f} s; "
                    f"{(time.perf_counter() - start) / 60:.0f} min so far)",
                    flush=True,
                )
            results.setdefault(key, []).append(done[run_key])
    if shard is not None:
        print(f"shard {shard[0]}/{shard[1]} done; run once more without --shard for the table")
        return
    base = baseline_brief(splits["test"], features)
    write_table(args, variants, results, base, features.identity)


def write_table(
    args: argparse.Namespace, variants: list, results: dict, base: dict, clip_identity: str
) -> None:
    """``data/coreba_ablation.csv``: one row per variant, test mean and std over seeds.

    Every row also names the sizes and the encoder weights (``clip weights``: the first 16 hex
    digits of the encoder checkpoint's SHA256) the features came from, so a stale table can be
    detected.
    """
    import pandas as pd

    rows = [{"group": "reference", "variant": "training-free baseline", "seeds": 0}]
    for m in REPORTED:
        rows[0] |= {f"{m} mean": base[m], f"{m} std": 0.0}
    for group, name, over in variants:
        runs = results.get(config_key(over), [])
        if not runs:
            raise SystemExit(f"no finished run of ablation variant {name!r}: train it first")
        row = {"group": group, "variant": name, "seeds": len(runs)}
        for m in REPORTED:
            values = np.array([r["test"][m] for r in runs], dtype=float)
            row[f"{m} mean"] = round(float(values.mean()), 2)
            row[f"{m} std"] = round(float(values.std(ddof=1)) if len(values) > 1 else 0.0, 2)
        row["parameters"] = runs[0]["parameters"]
        row["train seconds"] = round(float(np.mean([r["seconds"] for r in runs])), 0)
        rows.append(row)
    weights = clip_identity.split("|")[1][:16]
    for row in rows:  # the sizes and features, so the table says what produced it
        row |= {"train videos": args.train_videos, "epochs": args.epochs, "d": args.d}
        row["clip weights"] = weights
    table = pd.DataFrame(rows)
    path = args.csv or data_dir() / ABLATION_CSV
    with atomic_write(path, "w") as handle:
        table.to_csv(handle, index=False)
    print(table.to_string(index=False))
    print(f"wrote {path}")


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    args = parse_args(argv)
    print(f"numerics: {pin_cpu_numerics()}")  # before any tensor work, as `make` runs
    torch.set_num_threads(args.threads)
    print(f"torch threads: {torch.get_num_threads()}", flush=True)
    splits, features = prepare(args)
    if args.ablation:
        run_ablation(args, splits, features)
        return 0
    extra = run_full(args, splits, features)
    gaps = [extra["test_metrics"][k] - extra["baseline_test_metrics"][k] for k in ACCEPTANCE]
    return 0 if all(not math.isnan(g) and g >= TARGET_GAP for g in gaps) else 1


if __name__ == "__main__":
    sys.exit(main())
