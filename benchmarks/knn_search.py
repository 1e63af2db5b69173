"""Exact kNN search throughput: faiss against a numpy brute force (a script, not a test).

    python benchmarks/knn_search.py              # N = 100k gallery, D = 512, 2,000 queries
    python benchmarks/knn_search.py --quick      # N = 20k, 500 queries
    python benchmarks/knn_search.py --output runs/bench/knn_search.json

Rows, each timed on the same L2-normalised random data (best of ``--repeats``):
* ``numpy``: chunked ``Q @ G.T`` (BLAS sgemm) + ``argpartition`` + sort of the top k;
* ``faiss``: ``IndexFlatIP.search`` (exact), CPU, and GPU when faiss sees one;
* ``retrieval_eval.knn``: what ``unicom-eval`` runs (normalisation, query chunks, the
  deterministic tie rule), on the device it picks.
Beside them, the GEMM floor: queries/s if the search did nothing but the 2·N·D flops per query
at the sgemm rate measured in the same run. ``overlap`` = mean share of numpy's top-k ids that
the method returns (below 1 only through float rounding at near-ties). ``CPU s`` is the process
CPU time of the timed run (all threads) and ``q/CPU-s`` the queries per CPU-second, printed
with the load average, because wall-clock throughput on a shared machine depends on what else
runs.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def numpy_topk(q: np.ndarray, g: np.ndarray, k: int, chunk: int = 256):
    ids = np.empty((len(q), k), np.int64)
    for s in range(0, len(q), chunk):
        sims = q[s:s + chunk] @ g.T
        part = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(sims, part, axis=1), axis=1, kind="stable")
        ids[s:s + chunk] = np.take_along_axis(part, order, axis=1)
    return ids


def best_of(fn, repeats: int):
    """(best wall seconds, CPU seconds of that run (all threads), result)."""
    best, cpu, out = float("inf"), float("inf"), None
    for _ in range(repeats):
        t, c = time.perf_counter(), time.process_time()
        out = fn()
        wall, used = time.perf_counter() - t, time.process_time() - c
        if wall < best:
            best, cpu = wall, used
    return best, cpu, out


def sgemm_rate(d: int, repeats: int = 5) -> float:
    """Measured float32 matmul FLOP/s at a shape like the search's."""
    a = np.random.default_rng(0).standard_normal((1024, d), dtype=np.float32)
    b = np.random.default_rng(1).standard_normal((d, 16384), dtype=np.float32)
    a @ b  # warm-up
    sec, _, _ = best_of(lambda: a @ b, repeats)
    return 2.0 * 1024 * d * 16384 / sec


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=100_000, help="gallery size")
    p.add_argument("--d", type=int, default=512, help="dimension")
    p.add_argument("--queries", type=int, default=2000)
    p.add_argument("--k", type=int, nargs="+", default=[10, 100, 1000])
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--quick", action="store_true", help="N = 20k, 500 queries, k = 10 and 100")
    p.add_argument("--output", help="write the rows as JSON")
    a = p.parse_args(argv)
    if a.quick:
        a.n, a.queries, a.k, a.repeats = 20_000, 500, [10, 100], 1

    import faiss

    from retrieval_eval import knn

    rng = np.random.default_rng(0)
    g = knn.l2_normalize(rng.standard_normal((a.n, a.d), dtype=np.float32))
    q = knn.l2_normalize(rng.standard_normal((a.queries, a.d), dtype=np.float32))
    rate = sgemm_rate(a.d)
    floor_qps = rate / (2.0 * a.n * a.d)
    ngpu = faiss.get_num_gpus()
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, faiss {faiss.__version__}, " \
              f"faiss threads {faiss.omp_get_max_threads()}, GPUs seen by faiss: {ngpu}"
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"N = {a.n:,}  D = {a.d}  queries = {a.queries:,}  ({machine}; load average {load:.1f})")
    print(f"sgemm {rate / 1e9:.1f} GFLOP/s → GEMM floor {floor_qps:,.0f} queries/s (CPU)")

    cpu_index = faiss.IndexFlatIP(a.d)
    cpu_index.add(g)
    gpu_index = None
    if ngpu > 0:
        res = faiss.StandardGpuResources()
        gpu_index = faiss.GpuIndexFlatIP(res, a.d)
        gpu_index.add(g)
    searcher = knn.ExactSearcher(g, device="auto", normalized=True)

    rows = []
    header = (f"{'method':<22}{'device':<8}{'k':>6}{'seconds':>10}{'CPU s':>9}{'queries/s':>12}{'q/CPU-s':>10}"
              f"{'vs numpy':>10}{'overlap':>9}")
    print(header + "\n" + "-" * len(header))
    for k in a.k:
        t_np, c_np, ref = best_of(lambda k=k: numpy_topk(q, g, k), a.repeats)
        runs = [("numpy brute force", "cpu", t_np, c_np, ref)]
        t, c, (_, ids) = best_of(lambda k=k: cpu_index.search(q, k), a.repeats)
        runs.append(("faiss IndexFlatIP", "cpu", t, c, ids))
        if gpu_index is not None and k <= knn.GPU_MAX_K:
            gpu_index.search(q[:16], k)  # warm-up
            t, c, (_, ids) = best_of(lambda k=k: gpu_index.search(q, k), a.repeats)
            runs.append(("faiss GpuIndexFlatIP", "gpu", t, c, ids))
        t, c, out = best_of(lambda k=k: searcher.search(q, k), a.repeats)
        runs.append(("retrieval_eval.knn", searcher.device_for(k), t, c, out[1]))
        for name, dev, sec, cpu, ids in runs:
            overlap = float(np.mean([len(np.intersect1d(x, y)) / k for x, y in zip(ids, ref)]))
            row = {"method": name, "device": dev, "k": k, "seconds": round(sec, 4), "cpu_seconds": round(cpu, 3),
                   "queries_per_second": round(a.queries / sec, 1),
                   "queries_per_cpu_second": round(a.queries / max(cpu, 1e-9), 1),
                   "speedup_vs_numpy": round(t_np / sec, 2),
                   "overlap_with_numpy": round(overlap, 5)}
            rows.append(row)
            print(f"{name:<22}{dev:<8}{k:>6}{sec:>10.3f}{cpu:>9.2f}{row['queries_per_second']:>12,.0f}"
                  f"{row['queries_per_cpu_second']:>10,.0f}{row['speedup_vs_numpy']:>9.2f}x{overlap:>9.4f}")
    if a.output:
        from unicom.formats.atomic_io import write_json

        write_json(a.output, {"n": a.n, "d": a.d, "queries": a.queries, "machine": machine, "load_average": load,
                              "sgemm_gflops": round(rate / 1e9, 1), "gemm_floor_qps": round(floor_qps, 1),
                              "rows": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
