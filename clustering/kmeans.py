"""Spherical (cosine) k-means with faiss, on every GPU faiss sees or on the CPU.

faiss stops before ``niter`` only when an iteration leaves the objective unchanged (converged).

The objective everywhere in this package is the *mean cosine similarity* of the points to
their nearest centroid (higher is better; for unit vectors the squared distance is 2 - 2·cos,
so maximising it is minimising the k-means distortion on the sphere). faiss reports the sum of
inner products per iteration; it is logged each iteration and divided by the number of points
it was computed on.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from unicom.cli.progress import progress_bar
from unicom.runtime.faiss_utils import flat_ip_index, pick_gpus

from .config import (  # noqa: F401  (re-exported)
    AUTO_AFKMC2_MAX_K,
    DEFAULT_INIT,
    DEFAULT_MAX_POINTS_PER_CENTROID,
    DEFAULT_NITER,
    DEFAULT_SEED,
    INIT_METHODS,
)

log = logging.getLogger(__name__)


def resolve_init(init: str, k: int) -> str:
    """The seeding actually used for ``k`` centroids (``auto`` → afk-mc2 or random)."""
    if init not in INIT_METHODS:
        raise ValueError(f"unknown k-means init {init!r}; use one of {', '.join(INIT_METHODS)}")
    if init == "auto":
        return "afk-mc2" if k <= AUTO_AFKMC2_MAX_K else "random"
    return init


@dataclass
class KMeansResult:
    """Centroids (float32 [K, D], unit rows) and how they were found."""

    centroids: np.ndarray
    method: str
    objective_per_iter: List[float] = field(default_factory=list)  # mean cosine, per iteration
    objective: float = float("nan")  # mean cosine of the training points to the final centroids
    n_train: int = 0
    seconds: float = 0.0
    iteration_stats: List[Dict] = field(default_factory=list)
    extra: Dict = field(default_factory=dict)

    @property
    def k(self) -> int:
        return int(self.centroids.shape[0])


def normalise_rows(x: np.ndarray) -> np.ndarray:
    x = np.ascontiguousarray(x, dtype=np.float32)
    n = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(n, 1e-12)


def check_k(k: int, n: int, what: str = "samples") -> None:
    if k < 1:
        raise ValueError(f"K must be >= 1, got {k}")
    if k > n:
        raise ValueError(f"K={k} is larger than the number of {what} ({n}): k-means needs at least one "
                         f"point per cluster. Lower --num-clusters or give more data")


@dataclass
class KMeansState:
    """Where a stepwise k-means run stands after ``iteration`` iterations (for resuming)."""

    iteration: int
    centroids: np.ndarray
    objective_per_iter: List[float]
    iteration_stats: List[Dict]


def _params(niter: int, seed: int, max_points_per_centroid: int, verbose: bool):
    from unicom.runtime.faiss_utils import import_faiss

    faiss = import_faiss()

    cp = faiss.ClusteringParameters()
    cp.niter = int(niter)
    cp.seed = int(seed)
    cp.spherical = True
    cp.max_points_per_centroid = int(max_points_per_centroid)
    cp.min_points_per_centroid = 1  # small K/N is the caller's choice; no faiss warning spam
    cp.verbose = bool(verbose)
    return cp


_FIELDS = ("obj", "time", "time_search", "imbalance_factor", "nsplit")


def _train(x, k, cp, index, weights, centroids):
    """One faiss ``Clustering.train`` call; returns (unit centroids, list of iteration stats)."""
    from unicom.runtime.faiss_utils import import_faiss

    faiss = import_faiss()

    n, d = x.shape
    clus = faiss.Clustering(d, k, cp)
    if centroids is not None:
        faiss.copy_array_to_vector(np.ascontiguousarray(centroids, np.float32).ravel(), clus.centroids)
    if weights is not None:
        clus.train(x, index, weights)
    else:
        clus.train(x, index)
    cents = normalise_rows(faiss.vector_float_to_array(clus.centroids).reshape(k, d))
    st = clus.iteration_stats
    return cents, [{f: float(getattr(st.at(i), f)) for f in _FIELDS} for i in range(st.size())]


def _checked_start(weights: Optional[np.ndarray], init_centroids: Optional[np.ndarray], n: int, k: int,
                   d: int) -> Tuple[Optional[np.ndarray], Optional[np.ndarray]]:
    """``weights`` as contiguous float32 [n] and ``init_centroids`` as unit rows [k, d] (each
    may be None); a wrong shape is a ValueError naming both shapes."""
    if weights is not None:
        weights = np.ascontiguousarray(weights, dtype=np.float32)
        if weights.shape != (n,):
            raise ValueError(f"weights have shape {weights.shape}, expected ({n},)")
    cents = None
    if init_centroids is not None:
        cents = normalise_rows(init_centroids)
        if cents.shape != (k, d):
            raise ValueError(f"init centroids have shape {cents.shape}, expected {(k, d)}")
    return weights, cents


def spherical_kmeans(x: np.ndarray, k: int, niter: int = DEFAULT_NITER, seed: int = DEFAULT_SEED,
                     max_points_per_centroid: int = DEFAULT_MAX_POINTS_PER_CENTROID,
                     gpus: Optional[Sequence[int]] = None, weights: Optional[np.ndarray] = None,
                     init_centroids: Optional[np.ndarray] = None, verbose: bool = False,
                     evaluate: bool = True, log_iterations: bool = True, name: str = "flat",
                     init: str = DEFAULT_INIT, checkpoint: Optional[Callable[[KMeansState], None]] = None,
                     resume: Optional[KMeansState] = None, progress: bool = False) -> KMeansResult:
    """Cluster the rows of ``x`` (unit vectors) into ``k`` unit centroids with faiss.

    faiss samples at most ``k * max_points_per_centroid`` training points (seeded), runs
    ``niter`` Lloyd iterations with inner-product assignment and renormalised centroids,
    and splits empty clusters. ``weights`` weights the points (hierarchical re-clustering).
    ``evaluate`` adds one exact assignment pass for the final objective. ``init`` seeds the
    centroids (``INIT_METHODS``; ignored when ``init_centroids`` are given).

    With ``log_iterations`` (or ``checkpoint``/``resume``) the iterations run one faiss call
    each, so that each one is logged as it ends and ``checkpoint(state)`` can save it;
    ``resume`` continues from such a state. The training sample is the same in every call
    (same seed), so this is the same algorithm as one call with ``niter`` iterations; it stops
    early, like faiss, when an iteration leaves the objective unchanged. ``progress`` shows a
    tqdm bar over the iterations (and moves the per-iteration lines to debug level)."""
    t0 = time.time()
    x = np.ascontiguousarray(x, dtype=np.float32)
    n, d = x.shape
    check_k(k, n)
    gpus = pick_gpus(gpus)
    if k == n:  # every point is its own cluster
        return KMeansResult(normalise_rows(x), name, [1.0], 1.0, n, time.time() - t0)
    weights, cents = _checked_start(weights, init_centroids, n, k, d)
    n_used = min(n, k * max_points_per_centroid)
    index = flat_ip_index(d, gpus)
    stepwise = log_iterations or checkpoint is not None or resume is not None
    if not stepwise:
        cp = _params(niter, seed, max_points_per_centroid, verbose)
        if cents is None:
            _set_init(cp, init, k)
        cents, iters = _train(x, k, cp, index, weights, cents)
        per_iter = [it["obj"] / n_used for it in iters]  # faiss' obj: the unweighted sum of similarities
    else:
        per_iter, iters, start = [], [], 0
        if resume is not None:
            if resume.centroids.shape != (k, d):
                raise ValueError(f"resume state has centroids {resume.centroids.shape}, expected {(k, d)}")
            cents, start = normalise_rows(resume.centroids), resume.iteration
            per_iter, iters = list(resume.objective_per_iter), list(resume.iteration_stats)
            log.info("%s k-means K=%d: resuming after iteration %d", name, k, start)
        bar = progress_bar(progress, total=niter, initial=start, desc=f"{name} k-means K={k}", unit="iter")
        level = logging.INFO if bar.disable else logging.DEBUG  # a bar shows the iterations
        for i in range(start, niter):
            if len(iters) >= 2 and iters[-1]["obj"] == iters[-2]["obj"]:
                break  # converged (faiss' own stopping rule)
            t = time.time()
            cp = _params(1, seed, max_points_per_centroid, verbose)
            if cents is None:
                _set_init(cp, init, k)
            cents, st = _train(x, k, cp, index, weights, cents)
            it = dict(st[-1], time=time.time() - t)
            iters.append(it)
            per_iter.append(it["obj"] / n_used)
            bar.update(1)
            bar.set_postfix(mean_cos=f"{per_iter[-1]:.5f}", imbalance=f"{it['imbalance_factor']:.3f}")
            if log_iterations:
                log.log(level, "%s k-means K=%d iter %d/%d: objective %.6g (mean cos %.5f) imbalance %.3f splits %d, "
                         "%.2fs", name, k, i + 1, niter, it["obj"], per_iter[-1], it["imbalance_factor"],
                         int(it["nsplit"]), it["time"])
            if checkpoint is not None:
                checkpoint(KMeansState(i + 1, cents, list(per_iter), list(iters)))
        bar.close()
    res = KMeansResult(cents, name, per_iter, per_iter[-1] if per_iter else float("nan"), n_used,
                       0.0, iters, {"gpus": gpus, "d": d})
    if evaluate:
        sims = nearest(x, cents, gpus)[0]
        res.objective = float(np.average(sims, weights=weights)) if weights is not None else float(sims.mean())
    res.seconds = time.time() - t0
    return res


def _set_init(cp, init: str, k: int) -> None:
    from unicom.runtime.faiss_utils import import_faiss

    faiss = import_faiss()

    init = resolve_init(init, k)
    if init == "random":
        return
    const = {"afk-mc2": "ClusteringInitMethod_AFK_MC2", "kmeans++": "ClusteringInitMethod_KMEANS_PLUS_PLUS"}[init]
    if not hasattr(cp, "init_method") or not hasattr(faiss, const):
        log.warning("this faiss version has no %s seeding; using random initial centroids", init)
        return
    cp.init_method = getattr(faiss, const)


def nearest(x: np.ndarray, centroids: np.ndarray, gpus: Optional[Sequence[int]] = None,
            chunk: int = 65536):
    """Exact nearest centroid by inner product: (similarities float32 [n], labels int64 [n])."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    index = flat_ip_index(centroids.shape[1], pick_gpus(gpus))
    index.add(np.ascontiguousarray(centroids, dtype=np.float32))
    sims = np.empty(len(x), np.float32)
    labels = np.empty(len(x), np.int64)
    for i in range(0, len(x), chunk):
        D, I = index.search(x[i:i + chunk], 1)
        sims[i:i + chunk], labels[i:i + chunk] = D[:, 0], I[:, 0]
    return sims, labels


def mean_cosine(x: np.ndarray, centroids: np.ndarray, gpus: Optional[Sequence[int]] = None) -> float:
    """The objective: mean cosine similarity of each row of ``x`` to its nearest centroid."""
    return float(nearest(x, centroids, gpus)[0].mean())
