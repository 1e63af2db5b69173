"""Two-level k-means for large K: a coarse clustering, then a fine one inside each coarse cluster.

1. Cluster the points into K1 coarse clusters (default ⌈√K⌉).
2. Assign every point to its coarse cluster.
3. Share the K centroids out over the coarse clusters in proportion to their sizes (largest
   remainder; every non-empty cluster gets at least one, none gets more than it has points).
4. Run spherical k-means inside each coarse cluster with its share.

Each fine clustering sees ~N/K1 points and K/K1 centroids, so an iteration costs
~2·N·(K/K1)·D flops instead of 2·N·K·D for flat k-means: that is what makes K = 100k–1M
reachable. The per-iteration objective logged is the fine level's, summed over the coarse
clusters (mean cosine of each point to its best centroid within its coarse cluster).
"""
from __future__ import annotations

import logging
import math
import time
from typing import List, Optional, Sequence

import numpy as np

from unicom.cli.progress import progress_bar
from unicom.runtime.faiss_utils import pick_gpus

from .kmeans import (
    DEFAULT_INIT,
    DEFAULT_MAX_POINTS_PER_CENTROID,
    DEFAULT_NITER,
    DEFAULT_SEED,
    KMeansResult,
    check_k,
    nearest,
    normalise_rows,
    spherical_kmeans,
)

log = logging.getLogger(__name__)


def allocate(sizes: Sequence[int], k: int) -> np.ndarray:
    """Split ``k`` centroids over clusters of ``sizes`` points, in proportion to size.

    Every non-empty cluster gets at least 1 and at most its size; empty clusters get 0; the
    shares sum to ``k``. Needs ``#non-empty <= k <= sum(sizes)``."""
    sizes = np.asarray(sizes, dtype=np.int64)
    n = int(sizes.sum())
    nonempty = int((sizes > 0).sum())
    if not nonempty <= k <= n:
        raise ValueError(f"cannot share {k} centroids over {nonempty} non-empty clusters of {n} points")
    quota = sizes * (k / n)
    share = np.floor(quota).astype(np.int64)
    share = np.where(sizes > 0, np.maximum(share, 1), 0)
    share = np.minimum(share, sizes)
    # Hand out (or take back) the difference by largest (smallest) remainder, within [1, size].
    while share.sum() != k:
        rem = quota - share
        if share.sum() < k:
            rem = np.where(share < sizes, rem, -np.inf)
            order = np.argsort(-rem, kind="stable")
            need = int(k - share.sum())
            room = order[np.isfinite(rem[order])][:need]
            share[room] += 1
        else:
            rem = np.where(share > 1, rem, np.inf)
            order = np.argsort(rem, kind="stable")
            extra = int(share.sum() - k)
            give = order[np.isfinite(rem[order])][:extra]
            share[give] -= 1
    return share


def two_level_kmeans(x: np.ndarray, k: int, k1: Optional[int] = None, niter: int = DEFAULT_NITER,
                     seed: int = DEFAULT_SEED, max_points_per_centroid: int = DEFAULT_MAX_POINTS_PER_CENTROID,
                     gpus: Optional[Sequence[int]] = None, verbose: bool = False,
                     weights: Optional[np.ndarray] = None, init: str = DEFAULT_INIT,
                     fine_init: str = "random", progress: bool = False) -> KMeansResult:
    """Two-level spherical k-means of the rows of ``x`` into ``k`` centroids (see module doc).

    ``objective`` is the mean cosine of each point to its best centroid inside its coarse
    cluster, a lower bound on the exact nearest-centroid objective (computing that exactly
    costs a full N×K pass; ``kmeans.mean_cosine`` does it when wanted). ``init`` seeds the coarse
    level; ``fine_init`` the many small fine problems, where faiss' random seeding is cheapest
    (AFK-MC² costs more than the iterations on problems of a few thousand points). ``progress``
    shows tqdm bars over the coarse iterations and the fine clusterings."""
    t0 = time.time()
    x = np.ascontiguousarray(x, dtype=np.float32)
    n, d = x.shape
    check_k(k, n)
    gpus = pick_gpus(gpus)
    k1 = int(k1 or math.ceil(math.sqrt(k)))
    k1 = max(1, min(k1, k))
    coarse = spherical_kmeans(x, k1, niter=niter, seed=seed, max_points_per_centroid=max_points_per_centroid,
                              gpus=gpus, verbose=verbose, evaluate=False, name="two-level coarse",
                              weights=weights, init=init, progress=progress)
    _, lab1 = nearest(x, coarse.centroids, gpus)
    sizes = np.bincount(lab1, minlength=k1)
    shares = allocate(sizes, k)
    order = np.argsort(lab1, kind="stable")
    bounds = np.concatenate([[0], np.cumsum(sizes)])
    centroids: List[np.ndarray] = []
    coarse_of = []
    per_iter = np.zeros(niter, dtype=np.float64)
    per_iter_n = np.zeros(niter, dtype=np.float64)
    obj_sum, n_fine, w_total = 0.0, 0, 0.0
    t_fine = time.time()
    bar = progress_bar(progress, total=k1, desc=f"two-level fine k-means K={k}", unit="cluster")
    for c in range(k1):
        bar.update(1)
        kc = int(shares[c])
        if kc == 0:
            continue
        idx = order[bounds[c]:bounds[c + 1]]
        xc = x[idx]
        wc = None if weights is None else weights[idx]
        if kc == len(xc):
            cents, sims = normalise_rows(xc), np.ones(len(xc), np.float32)
            it_obj = None
            used = len(xc)
        else:
            r = spherical_kmeans(xc, kc, niter=niter, seed=seed + 1 + c,
                                 max_points_per_centroid=max_points_per_centroid, gpus=gpus, evaluate=False,
                                 log_iterations=False, weights=wc, init=fine_init)
            cents = r.centroids
            sims = nearest(xc, cents, gpus)[0]
            it_obj = r.objective_per_iter
            used = r.n_train
        wsum = float(len(xc)) if wc is None else float(wc.sum())
        obj_sum += float(sims.sum()) if wc is None else float((sims * wc).sum())
        w_total += wsum
        if it_obj:
            m = min(len(it_obj), niter)
            per_iter[:m] += np.asarray(it_obj[:m]) * used
            per_iter_n[:m] += used
        else:
            per_iter += used
            per_iter_n += used
        centroids.append(cents)
        coarse_of.append(np.full(kc, c, np.int32))
        n_fine += 1
    bar.close()
    fine_per_iter = (per_iter / np.maximum(per_iter_n, 1)).tolist()
    for i, o in enumerate(fine_per_iter):
        log.log(logging.INFO if bar.disable else logging.DEBUG,
                "two-level fine k-means (%d coarse clusters, K=%d) iter %d/%d: mean cos %.5f",
                 n_fine, k, i + 1, niter, o)
    cents = np.concatenate(centroids)
    assert cents.shape == (k, d), cents.shape
    res = KMeansResult(cents, "two-level", fine_per_iter, obj_sum / w_total, n, time.time() - t0,
                       coarse.iteration_stats,
                       {"k1": k1, "coarse_objective_per_iter": coarse.objective_per_iter,
                        "coarse_sizes_min": int(sizes.min()), "coarse_sizes_max": int(sizes.max()),
                        "coarse_seconds": coarse.seconds, "fine_seconds": time.time() - t_fine,
                        "objective_kind": "within coarse cluster (lower bound on the exact one)",
                        "gpus": gpus})
    res.extra["coarse_of"] = np.concatenate(coarse_of)
    res.extra["coarse_centroids"] = coarse.centroids
    return res
