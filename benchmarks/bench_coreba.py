"""Benchmark of COREBA training and inference speed on this machine (not a timed test).

For REC_3 (one CFC block applied 3 times), MOD_3 (3 separate CFC blocks) and the QD-DETR
baseline encoder, each on the explicit attention path (softmax written out, as taught) and on
the fused one (``F.scaled_dot_product_attention``, what training and inference use), it measures

1. seconds per training step (forward + negative-pair forward + criterion + backward + AdamW
   step with gradient clipping), batch 32 x 75 clips x 32 words, d = 256;
2. inference throughput in queries per second (eval mode, no gradients, same batch);
3. attention calls (``MaskedMultiHeadAttention`` forwards) per training step and per forward;

with random features of width ``d_v = d_t = 128`` (the tiny CLIP's embedding width; ``--dim 512``
for ViT-B-32 features). Times are medians over ``--steps`` rounds after one warm-up (the call
that counts the attentions); in every round each path of a variant runs once, in turn, so a
changing machine load hits both paths alike. It ends with the ratios measured in this run:
fused vs explicit per variant, and COREBA vs the baseline (attention calls next to times).

Run: ``python benchmarks/bench_coreba.py`` (``--batch 8`` on a busy machine;
``--threads 1 --variants REC_3 baseline`` for the issue's one-thread comparison).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from contextlib import nullcontext

import torch

from course_lib.alignment import (
    CorebaConfig,
    MaskedMultiHeadAttention,
    ablation_config,
    build_model,
    explicit_attention,
)
from course_lib.env import pick_device
from course_lib.training import MomentTrainingConfig, SetCriterion, make_optimizer, train_step

VARIANTS = {
    "REC_3": dict(mode="rec", n_recurrent=3),
    "MOD_3": dict(mode="mod", n_recurrent=3),
    "baseline": dict(ablation="baseline"),
}
PATHS = ("explicit", "fused")


def make_config(
    variant: str, dim: int, max_clips: int, dropout: float | None = None
) -> CorebaConfig:
    """COREBA config of one benchmark variant (d = 256, default heads and layers).

    ``dropout`` (transformer dropout, attention weights included) keeps the config's default
    0.1 when None.
    """
    spec = dict(VARIANTS[variant])
    sizes = dict(d_v=dim, d_t=dim, d=256, max_clips=max_clips)
    if dropout is not None:
        sizes["dropout"] = dropout
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


def _interleaved_medians(
    fns: dict[str, Callable[[], object]], steps: int, device: str
) -> dict[str, float]:
    """Median wall time of every ``fns[name]()`` over ``steps`` rounds (no warm-up here).

    Each round calls every function once, in turn, so load changes affect them alike.
    """
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(steps):
        for name, fn in fns.items():
            _sync(device)
            start = time.perf_counter()
            fn()
            _sync(device)
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def count_attention_calls(model: torch.nn.Module, fn: Callable[[], object]) -> int:
    """Run ``fn()`` once and count the forwards of ``model``'s attention modules."""
    calls: list[int] = []
    hooks = [
        module.register_forward_hook(lambda *_: calls.append(1))
        for module in model.modules()
        if isinstance(module, MaskedMultiHeadAttention)
    ]
    try:
        fn()
    finally:
        for hook in hooks:
            hook.remove()
    return len(calls)


def on_path(path: str, fn: Callable[[], object]) -> Callable[[], object]:
    """``fn`` run on the ``"explicit"`` attention path (forced) or the ``"fused"`` one."""

    def run() -> object:
        with explicit_attention() if path == "explicit" else nullcontext():
            return fn()

    return run


def path_runners(
    variant: str, path: str, batch: dict, args: argparse.Namespace, device: str
) -> tuple[torch.nn.Module, Callable[[], object], Callable[[], object]]:
    """A freshly seeded model of ``variant`` and its train-step and inference calls on ``path``."""
    torch.manual_seed(0)  # every path of a variant starts from the same weights
    model = build_model(make_config(variant, args.dim, args.clips, args.dropout)).to(device)
    cfg = MomentTrainingConfig(
        batch_size=args.batch, max_clips=args.clips, device=device, progress=False
    )
    criterion = SetCriterion(cfg)
    optimizer, _ = make_optimizer(model, cfg)

    def step() -> None:
        train_step(model, batch, criterion, optimizer, cfg.grad_clip)

    @torch.no_grad()
    def infer() -> None:
        model(batch["video"], batch["video_mask"], batch["query"], batch["query_mask"])

    return model, on_path(path, step), on_path(path, infer)


