"""Benchmark of COREBA training and inference speed on this machine (not a timed test).

For REC_3 (one CFC block applied 3 times), MOD_3 (3 separate CFC blocks) and the QD-DETR
baseline encoder it measures

1. seconds per training step (forward + negative-pair forward + criterion + backward + AdamW
   step with gradient clipping), batch 32 x 75 clips x 32 words, d = 256;
2. inference throughput in queries per second (eval mode, no gradients, same batch);

with random features of width ``d_v = d_t = 128`` (the tiny CLIP's embedding width; ``--dim 512``
for ViT-B-32 features). Times are medians over ``--steps`` repetitions after one warm-up.

Run: ``python benchmarks/bench_coreba.py`` (``--batch 8`` on a busy machine).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from course_lib.alignment import CorebaConfig, ablation_config, build_model
from course_lib.env import pick_device
from course_lib.training import MomentTrainingConfig, SetCriterion, make_optimizer, train_step

VARIANTS = {
    "REC_3": dict(mode="rec", n_recurrent=3),
    "MOD_3": dict(mode="mod", n_recurrent=3),
    "baseline": dict(ablation="baseline"),
}


def make_config(variant: str, dim: int, max_clips: int) -> CorebaConfig:
    """COREBA config of one benchmark variant (d = 256, default heads and layers)."""
    spec = dict(VARIANTS[variant])
    sizes = dict(d_v=dim, d_t=dim, d=256, max_clips=max_clips)
    if "ablation" in spec:
        return ablation_config(spec["ablation"], **sizes)
    return CorebaConfig(**sizes, **spec)


def random_batch(batch: int, clips: int, words: int, dim: int, device: str, seed: int = 0) -> dict:
    """A collated-looking batch: full-length videos and queries, 1-2 windows each."""
    g = torch.Generator().manual_seed(seed)
    spans = []
    for _ in range(batch):
        n = int(torch.randint(1, 3, (1,), generator=g))
        centre = torch.rand(n, generator=g) * 0.8 + 0.1
        width = torch.rand(n, generator=g) * 0.15 + 0.05
        spans.append(torch.stack([centre, width], dim=1).to(device))
    raw = torch.randint(0, 5, (batch, clips, 3), generator=g)
    out = {
        "video": torch.randn(batch, clips, dim, generator=g),
        "video_mask": torch.ones(batch, clips, dtype=torch.bool),
        "query": torch.randn(batch, words, dim, generator=g),
        "query_mask": torch.ones(batch, words, dtype=torch.bool),
        "saliency_raw": raw,
        "saliency": raw.float().mean(-1),
    }
    out = {k: v.to(device) for k, v in out.items()}
    out["spans"] = spans
    return out


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _median_seconds(fn, steps: int, device: str) -> float:
    """Median wall time of ``fn()`` over ``steps`` calls after one warm-up call."""
    fn()
    _sync(device)
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench_variant(variant: str, args: argparse.Namespace, device: str) -> dict:
    """Train-step seconds and inference queries/second of one variant."""
    torch.manual_seed(0)
    model = build_model(make_config(variant, args.dim, args.clips)).to(device)
    batch = random_batch(args.batch, args.clips, args.words, args.dim, device)
    cfg = MomentTrainingConfig(batch_size=args.batch, max_clips=args.clips, device=device, progress=False)
    criterion = SetCriterion(cfg)
    optimizer, _ = make_optimizer(model, cfg)
    step = _median_seconds(
        lambda: train_step(model, batch, criterion, optimizer, cfg.grad_clip), args.steps, device
    )
    model.eval()

    @torch.no_grad()
    def infer() -> None:
        model(batch["video"], batch["video_mask"], batch["query"], batch["query_mask"])

    infer_s = _median_seconds(infer, args.steps, device)
    n_params = sum(p.numel() for p in model.parameters())
    return {"variant": variant, "params": n_params, "step_s": step, "qps": args.batch / infer_s}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2, help="timed repetitions per measurement")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--clips", type=int, default=75)
    parser.add_argument("--words", type=int, default=32)
    parser.add_argument("--dim", type=int, default=128, help="d_v = d_t (128 tiny CLIP, 512 B/32)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument("--device", default=None)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    print(
        f"device={device} torch_threads={torch.get_num_threads()} batch={args.batch} "
        f"clips={args.clips} words={args.words} d_v=d_t={args.dim} d=256 steps={args.steps}"
    )
    rows = [bench_variant(v, args, device) for v in args.variants]
    print(f"{'variant':<10}{'params (M)':>12}{'train s/step':>14}{'infer q/s':>12}")
    for r in rows:
        print(f"{r['variant']:<10}{r['params'] / 1e6:>12.2f}{r['step_s']:>14.3f}{r['qps']:>12.1f}")


if __name__ == "__main__":
    main()
