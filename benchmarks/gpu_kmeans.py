"""faiss GPU k-means: the spherical k-means `unicom-cluster` runs, on GPU 0, timed.

    python benchmarks/gpu_kmeans.py --n 1000000 --d 512 --k 10000 --iters 20 --output kmeans_gpu.json

Random unit vectors (seeded); every point is used (no training sample cap). Reports the wall time,
the time per iteration, the GEMM work per iteration (2·N·K·D flops) and its rate, and the final
mean cosine. On a machine without a faiss GPU it says so and exits 0.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=1_000_000, help="points")
    p.add_argument("--d", type=int, default=512, help="dimension")
    p.add_argument("--k", type=int, default=10_000, help="clusters")
    p.add_argument("--iters", type=int, default=20, help="Lloyd iterations")
    p.add_argument("--output", default=None, help="write the row as JSON here")
    a = p.parse_args(argv)
    from clustering.kmeans import faiss_gpus, spherical_kmeans

    if faiss_gpus() == 0:
        print("gpu_kmeans: faiss sees no GPU (CPU-only build or no CUDA device); nothing measured")
        return 0
    x = np.random.default_rng(0).standard_normal((a.n, a.d), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    t = time.perf_counter()
    r = spherical_kmeans(x, a.k, niter=a.iters, gpus=[0], max_points_per_centroid=10 ** 9, evaluate=False,
                         log_iterations=False, init="random")
    sec = time.perf_counter() - t
    flops = 2.0 * a.n * a.k * a.d
    row = {"n": a.n, "d": a.d, "k": a.k, "iters": a.iters, "seconds": sec, "s_per_iter": sec / a.iters,
           "gemm_tflops_per_s": flops * a.iters / sec / 1e12, "mean_cos": float(r.objective_per_iter[-1])
           if r.objective_per_iter else None}
    print(json.dumps(row))
    if a.output:
        from unicom.formats.atomic_io import write_json

        write_json(a.output, row)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
