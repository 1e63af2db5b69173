"""Plan and build an index in a stream: validate first, train on a sample, add chunk by chunk.

``plan_index`` turns ``--index-type`` (a short name, ``auto``, or a factory string) and the
collection's size into a factory string, its memory estimate and its training sample size,
and raises every one-line error (unknown string, budget too small, too few training vectors)
before any work. ``build_streaming`` then trains on a uniform sample of the collection —
faiss's suggested ``MAX_POINTS_PER_CELL`` (256) points per centroid, never fewer than
``min_training_points`` — and adds the vectors part by part in chunks read from disk: peak
memory is the index, plus the training sample, plus one chunk.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Sequence

from ..cli.progress import progress_bar
from ..runtime.faiss_utils import (
    EF_CONSTRUCTION,
    HNSW_M,
    MAX_POINTS_PER_CELL,
    choose_index_type,
    flat_ip_index,
    import_faiss,
)
from .factory import factory_string, ivf_of, make_index, min_training_points
from .memory import AutoChoice, Estimate, choose_auto, estimate, format_bytes, parse_memory
from .source import DEFAULT_CHUNK, VectorSource


@dataclass
class BuildOptions:
    """How to build: the knobs of the short names, the budget, the sample and the chunk."""

    nlist: Optional[int] = None                 # cells of the short name ``ivf`` (None: ≈ 4·√n)
    hnsw_m: int = HNSW_M                         # graph degree of the short name ``hnsw``
    ef_construction: int = EF_CONSTRUCTION       # HNSW build breadth
    max_index_memory: Optional[str] = None       # e.g. "4GB": auto's budget, a check for other specs
    max_query_ms: Optional[float] = None         # auto: drop candidates estimated slower than this
    max_training_points: Optional[int] = None    # cap the training sample (None: 256 per centroid)
    seed: int = 0                                # the training sample and k-means seed
    chunk: int = DEFAULT_CHUNK                   # rows per add() call
    gpus: Sequence[int] = field(default_factory=tuple)  # train the IVF centroids on these GPUs


@dataclass
class IndexPlan:
    """What will be built: the factory string, its family, the estimate and the sample size."""

    spec: str
    factory: str
    family: str
    n: int
    d: int
    estimate: Estimate
    train_points: int
    auto: Optional[AutoChoice] = None

    def to_dict(self) -> Dict[str, Any]:
        out = {"spec": self.spec, "factory": self.factory, "train_points": self.train_points,
               "estimate": self.estimate.to_dict()}
        if self.auto is not None:
            out["auto"] = self.auto.to_dict()
        return out


def family(index) -> str:
    """The kind of an index, as index.json's ``type`` says it: ``flat``, ``hnsw``, ``ivf``, or
    the faiss class name in lower case without ``index`` (``pq``, ``scalarquantizer``, …)."""
    faiss = import_faiss()
    if ivf_of(index) is not None:
        return "ivf"
    base = faiss.downcast_index(index)
    if isinstance(base, faiss.IndexPreTransform):
        base = faiss.downcast_index(base.index)
    if isinstance(base, faiss.IndexHNSW):
        return "hnsw"
    if isinstance(base, faiss.IndexFlat):
        return "flat"
    return type(base).__name__.lower().replace("index", "") or "other"


# the training sample's default cap: 512 MB of float32 at 512-d, so that the sample stays well
# below the collection (faiss' 256 points per cell would be the whole collection at 1M and 4096 cells)
DEFAULT_MAX_TRAINING_POINTS = 1 << 18


def suggested_training_points(index) -> int:
    """faiss's suggested training set: 256 points per centroid of the largest codebook (IVF
    cells, PQ/OPQ's 2^nbits centroids), capped at ``DEFAULT_MAX_TRAINING_POINTS``; never fewer
    than ``min_training_points`` (39 per cell)."""
    faiss = import_faiss()
    ivf = ivf_of(index)
    centroids = int(ivf.nlist) if ivf is not None else 1
    base = faiss.downcast_index(ivf if ivf is not None else index)
    if isinstance(base, faiss.IndexPreTransform):
        base = faiss.downcast_index(base.index)
    pq = getattr(base, "pq", None)
    if pq is not None:
        centroids = max(centroids, int(pq.ksub))
    return max(min_training_points(index), min(DEFAULT_MAX_TRAINING_POINTS, centroids * MAX_POINTS_PER_CELL))


def resolve_spec(spec: str, n: int, d: int, opts: BuildOptions) -> "tuple[str, Optional[AutoChoice]]":
    """(factory string, auto's choice or None) for ``spec`` at ``n`` ``d``-d vectors."""
    budget = parse_memory(opts.max_index_memory) if opts.max_index_memory else None
    low = spec.strip().lower()
    if low == "auto":
        if budget is None and opts.max_query_ms is None:
            # no budget: the size rule of earlier releases (flat ≤ 100k, hnsw ≤ 2M, ivf above)
            short = choose_index_type(n)
            return factory_string(short, n, hnsw_m=opts.hnsw_m, nlist=opts.nlist), None
        choice = choose_auto(n, d, budget, opts.max_query_ms)
        return choice.factory, choice
    return factory_string(spec, n, hnsw_m=opts.hnsw_m, nlist=opts.nlist), None


def plan_index(spec: str, n: int, d: int, opts: Optional[BuildOptions] = None) -> IndexPlan:
    """Validate ``spec`` for ``n`` ``d``-d vectors and size its training sample; every error is
    a one-line ValueError naming the value and what would work, raised before any work."""
    opts = opts or BuildOptions()
    if n <= 0:
        raise ValueError("nothing to index: the collection is empty")
    factory, auto = resolve_spec(spec, n, d, opts)
    index, factory = make_index(factory, d, n)
    need = min_training_points(index)
    if need > n:
        ivf = ivf_of(index)
        cells = f"{int(ivf.nlist)} cells need {need:,} training vectors (39 per cell)" if ivf is not None else \
            f"needs {need:,} training vectors"
        fix = f"IVF{max(1, n // 39)} or fewer cells" if ivf is not None else "a smaller code (fewer bits)"
        raise ValueError(f"--index-type {spec!r}: {cells} but the collection holds {n:,}; use {fix}, "
                         "or flat/hnsw for so few vectors")
    est = auto.estimate if auto is not None else estimate(factory, n, d)
    budget = parse_memory(opts.max_index_memory) if opts.max_index_memory else None
    if budget is not None and auto is None and est.bytes > budget:
        raise ValueError(f"--index-type {spec!r} needs about {format_bytes(est.bytes)} for {n:,} × {d} vectors, more "
                         f"than --max-index-memory {format_bytes(budget)}; use --index-type auto to fit the budget")
    train = 0 if index.is_trained else min(n, suggested_training_points(index))
    if opts.max_training_points and train:
        train = max(need, min(train, int(opts.max_training_points)))
    return IndexPlan(spec, factory, family(index), n, d, est, train, auto)


def new_index(plan: IndexPlan, opts: BuildOptions):
    """The empty index of ``plan`` with the build knobs set (HNSW breadth, spherical IVF k-means)."""
    faiss = import_faiss()
    index, _ = make_index(plan.factory, plan.d, plan.n)
    base = faiss.downcast_index(index)
    if isinstance(base, faiss.IndexPreTransform):
        base = faiss.downcast_index(base.index)
    if isinstance(base, faiss.IndexHNSW):
        base.hnsw.efConstruction = int(opts.ef_construction)
    # polysemous codes serve only a Hamming-threshold search, unused here, and their training
    # takes most of a PQ index's training time
    for layer in (base, ivf_of(index)):
        if layer is not None and hasattr(faiss.downcast_index(layer), "do_polysemous_training"):
            faiss.downcast_index(layer).do_polysemous_training = False
    ivf = ivf_of(index)
    if ivf is not None:
        ivf.cp.spherical = True   # centroids on the unit sphere, like the normalised vectors
        ivf.cp.seed = int(opts.seed)
        if opts.gpus:
            # the k-means assignment step on the GPU(s); the trained index itself stays on the CPU
            ivf.clustering_index = flat_ip_index(int(ivf.d), opts.gpus)
    return index


def train_index(index, source: VectorSource, plan: IndexPlan, opts: BuildOptions) -> float:
    """Train ``index`` on ``plan.train_points`` rows drawn uniformly from ``source``; seconds."""
    if index.is_trained:
        return 0.0
    t0 = time.time()
    _, x = source.sample(plan.train_points, seed=opts.seed)
    index.train(x)
    ivf = ivf_of(index)
    if ivf is not None and opts.gpus:
        ivf.clustering_index = None  # not part of the saved index
    return time.time() - t0


def add_stream(index, source: VectorSource, opts: BuildOptions, progress: bool = True, start: int = 0,
               desc: str = "add") -> float:
    """Add ``source``'s rows from ``start`` on, chunk by chunk; seconds."""
    t0 = time.time()
    with progress_bar(progress, total=source.n - start, unit="vec", desc=desc) as bar:
        for _, block in source.chunks(opts.chunk, start=start):
            index.add(block)
            bar.update(len(block))
    return time.time() - t0


def build_streaming(source: VectorSource, plan: IndexPlan, opts: Optional[BuildOptions] = None,
                    progress: bool = True):
    """Train on a sample and add every row of ``source`` in chunks; returns (index, timings
    {train_s, add_s, build_s})."""
    opts = opts or BuildOptions()
    index = new_index(plan, opts)
    train_s = train_index(index, source, plan, opts)
    add_s = add_stream(index, source, opts, progress, desc=f"add to {plan.factory}")
    return index, {"train_s": round(train_s, 3), "add_s": round(add_s, 3), "build_s": round(train_s + add_s, 3)}
