"""Hierarchical k-means, the scheme the Unicom authors used for LAION-400M → 1M classes.

Every worker clusters its own part of the data into K centroids; the union of all workers'
centroids (W·K points, weighted by their cluster sizes) is clustered again into K. Across
torchrun ranks each rank is a worker holding only its own shards' features, so the data never
has to fit one machine; only the K×D centroids travel. In one process the data can be split
into ``parts`` that are clustered one after another, which gives the same algorithm.

Each level uses flat or two-level spherical k-means (``local_method``). The result's
objective is the exact mean cosine of all the training points (of every rank) to the final
centroids.
"""
from __future__ import annotations

import logging
import time
from typing import Optional, Sequence, Tuple

import numpy as np
import torch

from unicom.runtime.distributed import (
    all_reduce_sum,
    broadcast_rows,
    comm_device,
    gather_rows,
    get_rank,
    get_world_size,
    is_dist,
)
from unicom.runtime.faiss_utils import pick_gpus

from .kmeans import (
    DEFAULT_INIT,
    DEFAULT_MAX_POINTS_PER_CENTROID,
    DEFAULT_NITER,
    DEFAULT_SEED,
    KMeansResult,
    check_k,
    nearest,
    spherical_kmeans,
)
from .two_level import two_level_kmeans

log = logging.getLogger(__name__)


def _cluster(x, k, method, weights=None, **kw) -> KMeansResult:
    if method == "two-level":
        return two_level_kmeans(x, k, weights=weights, **kw)
    return spherical_kmeans(x, k, weights=weights, **kw)


def cluster_part(x: np.ndarray, k: int, local_method: str = "flat", **kw) -> Tuple[np.ndarray, np.ndarray]:
    """Level 1 on one worker: (centroids [min(k, n), D], their sizes among ``x``)."""
    k_local = min(k, len(x))
    r = _cluster(x, k_local, local_method, **kw)
    _, lab = nearest(x, r.centroids, kw.get("gpus"))
    return r.centroids, np.bincount(lab, minlength=k_local).astype(np.float32)


def hierarchical_kmeans(x: np.ndarray, k: int, parts: int = 1, local_method: str = "flat",
                        niter: int = DEFAULT_NITER, seed: int = DEFAULT_SEED,
                        max_points_per_centroid: int = DEFAULT_MAX_POINTS_PER_CENTROID,
                        gpus: Optional[Sequence[int]] = None, verbose: bool = False,
                        init: str = DEFAULT_INIT) -> KMeansResult:
    """Hierarchical spherical k-means (see module doc).

    ``x`` is this rank's data. With a process group every rank must call this (collective);
    each rank's data is one worker's part, split further into ``parts`` in-process pieces
    (default 1). Returns the same centroids on every rank."""
    t0 = time.time()
    gpus = pick_gpus(gpus)
    kw = dict(niter=niter, seed=seed, max_points_per_centroid=max_points_per_centroid, gpus=gpus, verbose=verbose,
              init=init)
    rank, world = get_rank(), get_world_size()
    n_all = int(all_reduce_sum(torch.tensor([len(x)], dtype=torch.int64, device=comm_device())).item()) \
        if is_dist() else len(x)
    check_k(k, n_all)
    rng = np.random.default_rng(seed + 7919 * rank)
    pieces = np.array_split(rng.permutation(len(x)), max(1, parts)) if parts > 1 else [np.arange(len(x))]
    cents, sizes = [], []
    for i, idx in enumerate(pieces):
        if len(idx) == 0:
            continue
        c, s = cluster_part(x[idx], k, local_method, **dict(kw, seed=seed + 1000 * (rank * parts + i)))
        cents.append(c)
        sizes.append(s)
        log.info("hierarchical level 1: rank %d part %d/%d: %d points → %d centroids", rank, i + 1,
                 len(pieces), len(idx), len(c))
    local_c = np.concatenate(cents) if cents else np.zeros((0, x.shape[1]), np.float32)
    local_s = np.concatenate(sizes) if sizes else np.zeros((0,), np.float32)
    t1 = time.time()
    union = np.concatenate(gather_rows(local_c))
    weights = np.concatenate(gather_rows(local_s[:, None]))[:, 0]
    d = x.shape[1]
    if len(union) < k:  # every rank sees the same union, so every rank raises
        raise ValueError(f"hierarchical k-means: the workers gave only {len(union)} centroids for K={k}")
    if rank == 0:
        log.info("hierarchical level 2: clustering the union of %d centroids (from %d workers) into %d",
                 len(union), world * max(1, parts), k)
        top = _cluster(union, k, local_method, weights=weights, **kw)
        final = top.centroids
        top_iters = top.objective_per_iter
    else:
        final, top_iters = None, []
    final = broadcast_rows(final, (k, d))
    # exact objective of every rank's points against the final centroids
    sims = nearest(x, final, gpus)[0] if len(x) else np.zeros(0, np.float32)
    tot = torch.tensor([float(sims.astype(np.float64).sum()), float(len(sims))], dtype=torch.float64,
                       device=comm_device())
    all_reduce_sum(tot)
    objective = float(tot[0] / max(tot[1], 1))
    res = KMeansResult(final, "hierarchical", top_iters, objective, n_all, time.time() - t0, [],
                       {"workers": world * max(1, parts), "parts_per_rank": parts, "local_method": local_method,
                        "union_size": int(len(union)), "level1_seconds": t1 - t0, "gpus": gpus})
    return res

