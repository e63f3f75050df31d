"""Benchmark of the capstone moment search engine (course_lib.search): speed and accuracy.

Writes toy-world videos (30-150 s) of one random draw (``--seed``) as mp4 files (not timed),
indexes them with a committed encoder (``--encoder video``: chapter 1's video encoder, 4 frames
per 2-s clip, the default; ``--encoder tiny``: the tiny frame CLIP), then measures

* index-build throughput: videos per minute and video-hours indexed per wall-clock hour
  (streaming decode + encoding + pooling + atomic caching + faiss segment index);
* query latency: p50 / p95 over held-out queries of ``MomentSearch.search`` (text encoding,
  segment search, localisation on the top videos, thumbnails), after one warm-up query;
* accuracy at the engine's default alpha, always: the first held-out query of every indexed
  video is asked once and counts as

  - a **top-1 moment hit** when the first result is in the query's own video and its window has
    temporal IoU >= 0.5 with one of the query's relevant windows;
  - a **right video in the top 3** when a video showing the query's event in its scene
    (:func:`course_lib.toyworld.videos_showing`) is among the first 3 results;

  each rate with a 95% Wilson score interval (a binomial interval that stays inside [0, 1] and
  is sensible for the few queries of a small run);
* with ``--alpha-sweep``: the top-3 hit rate (right video; also with the query's source video
  only) for a sweep of the stage-1 weight ``alpha``; run it on ``--split val`` to choose alpha
  without looking at test videos.

With ``--json`` the last printed line is one JSON object: seed, split, videos, queries (the
accuracy queries), encoder, localiser, top1_moment_iou05 (+ _lo / _hi), right_video_top3 (+ _lo / _hi),
build_s, p50_ms, p95_ms, alpha, latency_queries.

    .venv/bin/python benchmarks/bench_search.py                 # 20 videos, 50 queries
    .venv/bin/python benchmarks/bench_search.py --videos 100 --threads 1 --seed 3
    .venv/bin/python benchmarks/bench_search.py --encoder tiny --videos 6 --threads 1 --json
    .venv/bin/python benchmarks/bench_search.py --split val --videos 30 --threads 1 --alpha-sweep

Prints the torch thread count: timings on a shared machine are noisy, compare within one run.
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

ALPHAS = (0.0, 0.25, 0.5, 0.75, 0.9, 1.0)
#: committed encoders ``--encoder`` accepts (:func:`course_lib.clip.clip_encoder.committed_encoder`)
ENCODERS = ("video", "tiny")
#: stage-2 localisers ``--localiser`` accepts
LOCALISERS = ("committed", "baseline")
#: least file frame rate for ``--encoder video`` (4 frames per 2-s clip)
VIDEO_MIN_FPS = 2.0
#: a top-1 result is a moment hit from this temporal IoU with a relevant window on
MOMENT_IOU = 0.5
#: results searched for a right video
VIDEO_TOP_K = 3
#: accuracy keys (as in the ``--json`` object) and their printed labels
RATE_LABELS = {
    "top1_moment_iou05": "top-1 moment hit (own video, IoU >= 0.5)",
    "right_video_top3": "right video in top 3",
}
#: two-sided 95% normal quantile of the Wilson interval
Z95 = 1.959963984540054


def write_videos(folder: Path, split: str, n: int, fps: float, size: int, seed: int = 0) -> float:
    """Write the first ``n`` toy videos of one draw of ``split`` as mp4 files.

    Args:
        folder: where the files go (named ``<vid>.mp4``).
        split: toy-world split.
        n: number of videos (``toyworld.make_vid(split, "m", seed, i)`` for ``i < n``).
        fps: frame rate of the files.
        size: frame side in pixels.
        seed: which random draw of videos.

    Returns:
        The total duration of the videos in seconds.
    """
    from course_lib import toyworld
    from course_lib.video import write_video

    total = 0.0
    for i in range(n):
        # render one video of the draw and write it under its id
        vid = toyworld.make_vid(split, "m", seed, i)
        frames, _ = toyworld.render(vid, fps=fps, size=size)
        write_video(folder / f"{vid}.mp4", frames, fps=fps)
        total += toyworld.video_spec(vid).duration
    return total


def first_queries(records: list[dict], indexed: Sequence[str] | None = None) -> dict[str, dict]:
    """The first held-out query of every video (records in ``moment_records`` order).

    Args:
        records: ``toyworld.moment_records(..., with_attributes=True)`` records.
        indexed: ids the engine holds (file paths or toy ids; compared by file stem); None keeps
            every video of ``records``.

    Returns:
        ``{toy video id: its first record}`` in record order.
    """
    keep = None if indexed is None else {Path(v).stem for v in indexed}
    first: dict[str, dict] = {}
    for rec in records:
        # the first record of a video wins; videos the engine lacks are left out
        if keep is None or rec["vid"] in keep:
            first.setdefault(rec["vid"], rec)
    return first


def right_videos(first: dict[str, dict]) -> dict[str, set[str]]:
    """For every video's query, the videos among ``first`` showing its event in its scene.

    Args:
        first: :func:`first_queries` output (records with ``"attributes"``).

    Returns:
        ``{toy video id: ids of the videos a right result may name}`` (as notebook 07 and the
        end-to-end test count, :func:`course_lib.toyworld.videos_showing`).
    """
    from course_lib import toyworld

    return {vid: toyworld.videos_showing(rec["attributes"], first) for vid, rec in first.items()}


def result_stems(result) -> list[str]:
    """Toy video ids of a search result's rows, best first (ids are file paths: their stems).

    Args:
        result: ``MomentSearch.search`` table (a ``vid`` column).

    Returns:
        The stem of every row's ``vid``.
    """
    return [Path(v).stem for v in result["vid"]]


def hit_rates(
    engine, records: list[dict], alphas=ALPHAS, k: int = VIDEO_TOP_K
) -> dict[float, tuple[float, float]]:
    """Top-k hit rates of the engine for each stage-1 weight ``alpha`` (restored afterwards).

    Every video is asked its first held-out query (records made ``with_attributes=True``). A
    query is a hit when a *right* video, one showing its event in its scene
    (:func:`right_videos`), is among the first ``k`` results; the stricter rate counts only the
    query's source video.

    Args:
        engine: the search engine (``alpha`` attribute, ``search(query, k=...)``).
        records: the held-out records.
        alphas: stage-1 weights to try.
        k: results searched.

    Returns:
        ``{alpha: (right-video rate, source-video rate)}``.
    """
    # 1. one query per video and the videos that answer it
    first = first_queries(records)
    right = right_videos(first)
    before, rates = engine.alpha, {}
    for alpha in alphas:
        # 2. the top-k videos of every query under this alpha
        engine.alpha = alpha
        found = [
            set(result_stems(engine.search(rec["query"], k=k, thumbnails=False)))
            for rec in first.values()
        ]
        rates[alpha] = (
            float(np.mean([bool(f & right[vid]) for f, vid in zip(found, first, strict=True)])),
            float(np.mean([vid in f for f, vid in zip(found, first, strict=True)])),
        )
    # 3. the engine keeps its own alpha
    engine.alpha = before
    return rates


def top1_moment_hit(result, record: dict, min_iou: float = MOMENT_IOU) -> bool:
    """Whether the first result is the record's moment: its own video, IoU >= ``min_iou``.

    Args:
        result: ``MomentSearch.search`` table (``vid``, ``start``, ``end`` columns, best first).
        record: the query's moment record (``vid``, ``relevant_windows``).
        min_iou: least temporal IoU with one of the relevant windows.

    Returns:
        False for an empty result, another video, or a window overlapping too little.
    """
    from course_lib.spans import temporal_iou

    # 1. an empty result or another video misses
    if len(result) == 0 or result_stems(result)[0] != record["vid"]:
        return False
    # 2. the best IoU of the first window with any relevant window
    top = result.iloc[0]
    window = np.array([[float(top["start"]), float(top["end"])]])
    ious = temporal_iou(window, np.asarray(record["relevant_windows"], dtype=float))
    return bool(ious.max() >= min_iou)


def right_video_hit(result, right: set[str], k: int = VIDEO_TOP_K) -> bool:
    """Whether a right video is among the first ``k`` results.

    Args:
        result: ``MomentSearch.search`` table (``vid`` column, best first).
        right: toy ids of the videos showing the query's event (:func:`right_videos`).
        k: results looked at.

    Returns:
        True when one of the first ``k`` rows names a video of ``right``.
    """
    return bool(set(result_stems(result)[:k]) & right)


def wilson_interval(hits: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a binomial rate.

    Args:
        hits: successes.
        n: trials (>= 1).
        z: normal quantile (1.96 for 95%).

    Returns:
        ``(low, high)`` inside [0, 1].

    Raises:
        ValueError: ``n < 1`` or ``hits`` outside ``[0, n]``.
    """
    if n < 1 or not 0 <= hits <= n:
        raise ValueError(f"need 0 <= hits <= n and n >= 1, got hits={hits}, n={n}")
    # centre and half-width of the score interval
    p, z2 = hits / n, z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def rate_summary(hits: list[bool]) -> dict[str, float]:
    """A hit rate with its 95% Wilson interval.

    Args:
        hits: one outcome per query (at least one).

    Returns:
        ``{"rate", "lo", "hi"}``.
    """
    low, high = wilson_interval(sum(hits), len(hits))
    return {"rate": sum(hits) / len(hits), "lo": low, "hi": high}


