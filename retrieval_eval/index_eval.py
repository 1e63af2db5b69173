"""Evaluation through a faiss index (``unicom-eval --index-type SPEC``): every metric is computed
again with the benchmark's database searched through the index a user would build, beside the
exact figures, together with the index's recall against exact search.

* ``SPEC`` is what ``unicom-embed --index-type`` takes (``unicom.index.factory``): ``flat``,
  ``hnsw``, ``ivf`` or any faiss ``index_factory`` string over inner product (``IVF256,PQ32``,
  ``OPQ32,IVF256,PQ32``, ``IVF256,SQ8``, ``HNSW32`` …).
* The index is trained on the database it holds (the gallery, or every test image for the
  self-retrieval benchmarks; plus the distractors with ``--distractors``) and then holds it:
  what a user who builds an index over their collection gets. Self-matches are removed from
  the results exactly as the exact path removes them (``knn.iter_search(exclude_self=True)``).
* Search parameters: ``--index-params`` in faiss ``ParameterSpace`` syntax (``nprobe=32``,
  ``efSearch=256``, ``nprobe=16,quantizer_efSearch=64``); by default IVF indexes search
  ``max(16, nlist/64)`` cells and HNSW ``efSearch=128``, as ``unicom-embed`` builds them
  (``unicom.runtime.faiss_utils``).
* Recall against exact (``recall@1``, ``recall@10``): for each query, the fraction of the
  index's top k whose exact inner product reaches the exact k-th best score (the usual
  "k-recall@k", counted by score so that tied items are not counted as misses), averaged over
  queries.
* The index runs on the CPU (every factory string works there); the exact figures beside it
  keep their own search device.
"""
from __future__ import annotations

import time
from typing import Any, Dict, Optional, Sequence, Tuple

import numpy as np

from unicom.index.factory import ivf_of, make_index, min_training_points
from unicom.runtime.faiss_utils import EF_SEARCH, default_nprobe, import_faiss

from . import knn

RECALL_KS = (1, 10)


def default_search_params(index) -> str:
    """The search knobs ``unicom-embed`` uses for this kind of index, as a ParameterSpace string
    (empty for an index without any)."""
    faiss = import_faiss()
    ivf = ivf_of(index)
    if ivf is not None:
        return f"nprobe={default_nprobe(int(ivf.nlist))}"
    inner = faiss.downcast_index(index.index) if isinstance(index, faiss.IndexPreTransform) else index
    if hasattr(faiss.downcast_index(inner), "hnsw"):
        return f"efSearch={EF_SEARCH}"
    return ""


def apply_search_params(index, params: Optional[str], spec: str) -> str:
    """Set ``params`` (or the defaults) on ``index``; returns the string applied. Raises a
    ValueError naming the parameter when the index has no such knob."""
    text = default_search_params(index) if params is None else params.strip()
    if text:
        try:
            import_faiss().ParameterSpace().set_index_parameters(index, text)
        except RuntimeError as exn:
            raise ValueError(f"--index-params {text!r} does not apply to --index-type {spec!r} "
                             f"({str(exn).strip().splitlines()[-1].split(':')[-1].strip()}); IVF indexes take "
                             "nprobe=N, HNSW ones efSearch=N") from None
    return text


def check_index(spec: str, d: int, n: int, params: Optional[str] = None) -> str:
    """Validate an index request before any work: ``spec`` must parse for ``d``-d vectors, the
    ``n`` database vectors must be enough to train it, and ``params`` must apply. Returns the
    factory string; raises a one-line ValueError naming the value and what would work."""
    index, factory = make_index(spec, d, n)
    need = min_training_points(index)
    if need > n:
        ivf = ivf_of(index)
        if ivf is not None and 39 * int(ivf.nlist) > n:
            hint = f"use at most IVF{max(1, n // 39)} cells (39 training points per cell)"
        elif need == 256 and "OPQ" in factory.upper():
            hint = "drop the OPQ rotation (it trains 256 centroids per sub-space) or use a Flat/HNSW index"
        else:
            hint = "use fewer PQ bits (PQ…x4 needs 16 vectors) or a Flat/HNSW index"
        raise ValueError(f"--index-type {spec!r} ({factory}) needs at least {need} training vectors but the "
                         f"benchmark's database has {n}; {hint}")
    apply_search_params(index, params, spec)
    return factory


def code_bytes(index) -> Optional[int]:
    """Bytes of one vector's code in ``index`` (the ids an IVF list keeps beside it not counted),
    or None when faiss cannot tell."""
    faiss = import_faiss()
    ivf = ivf_of(index)
    if ivf is not None:
        return int(ivf.code_size)
    for candidate in (index, getattr(faiss.downcast_index(index), "storage", None)):
        if candidate is None:
            continue
        try:
            return int(faiss.downcast_index(candidate).sa_code_size())
        except RuntimeError:
            continue
    return None


def index_file_bytes(index, in_memory_limit: int = 1 << 30) -> int:
    """The size of ``index`` as ``faiss.write_index`` stores it: serialised in memory when small,
    written to a temporary file (and removed) when it would take more than ``in_memory_limit``
    bytes of RAM."""
    import os
    import tempfile

    faiss = import_faiss()
    estimate = int(index.ntotal) * (code_bytes(index) or 4 * int(index.d))
    if estimate < in_memory_limit:
        return int(faiss.serialize_index(index).size)
    fd, path = tempfile.mkstemp(suffix=".faiss")
    os.close(fd)
    try:
        faiss.write_index(index, path)
        return os.path.getsize(path)
    finally:
        os.unlink(path)


