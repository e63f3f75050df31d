"""Benchmark of the UCoFiA similarity code on this machine (not a timed test).

1. Seconds for the video-sentence + frame-sentence (ISA) similarities and for the query-bank
   Sinkhorn normalisation (4 iterations, as UCoFiA) at 1,000 x 1,000 and 10,000 x 1,000
   (texts x videos), with the thread count torch uses.
2. Peak extra memory of the patch-word level with and without chunking. Each measurement runs
   in a fresh subprocess and reports the growth of its peak resident set size (Linux ``VmHWM``,
   reset just before the call) over the resident size after the inputs are built.

Run: ``python benchmarks/bench_similarity.py`` (``--quick`` for smaller sizes).
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import time

import torch

from course_lib.similarity import (
    ISA,
    apply_video_bias,
    frame_sentence_similarity,
    patch_word_similarity,
    video_bias_from_bank,
    video_sentence_similarity,
)

DIM, FRAMES = 512, 12
TAU = 0.01  # 1 / logit_scale for CLIP-like cosine similarities


def _timed(fn, *args, **kwargs):
    """Run ``fn`` and return (result, seconds)."""
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start


@torch.no_grad()
def bench_similarity_and_sinkhorn(n_texts: int, n_videos: int) -> None:
    """Time the coarse/middle similarity levels and the query-bank Sinkhorn bias."""
    g = torch.Generator().manual_seed(0)
    frames = torch.randn(n_videos, FRAMES, DIM, generator=g)
    sentences = torch.randn(n_texts, DIM, generator=g)
    isa = ISA(FRAMES)
    vs, t_video = _timed(video_sentence_similarity, frames.mean(1), sentences)
    fs, t_frame = _timed(frame_sentence_similarity, frames, sentences, None, isa, chunk_size=1000)
    # the bank: the same texts play the training captions here (same sizes as UCoFiA's eval)
    bias, t_sk = _timed(video_bias_from_bank, vs, TAU, 4)
    out, t_apply = _timed(apply_video_bias, vs, bias, TAU)
    assert torch.isfinite(out).all() and torch.isfinite(fs).all()
    print(
        f"{n_texts:>6} x {n_videos:<5}  video-sentence {t_video:6.3f} s | frame-sentence (ISA) "
        f"{t_frame:6.3f} s | Sinkhorn bias (4 it) {t_sk:6.3f} s | apply {t_apply:6.4f} s"
    )


def _reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS counter (Linux ``clear_refs``); False where unsupported."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def _rss_mb(field: str) -> float:
    """``VmRSS`` (current) or ``VmHWM`` (peak) of this process in MiB, from /proc/self/status."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # fallback: lifetime peak


@torch.no_grad()
def patch_word_worker(n: int, chunk: int) -> None:
    """Subprocess body: print the peak RSS growth (MiB) and time of one patch-word call."""
    g = torch.Generator().manual_seed(0)
    n_units, n_words, dim = FRAMES * 4, 32, 128  # CLS + top-3 patches per frame, 32 words
    patches = torch.randn(n, n_units, dim, generator=g)
    words = torch.randn(n, n_words, dim, generator=g)
    aggs = {"over_words": ISA(n_words), "then_over_patches": ISA(n_units)}
    aggs |= {"over_patches": ISA(n_units), "then_over_words": ISA(n_words)}
    patch_word_similarity(patches[:2], words[:2], **aggs)  # warm-up allocations
    _reset_peak_rss()  # from here on VmHWM is the peak of this call only
    base = _rss_mb("VmRSS")
    start = time.perf_counter()
    patch_word_similarity(patches, words, **aggs, chunk_size=chunk or None)
    print(f"{_rss_mb('VmHWM') - base:.1f} {time.perf_counter() - start:.3f}")


def bench_patch_word_memory(n: int, chunks: tuple[int, ...]) -> None:
    """Compare peak memory of unchunked vs chunked patch-word similarity (subprocesses)."""
    full_tensor_mb = n * n * FRAMES * 4 * 32 * 4 / 2**20
    print(f"patch-word, {n} texts x {n} videos, N=48 patches, L=32 words "
          f"(one (Q,V,N,L) float32 tensor = {full_tensor_mb:.0f} MiB)")  # fmt: skip
    results = {}
    for chunk in (0, *chunks):
        cmd = [sys.executable, __file__, "--worker", str(n), str(chunk)]
        cmd += ["--threads", str(torch.get_num_threads())]
        mb, secs = map(
            float, subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.split()
        )
        results[chunk] = mb
        label = "no chunking" if chunk == 0 else f"chunk_size={chunk}"
        ratio = "" if chunk == 0 else f"  -> {results[0] / max(mb, 0.1):5.1f}x less peak memory"
        print(f"  {label:<16} peak +{mb:8.1f} MiB  {secs:6.2f} s{ratio}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
    parser.add_argument("--worker", nargs=2, type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.worker:
        patch_word_worker(*args.worker)
        return
    how = "set by --threads" if args.threads else "torch default"
    print(f"torch {torch.__version__}, threads = {torch.get_num_threads()} ({how})")
    sizes = [(1000, 1000), (2000, 1000)] if args.quick else [(1000, 1000), (10_000, 1000)]
    for n_texts, n_videos in sizes:
        bench_similarity_and_sinkhorn(n_texts, n_videos)
    bench_patch_word_memory(64 if args.quick else 128, (16, 32))


if __name__ == "__main__":
    main()