def accuracy(engine, records: list[dict], indexed: Sequence[str] | None = None) -> dict:
    """Top-1 moment hit rate and right-video-in-top-3 rate of the engine at its own alpha.

    Every indexed video is asked its first held-out query once (:func:`first_queries`).

    Args:
        engine: the search engine (``search(query, k=..., thumbnails=...)``).
        records: ``moment_records(..., with_attributes=True)`` of the indexed videos.
        indexed: ids the engine holds (default ``engine.vids``).

    Returns:
        ``{"queries": n, "top1_moment_iou05": rate_summary, "right_video_top3": rate_summary}``.

    Raises:
        ValueError: no indexed video has a query.
    """
    # 1. one query per indexed video and the videos that answer it
    first = first_queries(records, engine.vids if indexed is None else indexed)
    if not first:
        raise ValueError("no indexed video has a held-out query")
    right = right_videos(first)
    # 2. one search per query, scored both ways
    moment, video = [], []
    for vid, rec in first.items():
        result = engine.search(rec["query"], k=VIDEO_TOP_K, thumbnails=False)
        moment.append(top1_moment_hit(result, rec))
        video.append(right_video_hit(result, right[vid]))
    return {
        "queries": len(first),
        "top1_moment_iou05": rate_summary(moment),
        "right_video_top3": rate_summary(video),
    }


