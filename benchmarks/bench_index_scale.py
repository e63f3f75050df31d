"""Benchmark: faiss segment indexes (Flat / IVF / IVFPQ / HNSW) at 10^4..10^6 vectors.

For each collection size n and dimension d, on synthetic *clustered* segment embeddings
(1,000 Gaussian centres + noise, L2-normalised, so that approximate search is meaningful):

* build time (train + add), index size (bytes of the serialised index) and RSS growth;
* per-query latency at batch 1 (a fixed small query set) and at batch 500;
* recall@100 against the exact Flat index, over a sweep of nprobe (IVF kinds) / efSearch (HNSW);
* the equivalent dense float32 matmul + top-k (numpy and torch, database in chunks) in the same
  run, so Flat's batch-500 time is reported as a ratio to this machine's own limit.

Acceptance targets (course chapter 6), checked on n = 10^6, d = 256 when that size is run:

* some approximate index reaches recall@100 >= 0.95 at >= 10x lower batch-1 latency than Flat;
* Flat at batch 500 runs within 1.5x of the dense matmul + top-k time.

Results go to ``data/bench/index_scale.csv`` (written atomically after every (n, d), so a long
run that is stopped keeps what it measured). faiss, numpy BLAS and torch all use their default
thread counts (printed).

Usage::

    python benchmarks/bench_index_scale.py --quick            # n = 1e4, 1e5 (a few minutes)
    python benchmarks/bench_index_scale.py                    # n = 1e4, 1e5, 1e6; d = 256, 512
    python benchmarks/bench_index_scale.py --sizes 1000000 --append   # add 1e6 to the CSV
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before numpy / faiss load OpenMP

import argparse  # noqa: E402
import gc  # noqa: E402
import math  # noqa: E402
import tempfile
import time
from pathlib import Path

import numpy as np

from course_lib.corpus.index import IndexConfig, make_faiss_index, set_search_params
from course_lib.files import atomic_write

K = 100
N_CENTRES = 1000
NOISE = 1.0  # noise norm relative to the unit centre norm
IVF_NPROBES = (1, 2, 4, 8, 16, 32, 64, 128)
HNSW_EFS = (16, 32, 64, 128, 256, 512)
DEFAULT_OUT = Path(__file__).resolve().parents[1] / "data" / "bench" / "index_scale.csv"
COLUMNS = [
    "n", "dim", "index", "param", "value", "build_s", "index_bytes", "rss_delta_bytes",
    "recall_at_100", "b1_ms", "b500_ms", "n_b1_queries", "b1_speedup_vs_flat", "ratio_to_matmul",
]  # fmt: skip


def clustered(n: int, d: int, seed: int, centres: np.ndarray | None = None) -> np.ndarray:
    """n unit vectors: a random centre (of N_CENTRES) plus Gaussian noise, L2-normalised."""
    rng = np.random.default_rng(seed)
    if centres is None:
        centres = make_centres(d)
    out = np.empty((n, d), np.float32)
    for lo in range(0, n, 100_000):  # in chunks: bounded temporary memory
        hi = min(n, lo + 100_000)
        x = rng.standard_normal((hi - lo, d), dtype=np.float32) * np.float32(NOISE / math.sqrt(d))
        x += centres[rng.integers(0, len(centres), hi - lo)]
        out[lo:hi] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def make_centres(d: int, seed: int = 1234) -> np.ndarray:
    c = np.random.default_rng(seed).standard_normal((N_CENTRES, d)).astype(np.float32)
    return c / np.linalg.norm(c, axis=1, keepdims=True)


def rss_bytes() -> int:
    """Resident set size of this process (Linux /proc; 0 elsewhere)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return 0


def index_bytes(index) -> int:
    """Size of the serialised index (written to a temporary file, then deleted)."""
    import faiss

    fd, tmp = tempfile.mkstemp(suffix=".faiss")
    os.close(fd)
    try:
        faiss.write_index(index, tmp)
        return os.path.getsize(tmp)
    finally:
        os.unlink(tmp)


