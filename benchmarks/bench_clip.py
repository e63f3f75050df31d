"""Benchmark: tiny-CLIP frame throughput on 2 CPU threads, and cached vs uncached clip features.

Run: ``python benchmarks/bench_clip.py``. Prints frames encoded per second by the committed tiny
encoder (``torch.set_num_threads(2)``) and how much faster loading a video's clip features from
the disk cache is than computing them (render + encode + pool).
"""

from __future__ import annotations

import tempfile
import time

import numpy as np
import torch

from course_lib.clip import ClipEncoder, FeatureCache


def frames_per_second(encoder: ClipEncoder, n: int = 512, repeats: int = 3) -> float:
    """Best-of-``repeats`` throughput of ``encode_frames`` on ``n`` random 64x64 frames."""
    frames = np.random.default_rng(0).integers(0, 256, (n, 64, 64, 3), dtype=np.uint8)
    encoder.encode_frames(frames[:64])  # warm-up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        encoder.encode_frames(frames)
        best = min(best, time.perf_counter() - start)
    return n / best


def cache_speedup(encoder: ClipEncoder, vids: list[str]) -> tuple[float, float]:
    """Seconds per video uncached (first ``get``) and cached (second ``get``)."""
    with tempfile.TemporaryDirectory() as root:
        cache = FeatureCache(encoder, root=root)
        start = time.perf_counter()
        for vid in vids:
            cache.get(vid)
        uncached = (time.perf_counter() - start) / len(vids)
        start = time.perf_counter()
        for vid in vids:
            cache.get(vid)
        cached = (time.perf_counter() - start) / len(vids)
    return uncached, cached


def main() -> None:
    torch.set_num_threads(2)
    encoder = ClipEncoder.tiny(device="cpu", progress=False)
    fps = frames_per_second(encoder)
    print(f"tiny CLIP ({encoder.identity_hash}), torch threads=2: {fps:,.0f} frames/s")
    from course_lib.toyworld import make_vid

    vids = [make_vid("test", "m", 0, i) for i in range(8)]  # untrimmed videos, 30-150 s
    uncached, cached = cache_speedup(encoder, vids)
    print(
        f"per-video clip features: uncached {uncached * 1e3:.1f} ms, cached {cached * 1e3:.2f} ms "
        f"-> cached is {uncached / cached:.0f}x faster"
    )


if __name__ == "__main__":
    main()
