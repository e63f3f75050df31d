"""Corpus moment retrieval on the toy corpus (chapter 6): segment-only vs two-stage vs exhaustive.

On ``toyworld.corpus("test", N)`` (default N = 2,000 videos) with the clip features of chapter 1's
video encoder (``--encoder tiny``: the frame CLIP; cached through
:class:`course_lib.clip.FeatureCache`), evaluates three pipelines
(:mod:`course_lib.experiments.ch06_corpus_eval`):

* segment-only: SPR without refinement (top segments merged into proposals);
* two-stage: segment-index stage 1 -> top-K videos -> training-free stage-2 localiser, with
  the stage-1 weight alpha fitted on the VAL split (never on test);
* exhaustive: the same localiser on every video (the slow upper bound);
* chance (reference row): random moments of random videos.

Reports VCMR R@{1,5,10,100} at IoU 0.5/0.7, NDCG@{10,20,40} at IoU 0.3/0.5/0.7 and the wall
time per query of each pipeline, measured in the same run with one torch / faiss thread.
Checks the chapter-6 targets: two-stage >= 90% of exhaustive's VCMR R@10 (IoU 0.5) at <= 1/10
of its time per query; two-stage beats segment-only on NDCG@10 (IoU 0.5).

Usage::

    python scripts/eval_corpus.py                          # 2,000 videos -> data/bench/corpus_eval.csv
    python scripts/eval_corpus.py --n-videos 200 --n-queries 50 --out /tmp/small.csv
    python scripts/eval_corpus.py --localiser coreba --pipelines segment_only two_stage chance \
        --out data/bench/corpus_eval_coreba.csv    # stage 2 = the chapter-5 model (~10 min)
    python scripts/eval_corpus.py --localiser coreba --n-queries 50 \
        --pipelines segment_only two_stage exhaustive chance \
        --out data/bench/corpus_eval_coreba_exhaustive.csv  # the model on every video (~30 min)
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "data" / "bench" / "corpus_eval.csv"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options (sizes, pipeline settings, output path)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n-videos", type=int, default=2000, help="test collection size")
    p.add_argument(
        "--n-queries", type=int, default=None, help="evaluated test queries (seeded; default all)"
    )
    p.add_argument("--val-videos", type=int, default=500, help="validation collection size")
    p.add_argument("--val-queries", type=int, default=150, help="validation queries for alpha")
    p.add_argument("--top-k-videos", type=int, default=20, help="K of the two-stage pipeline")
    p.add_argument(
        "--localiser",
        choices=("refine", "baseline", "coreba"),
        default="refine",
        help="stage 2: training-free refine/baseline, or coreba = the committed chapter-5 model "
        "(data/coreba_toy, trained on features of the same encoder)",
    )
    p.add_argument(
        "--pipelines",
        nargs="+",
        default=["segment_only", "two_stage", "exhaustive", "chance"],
        choices=["segment_only", "two_stage", "exhaustive", "chance"],
        help="pipelines to run (exhaustive with coreba runs the model on every video: hours)",
    )
    p.add_argument(
        "--encoder",
        choices=("tiny", "video"),
        default="video",
        help="clip features of chapter 1's video encoder (4 frames per clip; the committed "
        "results) or of the frame CLIP (one frame per clip)",
    )
    p.add_argument("--index", choices=("flat", "ivf", "ivfpq", "hnsw"), default="flat")
    p.add_argument("--seed", type=int, default=0, help="corpus and query-subsample seed")
    p.add_argument("--cache", default=None, help="feature cache root (default COURSE_CACHE)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    return p.parse_args(argv)


def load_moment_model(encoder):
    """The committed toy COREBA checkpoint, refused unless trained on this encoder's features."""
    from course_lib.experiments.ch05_coreba_toy import load_toy_checkpoint

    loaded = load_toy_checkpoint()
    if loaded is None:
        raise SystemExit(
            "no committed COREBA checkpoint (data/coreba_toy); run scripts/train_coreba.py"
        )
    model, info = loaded
    if info.get("clip_identity") != encoder.identity:
        raise SystemExit(
            f"data/coreba_toy was trained on features of {info.get('clip_identity')}, not of "
            f"{encoder.identity}; retrain it with scripts/train_coreba.py"
        )
    print(f"stage 2: COREBA from data/coreba_toy ({info['parameters']:,} parameters)")
    return model.eval()


def main(argv: list[str] | None = None) -> int:
    """Run the evaluation, print the table and the targets, write the CSV atomically."""
    args = parse_args(argv)
    from course_lib.env import pin_cpu_numerics

    print(f"numerics: {pin_cpu_numerics()}")  # before any tensor work, as `make` runs
    import faiss
    import torch

    from course_lib import toyworld
    from course_lib.clip import FeatureCache
    from course_lib.clip.clip_encoder import committed_encoder
    from course_lib.experiments import ch06_corpus_eval as ev
    from course_lib.files import atomic_write

    # 1. one thread everywhere: timings are per query on one core of a shared machine
    torch.set_num_threads(1)
    faiss.omp_set_num_threads(1)
    print(f"machine: {platform.machine()} {platform.processor() or ''}, {os.cpu_count()} cores; "
          "torch and faiss set to 1 thread")  # fmt: skip
    encoder = committed_encoder(args.encoder, progress=False, device="cpu")
    cache = FeatureCache(encoder, root=args.cache)
    print(f"encoder {encoder.identity}; feature cache {cache.directory}")

    # 2. the trained stage 2 (if asked for) and the features of both collections (computed
    #    once, then read from the cache); a model reads word tokens, so queries carry them
    moment_model = load_moment_model(encoder) if args.localiser == "coreba" else None
    tokens = moment_model is not None
    t0 = time.perf_counter()
    val = ev.prepare_corpus(
        toyworld.corpus("val", args.val_videos, seed=args.seed), encoder, cache, args.val_queries,
        args.seed, with_tokens=tokens,
    )  # fmt: skip
    test = ev.prepare_corpus(
        toyworld.corpus("test", args.n_videos, seed=args.seed), encoder, cache, args.n_queries,
        args.seed, with_tokens=tokens,
    )  # fmt: skip
    print(f"features of {len(val.vids)} val + {len(test.vids)} test videos ready in "
          f"{time.perf_counter() - t0:.0f} s")  # fmt: skip

    # 3. evaluate (alpha on val; the three pipelines timed in this run on test)
    config = ev.EvalConfig(
        index_kind=args.index, top_k_videos=args.top_k_videos, localiser=args.localiser
    )
    result = ev.evaluate_pipelines(
        test, val, config, args.pipelines, log=print, moment_model=moment_model
    )
    signal = ev.localisation_signal(test)
    print(
        f"raw clip-query similarity AUC on test: video level {signal['video_auc']:.3f}, "
        f"clip level inside relevant videos {signal['clip_auc']:.3f} (0.5 = no signal)"
    )
    table = result.table.assign(clip_weights=encoder.weights_id[:16])
    show = ["pipeline", "ms_per_query"] + ev.metric_columns()
    print(table[show].round(2).to_string(index=False))
    for text, ok in ev.check_targets(table):
        print(f"[{'PASS' if ok else 'FAIL'}] {text}")

    # 4. the CSV (atomic: a stopped run never leaves a half-written file)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(args.out, "w") as handle:
        table.to_csv(handle, index=False, float_format="%.6g")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
