"""Benchmark of the capstone moment search engine (course_lib.search) with the tiny CLIP.

Writes toy-world videos (30-150 s) as mp4 files (not timed), then measures

* index-build throughput: videos per minute and video-hours indexed per wall-clock hour
  (streaming decode + tiny-CLIP encoding + pooling + atomic caching + faiss segment index);
* query latency: p50 / p95 over held-out queries of ``MomentSearch.search`` (text encoding,
  segment search, localisation on the top videos, thumbnails), after one warm-up query;
* with ``--alpha-sweep``: the top-3 hit rate (a video showing the query's event among the first
  3 results, first held-out query of every video; also with the query's source video only) for
  a sweep of the stage-1 weight ``alpha``; run it on ``--split val`` to choose alpha without
  looking at test videos.

    .venv/bin/python benchmarks/bench_search.py                 # 20 videos, 50 queries
    .venv/bin/python benchmarks/bench_search.py --videos 100 --threads 1
    .venv/bin/python benchmarks/bench_search.py --split val --videos 30 --threads 1 --alpha-sweep

Prints the torch thread count: timings on a shared machine are noisy, compare within one run.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

ALPHAS = (0.0, 0.25, 0.5, 0.75, 0.9, 1.0)


def write_videos(folder: Path, split: str, n: int, fps: float, size: int) -> float:
    """Write ``n`` toy videos of ``split`` as mp4; returns their total duration in seconds."""
    from course_lib import toyworld
    from course_lib.video import write_video

    total = 0.0
    for i in range(n):
        vid = toyworld.make_vid(split, "m", 0, i)
        frames, _ = toyworld.render(vid, fps=fps, size=size)
        write_video(folder / f"{vid}.mp4", frames, fps=fps)
        total += toyworld.video_spec(vid).duration
    return total


def hit_rates(
    engine, records: list[dict], alphas=ALPHAS, k: int = 3
) -> dict[float, tuple[float, float]]:
    """Top-k hit rates of the engine for each stage-1 weight ``alpha`` (restored afterwards).

    Every video is asked its first held-out query (records made ``with_attributes=True``). A
    query is a hit when a *right* video, one showing its event in its scene
    (:func:`course_lib.toyworld.videos_showing`, as notebook 07 and the end-to-end test count),
    is among the first ``k`` results; the stricter rate counts only the query's source video.

    Returns:
        ``{alpha: (right-video rate, source-video rate)}``.
    """
    from course_lib import toyworld

    first: dict[str, dict] = {}
    for rec in records:
        first.setdefault(rec["vid"], rec)
    right = {vid: toyworld.videos_showing(rec["attributes"], first) for vid, rec in first.items()}
    before, rates = engine.alpha, {}
    for alpha in alphas:
        engine.alpha = alpha
        found = [
            {Path(v).stem for v in engine.search(rec["query"], k=k)["vid"]}
            for rec in first.values()
        ]
        rates[alpha] = (
            float(np.mean([bool(f & right[vid]) for f, vid in zip(found, first, strict=True)])),
            float(np.mean([vid in f for f, vid in zip(found, first, strict=True)])),
        )
    engine.alpha = before
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=20, help="toy videos to index")
    parser.add_argument("--queries", type=int, default=50, help="queries to time")
    parser.add_argument("--fps", type=float, default=2.0, help="frame rate of the written files")
    parser.add_argument("--size", type=int, default=64, help="frame side of the written files")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: torch's)"
    )
    parser.add_argument("-k", type=int, default=10, help="results per query")
    parser.add_argument("--split", default="test", help="toy split of the indexed videos")
    parser.add_argument(
        "--alpha-sweep", action="store_true", help="top-3 hit rate for each stage-1 weight"
    )
    args = parser.parse_args()

    import torch

    from course_lib import toyworld
    from course_lib.clip import ClipEncoder
    from course_lib.search import MomentSearch

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    print(f"torch threads: {torch.get_num_threads()} (set with --threads)")
    encoder = ClipEncoder.tiny(progress=False)
    print(f"encoder: {encoder.identity} on {encoder.device}")
    with tempfile.TemporaryDirectory() as tmp:
        videos = Path(tmp) / "videos"
        videos.mkdir()
        seconds = write_videos(videos, args.split, args.videos, args.fps, args.size)
        # 1. build throughput (everything from the files to the saved index)
        t0 = time.perf_counter()
        engine = MomentSearch.build(videos, Path(tmp) / "index", encoder=encoder, progress=False)
        build_s = time.perf_counter() - t0
        print(
            f"build: {args.videos} videos ({seconds / 3600:.2f} video-hours, "
            f"{args.size}x{args.size} @ {args.fps:g} fps) in {build_s:.1f} s -> "
            f"{args.videos / build_s * 60:.1f} videos/min, "
            f"{seconds / build_s:.0f} video-hours/hour"
        )
        # 2. query latency (one warm-up query first)
        records = toyworld.moment_records(args.split, args.videos, with_attributes=True)
        texts = [r["query"] for r in records][: args.queries]
        engine.search(texts[0], k=args.k)
        times = []
        for text in texts:
            t0 = time.perf_counter()
            engine.search(text, k=args.k)
            times.append(time.perf_counter() - t0)
        ms = np.asarray(times) * 1e3
        print(
            f"query latency over {len(ms)} queries (k={args.k}, {engine.index.ntotal} segments): "
            f"p50 {np.percentile(ms, 50):.1f} ms, p95 {np.percentile(ms, 95):.1f} ms"
        )
        # 3. the stage-1 weight: hit rate for each alpha (engine default printed for reference)
        if args.alpha_sweep:
            rates = hit_rates(engine, records)
            print(
                f"top-3 hit rate on {args.split} (right video / source video only; "
                f"engine default alpha {engine.alpha}):"
            )
            for alpha, (rate, own) in rates.items():
                print(f"  alpha {alpha:4.2f}: {rate:.3f} / {own:.3f}")


if __name__ == "__main__":
    main()
