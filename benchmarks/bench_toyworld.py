"""Benchmark: generate and render N untrimmed toy-world videos (default 1,000 at 0.5 fps).

The course's bar: 1,000 videos in under 60 s on a 2-core CPU (single process, numpy only).

Usage::

    python benchmarks/bench_toyworld.py            # 1,000 videos, 0.5 fps, 64 x 64
    python benchmarks/bench_toyworld.py --n 200 --fps 1 --size 96
"""

from __future__ import annotations

import argparse
import time

from course_lib import toyworld
from course_lib.toyworld.script import video_spec

BUDGET_S_PER_1000 = 60.0


def main(argv: list[str] | None = None) -> None:
    """Parse options, time spec generation + rendering, and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000, help="number of videos (default 1000)")
    parser.add_argument("--fps", type=float, default=0.5, help="frames per second (default 0.5)")
    parser.add_argument("--size", type=int, default=64, help="frame side in pixels (default 64)")
    parser.add_argument("--split", default="test", help="split to draw videos from")
    parser.add_argument("--seed", type=int, default=12345, help="view seed (fresh, uncached ids)")
    args = parser.parse_args(argv)
    if args.n <= 0:
        parser.error(f"--n must be positive, got {args.n}")

    video_spec.cache_clear()
    start = time.perf_counter()
    n_frames, seconds_of_video = 0, 0.0
    for i in range(args.n):
        vid = toyworld.make_vid(args.split, "m", args.seed, i)
        frames, _ = toyworld.render(vid, fps=args.fps, size=args.size)
        n_frames += frames.shape[0]
        seconds_of_video += video_spec(vid).duration
    elapsed = time.perf_counter() - start

    per_1000 = elapsed * 1000.0 / args.n
    print(
        f"videos: {args.n} ({seconds_of_video / 3600:.1f} h of video), fps={args.fps}, size={args.size}"
    )
    print(
        f"generate + render: {elapsed:.2f} s, {n_frames} frames, {n_frames / elapsed:.0f} frames/s"
    )
    print(
        f"per 1,000 videos: {per_1000:.1f} s (budget {BUDGET_S_PER_1000:.0f} s, "
        f"ratio {per_1000 / BUDGET_S_PER_1000:.2f}) -> {'PASS' if per_1000 < BUDGET_S_PER_1000 else 'FAIL'}"
    )

    start = time.perf_counter()
    records = toyworld.moment_records(args.split, args.n, seed=args.seed)
    print(
        f"moment_records for the same videos: {time.perf_counter() - start:.2f} s, {len(records)} queries"
    )
    start = time.perf_counter()
    corp = toyworld.corpus(args.split, args.n, seed=args.seed)
    print(
        f"corpus for the same videos: {time.perf_counter() - start:.2f} s, {len(corp['queries'])} queries"
    )


if __name__ == "__main__":
    main()
