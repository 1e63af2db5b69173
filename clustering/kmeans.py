"""Spherical (cosine) k-means: with faiss on every GPU faiss sees, and with torch on the CPU.

On the CPU the Lloyd iterations run here (``_CpuLloyd``), on torch GEMMs in cache-sized blocks
(``unicom.runtime.dense``): faiss's bundled OpenBLAS may run generic kernels on recent CPUs,
and torch has bf16 kernels for CPUs with AMX or AVX-512 BF16. The algorithm is faiss's: the
same capped training sample size, faiss's own seeding (``init``), inner-product assignment,
(weighted) mean and renormalisation, and faiss's split of empty clusters. ``precision`` picks
the assignment GEMM (``auto``: bf16 where the CPU has native bf16); the centroid update and the
objective are float32 sums (float64 accumulators) either way. With bf16 a point whose two best
centroids are within bf16's rounding may take the other one: the objective agrees with the
float32 run within 0.1% (``BF16_OBJECTIVE_RTOL``; measured differences are far smaller,
tests/clustering/test_kmeans_precision.py). Both stop before ``niter`` only when an iteration
leaves the objective unchanged (converged).

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
from unicom.runtime import dense
from unicom.runtime.faiss_utils import flat_ip_index, pick_gpus
from unicom.runtime.precision import DEFAULT_PRECISION

from .config import (  # noqa: F401  (re-exported)
    AUTO_AFKMC2_MAX_K,
    DEFAULT_INIT,
    DEFAULT_MAX_POINTS_PER_CENTROID,
    DEFAULT_NITER,
    DEFAULT_SEED,
    INIT_METHODS,
)

log = logging.getLogger(__name__)

BF16_OBJECTIVE_RTOL = 1e-3   # the stated tolerance of a bf16 run's objective against float32
SPLIT_EPS = 1.0 / 1024       # faiss Clustering's perturbation when it splits a cluster


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
                     resume: Optional[KMeansState] = None, progress: bool = False,
                     precision: str = DEFAULT_PRECISION) -> KMeansResult:
    """Cluster the rows of ``x`` (unit vectors) into ``k`` unit centroids: faiss on GPUs, torch
    on the CPU (module docstring).

    At most ``k * max_points_per_centroid`` training points are sampled (seeded), ``niter``
    Lloyd iterations run with inner-product assignment and renormalised centroids, and empty
    clusters are split. ``weights`` weights the points (hierarchical re-clustering).
    ``evaluate`` adds one assignment pass for the final objective. ``init`` seeds the
    centroids (``INIT_METHODS``, faiss's seeding; ignored when ``init_centroids`` are given).
    ``precision`` is the CPU assignment GEMM's (``auto``: bf16 on CPUs with native bf16).

    Each iteration is logged as it ends (``log_iterations``) and ``checkpoint(state)`` can save
    it; ``resume`` continues from such a state. The training sample is the same in every call
    (same seed), so a resumed run is the same algorithm as an uninterrupted one; it stops
    early, like faiss, when an iteration leaves the objective unchanged. ``progress`` shows a
    tqdm bar over the iterations (and moves the per-iteration lines to debug level). On GPUs
    without logging, checkpoints or resume, the iterations run in one faiss call."""
    t0 = time.time()
    x = np.ascontiguousarray(x, dtype=np.float32)
    n, d = x.shape
    check_k(k, n)
    gpus = pick_gpus(gpus)
    if k == n:  # every point is its own cluster
        return KMeansResult(normalise_rows(x), name, [1.0], 1.0, n, time.time() - t0)
    weights, cents = _checked_start(weights, init_centroids, n, k, d)
    n_used = min(n, k * max_points_per_centroid)
    stepwise = log_iterations or checkpoint is not None or resume is not None
    if gpus and not stepwise:
        index = flat_ip_index(d, gpus)
        cp = _params(niter, seed, max_points_per_centroid, verbose)
        if cents is None:
            _set_init(cp, init, k)
        cents, iters = _train(x, k, cp, index, weights, cents)
        per_iter = [it["obj"] / n_used for it in iters]  # faiss' obj: the unweighted sum of similarities
    else:
        step = (_faiss_step(x, k, gpus, seed, max_points_per_centroid, verbose, weights, init) if gpus else
                _CpuLloyd(x, k, seed, max_points_per_centroid, weights, init, precision, verbose))
        per_iter, iters, start = [], [], 0
        if resume is not None:
            if resume.centroids.shape != (k, d):
                raise ValueError(f"resume state has centroids {resume.centroids.shape}, expected {(k, d)}")
            cents, start = normalise_rows(resume.centroids), resume.iteration
            per_iter, iters = list(resume.objective_per_iter), list(resume.iteration_stats)
            log.info("%s k-means K=%d: resuming after iteration %d", name, k, start)
        bar = progress_bar(progress, total=niter, initial=start, desc=f"{name} k-means K={k}", unit="iter")
        level = logging.INFO if bar.disable and log_iterations else logging.DEBUG  # a bar shows the iterations
        for i in range(start, niter):
            if len(iters) >= 2 and iters[-1]["obj"] == iters[-2]["obj"]:
                break  # converged (faiss' own stopping rule)
            t = time.time()
            cents, st = step(cents, i)
            it = dict(st, time=time.time() - t)
            iters.append(it)
            per_iter.append(it["obj"] / n_used)
            bar.update(1)
            bar.set_postfix(mean_cos=f"{per_iter[-1]:.5f}", imbalance=f"{it['imbalance_factor']:.3f}")
            log.log(level, "%s k-means K=%d iter %d/%d: objective %.6g (mean cos %.5f) imbalance %.3f splits %d, "
                    "%.2fs", name, k, i + 1, niter, it["obj"], per_iter[-1], it["imbalance_factor"],
                    int(it["nsplit"]), it["time"])
            if checkpoint is not None:
                checkpoint(KMeansState(i + 1, cents, list(per_iter), list(iters)))
        bar.close()
    res = KMeansResult(cents, name, per_iter, per_iter[-1] if per_iter else float("nan"), n_used,
                       0.0, iters, {"gpus": gpus, "d": d, "assignment": "faiss" if gpus else
                                    f"torch {dense.gemm_dtype(precision)}".replace("torch.", "")})
    if evaluate:
        sims = nearest(x, cents, gpus, precision=precision)[0]
        res.objective = float(np.average(sims, weights=weights)) if weights is not None else float(sims.mean())
    res.seconds = time.time() - t0
    return res


def _faiss_step(x, k, gpus, seed, max_points_per_centroid, verbose, weights, init):
    """One faiss iteration per call (GPUs): ``step(centroids or None, i) -> (centroids, stats)``."""
    index = flat_ip_index(x.shape[1], gpus)

    def step(cents, i):
        cp = _params(1, seed, max_points_per_centroid, verbose)
        if cents is None:
            _set_init(cp, init, k)
        cents, st = _train(x, k, cp, index, weights, cents)
        return cents, st[-1]
    return step


class _CpuLloyd:
    """Lloyd iterations on the CPU with torch GEMMs: ``step(centroids or None, i) -> (unit
    centroids float32 [k, D], faiss-style iteration stats)``.

    The training sample is drawn once (seeded, sorted rows). The seeding is faiss's own
    (a zero-iteration ``faiss.Clustering`` on the sample). Assignment: ``dense.nearest`` under
    ``precision``; update: float32 sums of the (weighted) points per cluster; empty clusters
    are split as faiss does (a random cluster, chosen with probability ∝ its size - 1, is
    copied and both copies are nudged apart by ``SPLIT_EPS``)."""

    def __init__(self, x: np.ndarray, k: int, seed: int, max_points_per_centroid: int,
                 weights: Optional[np.ndarray], init: str, precision: str, verbose: bool):
        import torch

        n_used = min(len(x), k * max_points_per_centroid)
        if n_used < len(x):
            rows = np.sort(np.random.default_rng(seed).permutation(len(x))[:n_used])
            x, weights = x[rows], (weights[rows] if weights is not None else None)
        self.x, self.weights, self.k, self.seed = x, weights, k, seed
        self.init, self.precision, self.verbose = init, precision, verbose
        self.xt = torch.from_numpy(x)
        self.wt = torch.from_numpy(weights) if weights is not None else None

    def seeding(self) -> np.ndarray:
        """faiss's initial centroids on the sample (``init``)."""
        import faiss

        cp = _params(0, self.seed, 10 ** 9, self.verbose)  # the sample is already capped
        _set_init(cp, self.init, self.k)
        clus = faiss.Clustering(self.x.shape[1], self.k, cp)
        index = faiss.IndexFlatIP(self.x.shape[1])
        if self.weights is not None:
            clus.train(self.x, index, self.weights)
        else:
            clus.train(self.x, index)
        return normalise_rows(faiss.vector_float_to_array(clus.centroids).reshape(self.k, -1))

    def __call__(self, cents: Optional[np.ndarray], i: int) -> Tuple[np.ndarray, Dict]:
        import torch

        if cents is None:
            cents = self.seeding()
        t = time.time()
        sims, labels = dense.nearest(self.x, cents, self.precision)
        t_search = time.time() - t
        k, d = cents.shape
        lab = torch.from_numpy(labels)
        sums = torch.zeros(k, d, dtype=torch.float32)
        step = dense.block_rows(d, minimum=4096)
        for s in range(0, len(self.xt), step):  # blocks: no weighted copy of the whole sample
            xb = self.xt[s:s + step]
            sums.index_add_(0, lab[s:s + step], xb if self.wt is None else xb * self.wt[s:s + step, None])
        hist = np.bincount(labels, minlength=k).astype(np.float64)
        new = sums.numpy()
        nsplit = _split_empty(new, hist, np.random.default_rng([self.seed, i]))
        return normalise_rows(new), {"obj": float(sims.sum(dtype=np.float64)), "time_search": t_search,
                                     "imbalance_factor": float(k * (hist ** 2).sum() / hist.sum() ** 2),
                                     "nsplit": float(nsplit)}


def _split_empty(cents: np.ndarray, hist: np.ndarray, rng: np.random.Generator) -> int:
    """faiss Clustering's split of empty clusters, in place: each empty cluster takes a copy of
    a cluster drawn with probability ∝ (size - 1); the two are nudged apart (±SPLIT_EPS on
    alternating coordinates) and share its points. Returns the number of splits."""
    n, k = hist.sum(), len(hist)
    sign = np.where(np.arange(cents.shape[1]) % 2 == 0, 1.0, -1.0).astype(np.float32)
    nsplit = 0
    for ci in np.flatnonzero(hist == 0):
        cj = 0
        while True:  # faiss's walk: the first cluster whose draw succeeds
            if rng.random() < (hist[cj] - 1.0) / max(n - k, 1.0):
                break
            cj = (cj + 1) % k
        cents[ci] = cents[cj] * (1 + sign * SPLIT_EPS)
        cents[cj] = cents[cj] * (1 - sign * SPLIT_EPS)
        hist[ci] = hist[cj] / 2
        hist[cj] -= hist[ci]
        nsplit += 1
    return nsplit


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
            chunk: int = 65536, precision: str = DEFAULT_PRECISION):
    """Nearest centroid by inner product: (similarities float32 [n], labels int64 [n]). On GPUs
    exact with faiss; on the CPU with ``unicom.runtime.dense.nearest`` under ``precision``
    (similarities are float32 for the chosen centroid)."""
    gpus = pick_gpus(gpus)
    if not gpus:
        return dense.nearest(x, centroids, precision)
    x = np.ascontiguousarray(x, dtype=np.float32)
    index = flat_ip_index(centroids.shape[1], gpus)
    index.add(np.ascontiguousarray(centroids, dtype=np.float32))
    sims = np.empty(len(x), np.float32)
    labels = np.empty(len(x), np.int64)
    for i in range(0, len(x), chunk):
        D, I = index.search(x[i:i + chunk], 1)
        sims[i:i + chunk], labels[i:i + chunk] = D[:, 0], I[:, 0]
    return sims, labels


def mean_cosine(x: np.ndarray, centroids: np.ndarray, gpus: Optional[Sequence[int]] = None,
                precision: str = DEFAULT_PRECISION) -> float:
    """The objective: mean cosine similarity of each row of ``x`` to its nearest centroid."""
    return float(nearest(x, centroids, gpus, precision=precision)[0].mean())