def dense_topk_numpy(q: np.ndarray, xb: np.ndarray, k: int, chunk: int = 65536) -> np.ndarray:
    """Exact top-k ids by float32 matmul over database chunks + argpartition (numpy BLAS)."""
    best_s = np.full((len(q), 0), -np.inf, np.float32)
    best_i = np.zeros((len(q), 0), np.int64)
    for lo in range(0, len(xb), chunk):
        s = q @ xb[lo : lo + chunk].T
        kk = min(k, s.shape[1])
        part = np.argpartition(-s, kk - 1, axis=1)[:, :kk]
        best_s = np.concatenate([best_s, np.take_along_axis(s, part, 1)], axis=1)
        best_i = np.concatenate([best_i, part + lo], axis=1)
        if best_s.shape[1] > k:  # keep the running top-k only
            keep = np.argpartition(-best_s, k - 1, axis=1)[:, :k]
            best_s = np.take_along_axis(best_s, keep, 1)
            best_i = np.take_along_axis(best_i, keep, 1)
    order = np.argsort(-best_s, axis=1, kind="stable")
    return np.take_along_axis(best_i, order, 1)


def dense_topk_torch(q: np.ndarray, xb: np.ndarray, k: int, chunk: int = 65536) -> np.ndarray:
    """The same with torch (CPU) matmul + topk."""
    import torch

    qt, xt = torch.from_numpy(q), torch.from_numpy(xb)
    best_s = torch.full((len(q), 0), -float("inf"))
    best_i = torch.zeros((len(q), 0), dtype=torch.int64)
    for lo in range(0, len(xb), chunk):
        s, i = torch.topk(qt @ xt[lo : lo + chunk].T, min(k, len(xt) - lo), dim=1)
        s, i = torch.cat([best_s, s], 1), torch.cat([best_i, i + lo], 1)
        best_s, pos = torch.topk(s, min(k, s.shape[1]), dim=1)
        best_i = torch.gather(i, 1, pos)
    return best_i.numpy()


def timed(fn, *args, repeat: int = 1):
    """(best wall seconds over ``repeat`` runs, result of the last run)."""
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn(*args)
        best = min(best, time.perf_counter() - t0)
    return best, out


def recall_at_k(ids: np.ndarray, gt: np.ndarray) -> float:
    """Mean fraction of the exact top-k ids found (order ignored)."""
    return float(np.mean([len(np.intersect1d(a, b)) / gt.shape[1] for a, b in zip(ids, gt)]))


def batch1_ms(index, q: np.ndarray) -> float:
    """Mean milliseconds per query, one query per search call, one faiss thread."""
    import faiss

    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        index.search(q[:1], K)  # warm-up
        t0 = time.perf_counter()
        for row in q:
            index.search(row[None], K)
        return 1000 * (time.perf_counter() - t0) / len(q)
    finally:
        faiss.omp_set_num_threads(threads)


def build(kind: str, xb: np.ndarray, params: dict) -> tuple[object, float, int]:
    """Build (train + add) an index of ``kind``; returns (index, seconds, RSS growth)."""
    gc.collect()
    rss0, t0 = rss_bytes(), time.perf_counter()
    config = IndexConfig(kind=kind, **params)
    index = make_faiss_index(config, xb.shape[1], n_train=len(xb))
    if config.trained:
        sample = np.random.default_rng(0).choice(len(xb), min(len(xb), config.max_train), False)
        index.train(xb[np.sort(sample)])
    index.add_with_ids(xb, np.arange(len(xb), dtype=np.int64))
    return index, time.perf_counter() - t0, rss_bytes() - rss0


def sweep(name: str, index, xq, q1, gt, base: dict, param: str, values, flat_b1: float) -> list:
    """Recall and latency rows of one built index over a sweep of its search parameter."""
    rows = []
    for value in values:
        set_search_params(index, **{param: value})
        t500, (_, ids) = timed(index.search, xq, K)
        b1 = batch1_ms(index, q1)
        rows.append({**base, "index": name, "param": param, "value": value,
                     "recall_at_100": recall_at_k(ids, gt), "b1_ms": b1,
                     "b500_ms": 1000 * t500 / len(xq), "n_b1_queries": len(q1),
                     "b1_speedup_vs_flat": flat_b1 / b1})  # fmt: skip
    return rows


