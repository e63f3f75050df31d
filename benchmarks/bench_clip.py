"""Benchmark: clip throughput of the frame CLIP and the video towers, and cached clip features.

Run: ``python benchmarks/bench_clip.py``. Prints, in one run on 2 CPU threads: frames encoded per
second by the committed tiny CLIP; 2-s clips encoded per second by the frame CLIP (one frame per
clip, today's clip features) and by the video towers of chapter 1 (k = 4 frames per clip, early
and late fusion), with each video tower's ratio to the frame CLIP (target: early fusion keeps at
least half); and how much faster loading a video's clip features from the disk cache is than
computing them (render + encode + pool).
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


def clips_per_second(model: torch.nn.Module, k: int, n: int = 256, repeats: int = 3) -> float:
    """Best-of-``repeats`` throughput of a video tower on ``n`` random clips of ``k`` 64x64 frames."""
    from course_lib.clip.video_encoder import preprocess_clips

    clips = np.random.default_rng(0).integers(0, 256, (n, k, 64, 64, 3), dtype=np.uint8)
    best = float("inf")
    with torch.no_grad():
        model(preprocess_clips(clips[:32], k))  # warm-up
        for _ in range(repeats):
            start = time.perf_counter()
            for i in range(0, n, 64):
                model(preprocess_clips(clips[i : i + 64], k))
            best = min(best, time.perf_counter() - start)
    return n / best


def video_tower_rates(encoder: ClipEncoder, frame_rate: float) -> None:
    """Print clips/s of the early- and late-fusion towers (inflated from the tiny CLIP)."""
    from course_lib.clip.video_encoder import VideoTower, VideoTowerConfig, inflate_from_image_tower

    print(f"frame CLIP, 1 frame per clip: {frame_rate:,.0f} clips/s")
    for fusion in ("early", "late"):
        tower = VideoTower(VideoTowerConfig(fusion=fusion))
        inflate_from_image_tower(tower, encoder.model.visual)
        rate = clips_per_second(tower.eval(), tower.config.frames)
        print(
            f"video tower, {fusion} fusion, {tower.config.frames} frames per clip: {rate:,.0f} "
            f"clips/s = {rate / frame_rate:.2f} x the frame CLIP"
        )


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
    video_tower_rates(encoder, fps)
    from course_lib.toyworld import make_vid

    vids = [make_vid("test", "m", 0, i) for i in range(8)]  # untrimmed videos, 30-150 s
    uncached, cached = cache_speedup(encoder, vids)
    print(
        f"per-video clip features: uncached {uncached * 1e3:.1f} ms, cached {cached * 1e3:.2f} ms "
        f"-> cached is {uncached / cached:.0f}x faster"
    )


if __name__ == "__main__":
    main()