def bench_variant(variant: str, args: argparse.Namespace, device: str) -> list[dict]:
    """Train-step seconds, inference queries/s and attention calls of one variant, per path."""
    batch = random_batch(args.batch, args.clips, args.words, args.dim, device)
    runners = {path: path_runners(variant, path, batch, args, device) for path in args.paths}
    rows = {path: {"variant": variant, "path": path} for path in args.paths}
    # 1. training: the warm-up step counts the attentions, then interleaved timed rounds
    for path, (model, step, _) in runners.items():
        rows[path]["params"] = sum(p.numel() for p in model.parameters())
        rows[path]["attn_step"] = count_attention_calls(model, step)
    steps = {path: runner[1] for path, runner in runners.items()}
    for path, seconds in _interleaved_medians(steps, args.steps, device).items():
        rows[path]["step_s"] = seconds
    # 2. inference in eval mode, the same way
    for path, (model, _, infer) in runners.items():
        model.eval()
        rows[path]["attn_fwd"] = count_attention_calls(model, infer)
    infers = {path: runner[2] for path, runner in runners.items()}
    for path, seconds in _interleaved_medians(infers, args.steps, device).items():
        rows[path]["qps"] = args.batch / seconds
    return list(rows.values())


def print_table(rows: list[dict]) -> None:
    """One line per (variant, path): size, speed and attention calls."""
    print(
        f"{'variant':<10}{'path':<10}{'params (M)':>12}{'train s/step':>14}{'infer q/s':>12}"
        f"{'attn/step':>11}{'attn/fwd':>10}"
    )
    for r in rows:
        print(
            f"{r['variant']:<10}{r['path']:<10}{r['params'] / 1e6:>12.2f}{r['step_s']:>14.3f}"
            f"{r['qps']:>12.1f}{r['attn_step']:>11d}{r['attn_fwd']:>10d}"
        )


def print_ratios(rows: list[dict]) -> None:
    """Ratios measured in this run: fused vs explicit, and COREBA vs the baseline."""
    by_key = {(r["variant"], r["path"]): r for r in rows}
    variants = list(dict.fromkeys(r["variant"] for r in rows))
    print("ratios measured in this run:")
    # 1. what the fused path buys, per variant (target: train step >= 1.3x on REC_3, 1 thread)
    for v in variants:
        if (v, "explicit") in by_key and (v, "fused") in by_key:
            slow, fast = by_key[v, "explicit"], by_key[v, "fused"]
            print(
                f"  {v} fused vs explicit: train-step speed-up "
                f"{slow['step_s'] / fast['step_s']:.2f}x, inference speed-up "
                f"{fast['qps'] / slow['qps']:.2f}x"
            )
    # 2. COREBA vs the baseline on each path: attention calls next to time
    for v in [name for name in variants if name != "baseline"]:
        for path in PATHS:
            if (v, path) not in by_key or ("baseline", path) not in by_key:
                continue
            a, b = by_key[v, path], by_key["baseline", path]
            print(
                f"  {v} / baseline ({path}): attention calls per forward "
                f"{a['attn_fwd']}/{b['attn_fwd']} = {a['attn_fwd'] / b['attn_fwd']:.2f}x, "
                f"inference time {b['qps'] / a['qps']:.2f}x; per train step "
                f"{a['attn_step']}/{b['attn_step']} = {a['attn_step'] / b['attn_step']:.2f}x, "
                f"train-step time {a['step_s'] / b['step_s']:.2f}x"
            )


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
    parser.add_argument(
        "--dropout",
        type=float,
        default=None,
        help="transformer dropout (default: CorebaConfig's; the toy recipe trains with 0)",
    )
    parser.add_argument(
        "--paths", nargs="+", default=list(PATHS), choices=PATHS, help="attention paths to time"
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    print(
        f"device={device} torch_threads={torch.get_num_threads()} batch={args.batch} "
        f"clips={args.clips} words={args.words} d_v=d_t={args.dim} d=256 steps={args.steps} "
        f"dropout={CorebaConfig.dropout if args.dropout is None else args.dropout}"
    )
    rows = [row for v in args.variants for row in bench_variant(v, args, device)]
    print_table(rows)
    print_ratios(rows)


if __name__ == "__main__":
    main()