def run_size(n: int, d: int, args: argparse.Namespace) -> list[dict]:
    """Every measurement for one (n, d): dense reference, Flat, IVF, IVFPQ, HNSW."""
    centres = make_centres(d)
    xb = clustered(n, d, seed=1, centres=centres)
    xq = clustered(args.batch, d, seed=2, centres=centres)
    q1 = xq[: args.latency_queries]
    rows: list[dict] = []
    # dense float32 matmul + top-k: this machine's own limit for exact search
    t_np, ids_np = timed(dense_topk_numpy, xq, xb, K, repeat=args.repeat)
    t_th, _ = timed(dense_topk_torch, xq, xb, K, repeat=args.repeat)
    for name, t in (("dense_numpy", t_np), ("dense_torch", t_th)):
        rows.append({"n": n, "dim": d, "index": name, "b500_ms": 1000 * t / len(xq)})
    t_dense = min(t_np, t_th)
    # exact Flat: ground truth, batch-500 ratio to the matmul, batch-1 latency
    flat, build_s, rss = build("flat", xb, {})
    t500, (_, gt) = timed(flat.search, xq, K, repeat=args.repeat)
    n_flat_b1 = min(len(q1), 50) if n * d >= 10**8 else len(q1)  # keep big scans short
    flat_b1 = batch1_ms(flat, q1[:n_flat_b1])
    base = {"n": n, "dim": d}
    rows.append({**base, "index": "flat", "build_s": build_s, "index_bytes": index_bytes(flat),
                 "rss_delta_bytes": rss, "recall_at_100": recall_at_k(ids_np, gt),
                 "b1_ms": flat_b1, "b500_ms": 1000 * t500 / len(xq), "n_b1_queries": n_flat_b1,
                 "b1_speedup_vs_flat": 1.0, "ratio_to_matmul": t500 / t_dense})  # fmt: skip
    del flat
    # IVF / IVFPQ: nlist ~ sqrt(n) (a power of two); train on <= max(40 * nlist, 10240) vectors
    nlist = max(16, 2 ** round(math.log2(math.sqrt(n))))
    ivf_params = {"nlist": nlist, "max_train": min(n, max(40 * nlist, 10_240))}
    probes = [p for p in IVF_NPROBES if p <= nlist]
    for kind, extra in (("ivf", {}), ("ivfpq", {"pq_m": d // 8, "pq_bits": 8})):
        index, build_s, rss = build(kind, xb, {**ivf_params, **extra})
        info = {**base, "build_s": build_s, "index_bytes": index_bytes(index),
                "rss_delta_bytes": rss}  # fmt: skip
        rows += sweep(f"{kind}{nlist}", index, xq, q1, gt, info, "nprobe", probes, flat_b1)
        del index
    # HNSW (its build dominates the run time at 1e6 x 512 on 2 cores: skipped above --hnsw-max-nd)
    if n * d > args.hnsw_max_nd:
        print(f"skipping HNSW at n={n}, d={d} (n*d > --hnsw-max-nd={args.hnsw_max_nd:g})")
        return rows
    hnsw_params = {"hnsw_m": args.hnsw_m, "ef_construction": args.ef_construction}
    index, build_s, rss = build("hnsw", xb, hnsw_params)
    info = {**base, "build_s": build_s, "index_bytes": index_bytes(index), "rss_delta_bytes": rss}
    rows += sweep(f"hnsw{args.hnsw_m}", index, xq, q1, gt, info, "ef_search", HNSW_EFS, flat_b1)
    return rows


def write_csv(rows: list[dict], path: Path, keep=None):
    """Write ``keep`` (earlier rows, or None) + the rows atomically; returns the DataFrame."""
    import pandas as pd

    frame = pd.DataFrame(rows).reindex(columns=COLUMNS)
    if keep is not None and len(keep):
        frame = pd.concat([keep, frame], ignore_index=True).sort_values(["n", "dim"], kind="stable")
    with atomic_write(path, "w") as handle:
        frame.to_csv(handle, index=False, float_format="%.6g")
    return frame


def acceptance(frame, n: int = 10**6, d: int = 256) -> list[str]:
    """The two chapter-6 targets on (n, d), as printable lines (empty if (n, d) was not run)."""
    sub = frame[(frame["n"] == n) & (frame["dim"] == d)]
    if sub.empty:
        return []
    ann = sub[~sub["index"].isin(["flat", "dense_numpy", "dense_torch"])]
    good = ann[(ann["recall_at_100"] >= 0.95) & (ann["b1_speedup_vs_flat"] >= 10)]
    best = good.sort_values("b1_ms").head(1)
    flat_ratio = float(sub.loc[sub["index"] == "flat", "ratio_to_matmul"].iloc[0])
    line1 = (
        "ANN recall@100 >= 0.95 at >= 10x lower batch-1 latency: "
        + ("MET by " + ", ".join(f"{r.index} {r.param}={r.value:g} (recall {r.recall_at_100:.3f}, "
                                 f"{r.b1_speedup_vs_flat:.1f}x)" for r in best.itertuples())
           if len(best) else "NOT MET")
    )  # fmt: skip
    line2 = f"Flat batch-500 / dense matmul+top-k = {flat_ratio:.2f} (target <= 1.5): " + (
        "MET" if flat_ratio <= 1.5 else "NOT MET"
    )
    return [f"targets on n={n}, d={d}:", "  " + line1, "  " + line2]


def main(argv: list[str] | None = None) -> None:
    """Parse options, run every (n, d), print the table and the targets, write the CSV."""
    import faiss
    import pandas as pd
    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10**4, 10**5, 10**6])
    parser.add_argument("--dims", type=int, nargs="+", default=[256, 512])
    parser.add_argument("--quick", action="store_true", help="sizes 1e4 and 1e5 only")
    parser.add_argument("--batch", type=int, default=500, help="queries per batch search")
    parser.add_argument("--latency-queries", type=int, default=200, help="batch-1 query set")
    parser.add_argument("--hnsw-m", type=int, default=32)
    parser.add_argument("--ef-construction", type=int, default=40)
    parser.add_argument("--repeat", type=int, default=2, help="best of R for exact searches")
    parser.add_argument("--hnsw-max-nd", type=float, default=3e8, help="skip HNSW above n*d")
    parser.add_argument(
        "--append",
        action="store_true",
        help="keep the CSV's rows of other (n, d) and replace those run now",
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes = [s for s in args.sizes if s <= 10**5] or [10**4, 10**5]
    print(
        f"threads: faiss {faiss.omp_get_max_threads()}, torch {torch.get_num_threads()}; "
        f"k={K}, {N_CENTRES} centres, batch {args.batch}, batch-1 set {args.latency_queries}"
    )
    rows: list[dict] = []
    keep = None
    if args.append and args.out.exists():
        old = pd.read_csv(args.out)
        run = (
            old[["n", "dim"]]
            .apply(tuple, axis=1)
            .isin([(n, d) for n in args.sizes for d in args.dims])
        )
        keep = old[~run]
    for n in args.sizes:
        for d in args.dims:
            t0 = time.perf_counter()
            rows += run_size(n, d, args)
            frame = write_csv(rows, args.out, keep)
            print(f"[n={n} d={d} done in {time.perf_counter() - t0:.0f} s]", flush=True)
            gc.collect()
    with pd.option_context("display.width", 200, "display.max_rows", 500):
        print(frame.drop(columns=["rss_delta_bytes"]).to_string(index=False, float_format="%.4g"))
    for size in sorted(set(zip(frame["n"], frame["dim"]))):
        for line in acceptance(frame, *size):
            print(line)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
