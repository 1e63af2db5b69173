"""k-means speed: faiss against scikit-learn, the GEMM floor, and two-level k-means at scale.

Part 1 (N=200k, D=512, K=1000 by default): faiss k-means and scikit-learn's Lloyd KMeans on the
same data, from the same initial centroids, for the same number of iterations. Reports the
time per iteration and the final objective, computed the same way for both (mean squared L2
distance of every point to its nearest centroid), plus the spherical k-means that
`unicom-cluster` runs (`clustering.kmeans.spherical_kmeans`; objective also as mean cosine).
Beside them it prints the GEMM floor: 2·N·K·D flops per iteration at the float32 matmul rate
measured on this machine in this run.

Part 2 (N=4M, D=512, K=100k): two-level k-means, where flat k-means gives out (one flat
iteration would cost 2·N·K·D = 410 TFLOP). Reports the wall time, the time per fine
iteration, and the objective (within-coarse, and exact on a random subsample).

    python benchmarks/kmeans.py            # full sizes (part 2 needs ~10 GB of RAM)
    python benchmarks/kmeans.py --quick    # small sizes, a minute or so
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))


def mixture_on_sphere(n: int, d: int, groups: int, noise: float, seed: int, chunk: int = 262144) -> np.ndarray:
    """``n`` unit vectors from ``groups`` noisy groups (float32, made in chunks to bound memory)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((groups, d)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    x = np.empty((n, d), np.float32)
    for i in range(0, n, chunk):
        m = min(chunk, n - i)
        block = centres[rng.integers(0, groups, m)]
        block += (noise / np.sqrt(d)) * rng.standard_normal((m, d), dtype=np.float32)
        block /= np.linalg.norm(block, axis=1, keepdims=True)
        x[i:i + m] = block
    return x


def gemm_rate(d: int, k: int, block: int = 16384, repeats: int = 5) -> float:
    """Best float32 matmul rate (flop/s) of [block, d] @ [d, k] on this machine (numpy BLAS)."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((block, d), dtype=np.float32)
    b = rng.standard_normal((d, k), dtype=np.float32)
    c = np.empty((block, k), np.float32)
    np.matmul(a, b, out=c)
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        np.matmul(a, b, out=c)
        best = min(best, time.perf_counter() - t)
    return 2.0 * block * d * k / best


def mse(x: np.ndarray, centroids: np.ndarray) -> float:
    """Mean squared L2 distance of each point to its nearest centroid (exact, faiss flat L2)."""
    import faiss

    index = faiss.IndexFlatL2(x.shape[1])
    index.add(np.ascontiguousarray(centroids, np.float32))
    total = 0.0
    for i in range(0, len(x), 65536):
        D, _ = index.search(x[i:i + 65536], 1)
        total += float(D.sum())
    return total / len(x)


def faiss_run(x, k, iters, init, spherical):
    import faiss

    cp = faiss.ClusteringParameters()
    cp.niter = iters
    cp.seed = 1
    cp.spherical = spherical
    cp.max_points_per_centroid = 10 ** 9  # use every point, like scikit-learn
    clus = faiss.Clustering(x.shape[1], k, cp)
    faiss.copy_array_to_vector(np.ascontiguousarray(init, np.float32).ravel(), clus.centroids)
    index = faiss.IndexFlatIP(x.shape[1]) if spherical else faiss.IndexFlatL2(x.shape[1])
    t = time.perf_counter()
    clus.train(x, index)
    total = time.perf_counter() - t
    st = clus.iteration_stats
    times = [st.at(i).time for i in range(st.size())]  # cumulative seconds
    per_iter = np.diff([0.0] + times)
    c = faiss.vector_float_to_array(clus.centroids).reshape(k, -1)
    return {"iterations": len(times), "seconds": total, "per_iter_s": float(np.median(per_iter)),
            "per_iter_mean_s": float(per_iter.mean())}, c


def part1(n, d, k, iters, groups, skip_sklearn, threads):
    import faiss

    from clustering.kmeans import mean_cosine, spherical_kmeans

    x = mixture_on_sphere(n, d, groups, noise=2.0, seed=0)  # noisy enough not to converge early
    init = x[np.random.default_rng(1).choice(n, k, replace=False)]
    rate = gemm_rate(d, k)
    floor = 2.0 * n * k * d / rate
    print(f"\n== part 1: N={n:,} D={d} K={k} iters={iters}, {threads} threads ==")
    print(f"matmul rate (numpy float32 [16384x{d}]@[{d}x{k}]): {rate / 1e9:.1f} GFLOP/s "
          f"-> GEMM floor {floor:.3f} s/iteration (2*N*K*D = {2 * n * k * d / 1e9:.1f} GFLOP)")
    rows = []
    res, c = faiss_run(x, k, iters, init, spherical=False)
    rows.append(dict(res, name="faiss (L2, Lloyd)", mse=mse(x, c), mean_cos=None))
    # what unicom-cluster runs: clustering.kmeans.spherical_kmeans (one logged faiss call per iteration)
    t = time.perf_counter()
    r = spherical_kmeans(x, k, niter=iters, seed=1, max_points_per_centroid=10 ** 9, gpus=[], init_centroids=init,
                         evaluate=False)
    total = time.perf_counter() - t
    per = np.array([it["time"] for it in r.iteration_stats])
    rows.append({"name": "unicom-cluster spherical", "iterations": len(per), "seconds": total,
                 "per_iter_s": float(np.median(per)), "per_iter_mean_s": float(per.mean()),
                 "mse": mse(x, r.centroids), "mean_cos": mean_cosine(x, r.centroids, gpus=[])})
    if not skip_sklearn:
        from sklearn.cluster import KMeans

        km = KMeans(n_clusters=k, init=init, n_init=1, max_iter=iters, tol=0.0, algorithm="lloyd",
                    random_state=0)
        t = time.perf_counter()
        km.fit(x)
        total = time.perf_counter() - t
        c = km.cluster_centers_.astype(np.float32)
        rows.append({"name": "scikit-learn KMeans (lloyd)", "iterations": int(km.n_iter_), "seconds": total,
                     "per_iter_s": total / km.n_iter_, "per_iter_mean_s": total / km.n_iter_, "mse": mse(x, c),
                     "mean_cos": None})
    print(f"{'':30s}{'iters':>6s}{'s/iter':>9s}{'x floor':>9s}{'total s':>9s}{'objective (MSE)':>17s}{'mean cos':>10s}")
    for r in rows:
        r["x_floor"] = r["per_iter_s"] / floor
        mc = f"{r['mean_cos']:.4f}" if r["mean_cos"] is not None else "-"
        print(f"{r['name']:30s}{r['iterations']:>6d}{r['per_iter_s']:>9.3f}{r['x_floor']:>9.2f}{r['seconds']:>9.2f}"
              f"{r['mse']:>17.5f}{mc:>10s}")
    return {"n": n, "d": d, "k": k, "iters": iters, "gemm_gflops": rate / 1e9, "gemm_floor_s": floor, "rows": rows,
            "faiss_version": faiss.__version__}


def part2(n, d, k, iters, groups, sub):
    from clustering.kmeans import mean_cosine
    from clustering.two_level import two_level_kmeans

    print(f"\n== part 2: two-level k-means, N={n:,} D={d} K={k:,} iters={iters} ==")
    t = time.perf_counter()
    x = mixture_on_sphere(n, d, groups, noise=1.0, seed=2)
    t_data = time.perf_counter() - t
    t = time.perf_counter()
    r = two_level_kmeans(x, k, niter=iters, seed=1, gpus=[])
    wall = time.perf_counter() - t
    idx = np.random.default_rng(3).choice(n, min(sub, n), replace=False)
    exact = mean_cosine(x[idx], r.centroids, gpus=[])
    k1 = r.extra["k1"]
    fine_iter = r.extra["fine_seconds"] / iters
    print(f"data made in {t_data:.1f}s; two-level run {wall:.1f}s ({wall / 60:.1f} min): coarse K1={k1} "
          f"{r.extra['coarse_seconds']:.1f}s, fine {r.extra['fine_seconds']:.1f}s (~{fine_iter:.2f} s per fine "
          f"iteration incl. per-cluster assignment)")
    print(f"objective: mean cos within coarse clusters {r.objective:.4f}; exact on {len(idx):,} random points "
          f"{exact:.4f}; flat k-means would need 2*N*K*D = {2 * n * k * d / 1e12:.0f} TFLOP per iteration")
    return {"n": n, "d": d, "k": k, "iters": iters, "k1": k1, "seconds": wall, "coarse_s": r.extra["coarse_seconds"],
            "fine_s": r.extra["fine_seconds"], "objective_within_coarse": r.objective, "objective_exact_sub": exact,
            "sub": len(idx), "under_15_min": wall < 900}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="small sizes (N=20k, K=100; part 2: 200k points, K=5k)")
    p.add_argument("--n", type=int, default=200_000)
    p.add_argument("--d", type=int, default=512)
    p.add_argument("--k", type=int, default=1000)
    p.add_argument("--iters", type=int, default=20)
    p.add_argument("--big-n", type=int, default=4_000_000)
    p.add_argument("--big-k", type=int, default=100_000)
    p.add_argument("--skip-sklearn", action="store_true")
    p.add_argument("--skip-part1", action="store_true")
    p.add_argument("--skip-part2", action="store_true")
    p.add_argument("--json", default=None, help="also write the numbers to this JSON file")
    a = p.parse_args(argv)
    if a.quick:
        a.n, a.k, a.big_n, a.big_k, a.iters = 20_000, 100, 200_000, 5_000, 10
    import faiss

    threads = faiss.omp_get_max_threads()
    out = {"machine": {"cpus": os.cpu_count(), "faiss_threads": threads, "faiss_gpus": faiss.get_num_gpus()}}
    if not a.skip_part1:
        out["part1"] = part1(a.n, a.d, a.k, a.iters, groups=max(2 * a.k, 10), skip_sklearn=a.skip_sklearn,
                             threads=threads)
    if not a.skip_part2:
        out["part2"] = part2(a.big_n, a.d, a.big_k, a.iters, groups=2 * a.big_k, sub=20_000)
    if a.json:
        from unicom.formats.atomic_io import write_json

        write_json(a.json, out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
