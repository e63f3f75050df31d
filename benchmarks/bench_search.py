"""Benchmark of the capstone moment search engine (course_lib.search) with the tiny CLIP.

Writes toy-world videos (30-150 s) as mp4 files (not timed), then measures

* index-build throughput: videos per minute and video-hours indexed per wall-clock hour
  (streaming decode + tiny-CLIP encoding + pooling + atomic caching + faiss segment index);
* query latency: p50 / p95 over held-out queries of ``MomentSearch.search`` (text encoding,
  segment search, localisation on the top videos, thumbnails), after one warm-up query.

    .venv/bin/python benchmarks/bench_search.py                 # 20 videos, 50 queries
    .venv/bin/python benchmarks/bench_search.py --videos 100 --threads 1

Prints the torch thread count: timings on a shared machine are noisy, compare within one run.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np


def write_videos(folder: Path, n: int, fps: float, size: int) -> float:
    """Write ``n`` toy videos as mp4; returns their total duration in seconds."""
    from course_lib import toyworld
    from course_lib.video import write_video

    total = 0.0
    for i in range(n):
        vid = toyworld.make_vid("test", "m", 0, i)
        frames, _ = toyworld.render(vid, fps=fps, size=size)
        write_video(folder / f"{vid}.mp4", frames, fps=fps)
        total += toyworld.video_spec(vid).duration
    return total


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
        seconds = write_videos(videos, args.videos, args.fps, args.size)
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
        records = toyworld.moment_records("test", args.videos)
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


if __name__ == "__main__":
    main()