def time_queries(engine, texts: list[str], k: int) -> np.ndarray:
    """Latency of ``engine.search`` for each text, after one warm-up query.

    Args:
        engine: the search engine.
        texts: queries (at least one).
        k: results per query.

    Returns:
        Milliseconds per query.
    """
    engine.search(texts[0], k=k)  # warm-up: first-call costs are not latency
    times = []
    for text in texts:
        t0 = time.perf_counter()
        engine.search(text, k=k)
        times.append(time.perf_counter() - t0)
    return np.asarray(times) * 1e3


def positive_int(text: str) -> int:
    """argparse type: an int >= 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text}")
    return value


def non_negative_int(text: str) -> int:
    """argparse type: an int >= 0."""
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text}")
    return value


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options.

    Args:
        argv: arguments (default ``sys.argv[1:]``).

    Returns:
        The parsed options.
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=positive_int, default=20, help="toy videos to index")
    parser.add_argument("--queries", type=positive_int, default=50, help="queries to time")
    parser.add_argument(
        "--seed",
        type=non_negative_int,
        default=0,
        help="random draw of toy videos and their queries (toyworld.make_vid / moment_records)",
    )
    parser.add_argument(
        "--encoder",
        choices=ENCODERS,
        default="video",
        help="committed encoder: 'video' (chapter 1, 4 frames per 2-s clip: needs --fps >= 2) "
        "or 'tiny' (the frame CLIP)",
    )
    parser.add_argument(
        "--fps",
        type=float,
        default=2.0,
        help="frame rate of the written files (>= 2 with --encoder video, which samples 4 "
        "frames per 2-s clip; default 2)",
    )
    parser.add_argument(
        "--localiser",
        choices=LOCALISERS,
        default="committed",
        help="stage 2: 'committed' = chapter 5's COREBA when it was trained on the encoder's "
        "features, else the training-free baseline (course_lib.localisers.committed_localiser); "
        "'baseline' = chapter 3's training-free baseline",
    )
    parser.add_argument("--size", type=int, default=64, help="frame side of the written files")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: torch's)"
    )
    parser.add_argument("-k", type=int, default=10, help="results per timed query")
    parser.add_argument("--split", default="test", help="toy split of the indexed videos")
    parser.add_argument(
        "--alpha-sweep", action="store_true", help="top-3 hit rate for each stage-1 weight"
    )
    parser.add_argument(
        "--json", action="store_true", help="print the results as one JSON object, last line"
    )
    args = parser.parse_args(argv)
    # a clip encoder reads 4 frames per 2-s clip: slower files would repeat frames
    if args.encoder == "video" and args.fps < VIDEO_MIN_FPS:
        parser.error(
            f"--encoder video samples {VIDEO_MIN_FPS:g} frames per second; "
            f"--fps {args.fps:g} is < {VIDEO_MIN_FPS:g}"
        )
    return args


def format_rate(name: str, summary: dict[str, float], n: int) -> str:
    """One printed accuracy line: rate, 95% Wilson interval and number of queries."""
    return (
        f"  {name}: {summary['rate']:.3f} "
        f"(95% Wilson [{summary['lo']:.3f}, {summary['hi']:.3f}], {n} queries)"
    )


def json_record(args: argparse.Namespace, acc: dict, build_s: float, ms: np.ndarray, alpha) -> dict:
    """The ``--json`` object of a run.

    Args:
        args: parsed options.
        acc: :func:`accuracy` output.
        build_s: index build time in seconds.
        ms: query latencies in milliseconds.
        alpha: the engine's stage-1 weight.

    Returns:
        One flat dict of plain numbers and strings.
    """
    record = {
        "seed": args.seed,
        "split": args.split,
        "videos": args.videos,
        "queries": acc["queries"],
        "encoder": args.encoder,
        "localiser": args.localiser,
        "build_s": round(build_s, 3),
        "p50_ms": round(float(np.percentile(ms, 50)), 3),
        "p95_ms": round(float(np.percentile(ms, 95)), 3),
        "alpha": float(alpha),
        "latency_queries": len(ms),
    }
    # each rate with its interval bounds
    for key in RATE_LABELS:
        record[key] = acc[key]["rate"]
        record[f"{key}_lo"] = acc[key]["lo"]
        record[f"{key}_hi"] = acc[key]["hi"]
    return record


def main(argv: Sequence[str] | None = None) -> dict:
    """Run the benchmark and print its results.

    Args:
        argv: command-line arguments (default ``sys.argv[1:]``).

    Returns:
        The :func:`json_record` of the run (printed last with ``--json``).
    """
    args = parse_args(argv)

    import torch

    from course_lib import toyworld
    from course_lib.clip.clip_encoder import committed_encoder
    from course_lib.localisers import BaselineLocaliser, committed_localiser
    from course_lib.search import MomentSearch

    # 1. threads and the committed encoder
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    print(f"torch threads: {torch.get_num_threads()} (set with --threads)")
    encoder = committed_encoder(args.encoder, progress=False)
    print(f"encoder: {args.encoder} = {encoder.identity} on {encoder.device}")
    localiser = (
        committed_localiser(encoder) if args.localiser == "committed" else BaselineLocaliser()
    )
    print(f"localiser: {args.localiser} = {type(localiser).__name__}")
    with tempfile.TemporaryDirectory() as tmp:
        videos = Path(tmp) / "videos"
        videos.mkdir()
        seconds = write_videos(videos, args.split, args.videos, args.fps, args.size, args.seed)
        # 2. build throughput (everything from the files to the saved index)
        t0 = time.perf_counter()
        engine = MomentSearch.build(
            videos, Path(tmp) / "index", encoder=encoder, localiser=localiser, progress=False
        )
        build_s = time.perf_counter() - t0
        print(
            f"build: {args.videos} videos of {args.split} seed {args.seed} "
            f"({seconds / 3600:.2f} video-hours, "
            f"{args.size}x{args.size} @ {args.fps:g} fps) in {build_s:.1f} s -> "
            f"{args.videos / build_s * 60:.1f} videos/min, "
            f"{seconds / build_s:.0f} video-hours/hour"
        )
        # 3. query latency over the draw's held-out queries
        records = toyworld.moment_records(
            args.split, args.videos, seed=args.seed, with_attributes=True
        )
        ms = time_queries(engine, [r["query"] for r in records][: args.queries], args.k)
        print(
            f"query latency over {len(ms)} queries (k={args.k}, {engine.index.ntotal} segments): "
            f"p50 {np.percentile(ms, 50):.1f} ms, p95 {np.percentile(ms, 95):.1f} ms"
        )
        # 4. accuracy at the engine's alpha, first query of every indexed video
        acc = accuracy(engine, records)
        print(f"accuracy on {args.split} seed {args.seed} (alpha {engine.alpha}):")
        for key, label in RATE_LABELS.items():
            print(format_rate(label, acc[key], acc["queries"]))
        # 5. the stage-1 weight: hit rate for each alpha (engine default printed for reference)
        if args.alpha_sweep:
            rates = hit_rates(engine, records)
            print(
                f"top-3 hit rate on {args.split} (right video / source video only; "
                f"engine default alpha {engine.alpha}):"
            )
            for alpha, (rate, own) in rates.items():
                print(f"  alpha {alpha:4.2f}: {rate:.3f} / {own:.3f}")
        record = json_record(args, acc, build_s, ms, engine.alpha)
    # 6. the machine-readable summary, last line
    if args.json:
        print(json.dumps(record))
    return record


if __name__ == "__main__":
    main()