class IndexSearcher:
    """A faiss index over the normalised database ``db`` [n, d] with the ``knn.ExactSearcher``
    interface: ``search(xq, k)`` returns (scores, ids) [nq, k], best first, ids -1 where the
    index found fewer than k items."""

    def __init__(self, db: np.ndarray, spec: str, params: Optional[str] = None):
        self.db = np.ascontiguousarray(db, dtype=np.float32)
        self.ntotal, self.dim = self.db.shape
        self.spec = spec
        self.factory = check_index(spec, self.dim, self.ntotal, params)
        self.index, _ = make_index(spec, self.dim, self.ntotal)
        t0 = time.time()
        if not self.index.is_trained:
            self.index.train(self.db)  # faiss samples ≤ 256 points per centroid itself
        self.train_seconds = time.time() - t0
        t0 = time.time()
        self.index.add(self.db)
        self.add_seconds = time.time() - t0
        self.params = apply_search_params(self.index, params, spec)
        self.search_seconds = 0.0

    def device_for(self, k: int) -> str:
        return "cpu"

    def search(self, xq: np.ndarray, k: int) -> Tuple[np.ndarray, np.ndarray]:
        k = int(k)
        if not 1 <= k <= self.ntotal:
            raise ValueError(f"k must be in [1, {self.ntotal}] (the database size), got {k}")
        t0 = time.time()
        scores, ids = self.index.search(np.ascontiguousarray(xq, dtype=np.float32), k)
        self.search_seconds += time.time() - t0
        return scores, ids.astype(np.int64, copy=False)

    def describe(self) -> Dict[str, Any]:
        """The index's record in the results: spec, factory string, parameters, sizes, times."""
        size = index_file_bytes(self.index)
        return {"index_type": self.spec, "factory": self.factory, "search_params": self.params,
                "ntotal": int(self.ntotal), "dim": int(self.dim), "code_bytes_per_vector": code_bytes(self.index),
                "index_bytes": size, "index_bytes_per_vector": round(size / max(self.ntotal, 1), 2),
                "train_seconds": round(self.train_seconds, 3), "add_seconds": round(self.add_seconds, 3)}


def recall_against_exact(queries: np.ndarray, searcher: IndexSearcher, ks: Sequence[int] = RECALL_KS,
                         exclude_self: bool = False, device: str = "auto") -> Dict[str, float]:
    """k-recall@k of ``searcher`` against exact search over its own database, for each k in
    ``ks`` (capped at the number of candidates): an index result counts when its exact score
    reaches the exact k-th best score. ``exclude_self``: the queries are the database's first
    rows and never count as their own results."""
    n_cand = searcher.ntotal - (1 if exclude_self else 0)
    kmax = min(max(ks), n_cand)
    xq = knn.l2_normalize(queries)
    exact = knn.ExactSearcher(searcher.db, device=device, normalized=True)
    found = {int(k): 0.0 for k in ks}
    for (start, s_ex, _), (_, _, i_ix) in zip(
            knn.iter_search(xq, None, kmax, exclude_self=exclude_self, searcher=exact),
            knn.iter_search(xq, None, kmax, exclude_self=exclude_self, searcher=searcher)):
        block = xq[start:start + len(i_ix)]
        valid = i_ix >= 0
        true = np.einsum("qd,qkd->qk", block, searcher.db[np.where(valid, i_ix, 0)])
        for k in found:
            kk = min(k, kmax)
            # float32 sums of the same terms in another order: allow a few ulps
            thresh = s_ex[:, kk - 1:kk] - 1e-5
            found[k] += float(((true[:, :kk] >= thresh) & valid[:, :kk]).sum(axis=1).sum() / kk)
    return {f"recall@{k}": found[k] / max(len(xq), 1) for k in found}


def evaluate_index(bench, q_emb: np.ndarray, g_emb: Optional[np.ndarray], spec: str, params: Optional[str],
                   search: Dict[str, Any], distractors: Optional[np.ndarray] = None) -> Dict[str, Any]:
    """Every metric of ``bench`` with the database searched through a ``spec`` index (see the
    module docstring); returns the index record with ``metrics`` and ``recall_vs_exact``.
    ``search``: the keyword arguments of ``scoring.score`` the exact run used."""
    from .scoring import score

    built: Dict[str, IndexSearcher] = {}

    def make(db: np.ndarray, device: str) -> IndexSearcher:
        built["searcher"] = IndexSearcher(db, spec, params)
        return built["searcher"]

    kw = {key: v for key, v in search.items() if key not in ("n_examples", "example_k")}
    scored = score(bench, q_emb, g_emb, distractors=distractors, make_searcher=make, **kw)
    searcher = built["searcher"]
    record = searcher.describe()
    t0 = time.time()
    record["recall_vs_exact"] = recall_against_exact(q_emb, searcher, exclude_self=bench.all_vs_all,
                                                     device=kw.get("device", "auto"))
    record["recall_seconds"] = round(time.time() - t0, 3)
    record["search_seconds"] = round(searcher.search_seconds, 3)
    record["search_k"] = scored.settings["search_k"]
    record["metrics"] = scored.metrics
    return record
