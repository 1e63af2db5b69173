"""Search parameters: set them, tune them to a target recall, and measure an index against exact search.

Recall is measured against exact inner-product search over the same vectors (faiss
``contrib.exhaustive_search.knn_ground_truth``, streamed over the collection's chunks):
  recall@1  = the share of queries whose first result is the exact first result;
  recall@10 = the share of the exact top-10 found in the index's top-10 (autofaiss' "10-recall@10").
``tune`` finds the smallest ``nprobe`` (IVF) or ``efSearch`` (HNSW) whose recall@k reaches the
target: doubling until it is reached, then bisecting between the last two values.
"""
from __future__ import annotations

import time
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from ..runtime.faiss_utils import import_faiss
from .factory import ivf_of
from .source import DEFAULT_CHUNK, VectorSource

DEFAULT_TARGET_RECALL = 0.95
DEFAULT_TUNE_QUERIES = 1000
TUNE_K = 10
MAX_EF_SEARCH = 4096


def hnsw_of(index):
    """The HNSW index inside ``index`` (through a pre-transform), or None."""
    faiss = import_faiss()
    base = faiss.downcast_index(index)
    if isinstance(base, faiss.IndexPreTransform):
        base = faiss.downcast_index(base.index)
    return base if isinstance(base, faiss.IndexHNSW) else None


def knob_of(index) -> Optional[Tuple[str, int]]:
    """(the search knob, its largest useful value) of ``index``: ``("nprobe", nlist)`` for IVF,
    ``("efSearch", min(4096, n))`` for HNSW, None for an index with no knob (flat, PQ alone)."""
    ivf = ivf_of(index)
    if ivf is not None:
        return "nprobe", int(ivf.nlist)
    if hnsw_of(index) is not None:
        return "efSearch", int(min(MAX_EF_SEARCH, max(TUNE_K, index.ntotal)))
    return None


def apply_search_params(index, params: Optional[Dict[str, Any]]) -> None:
    """Set ``nprobe`` / ``efSearch`` (None values ignored) on ``index``, through OPQ/PCA
    pre-transforms; nprobe is clipped to [1, nlist]. Other keys are ignored."""
    if not params:
        return
    ivf = ivf_of(index)
    if params.get("nprobe") is not None and ivf is not None:
        ivf.nprobe = max(1, min(int(params["nprobe"]), int(ivf.nlist)))
    hnsw = hnsw_of(index)
    if params.get("efSearch") is not None and hnsw is not None:
        hnsw.hnsw.efSearch = max(1, int(params["efSearch"]))


def current_search_params(index) -> Dict[str, int]:
    """The knob's value now (``{}`` for an index without one)."""
    ivf = ivf_of(index)
    if ivf is not None:
        return {"nprobe": int(ivf.nprobe)}
    hnsw = hnsw_of(index)
    return {"efSearch": int(hnsw.hnsw.efSearch)} if hnsw is not None else {}


def exact_neighbours(source: VectorSource, queries: np.ndarray, k: int, chunk: int = DEFAULT_CHUNK) -> np.ndarray:
    """int64 [m, k]: the exact inner-product top-k ids of ``queries`` in ``source`` (streamed)."""
    from faiss.contrib.exhaustive_search import knn_ground_truth

    faiss = import_faiss()
    k = min(k, source.n)
    blocks = (b for _, b in source.chunks(chunk))
    _, ids = knn_ground_truth(np.ascontiguousarray(queries, dtype=np.float32), blocks, k,
                              metric_type=faiss.METRIC_INNER_PRODUCT)
    return ids


def recalls(found: np.ndarray, exact: np.ndarray) -> Dict[str, float]:
    """recall@1 and recall@k (k = exact's width) of ``found`` [m, ≥k] against ``exact`` [m, k]."""
    k = exact.shape[1]
    r1 = float(np.mean(found[:, 0] == exact[:, 0]))
    hits = sum(len(np.intersect1d(f[:k], e)) for f, e in zip(found, exact))
    return {"recall@1": r1, f"recall@{k}": float(hits) / (k * len(exact))}


def measure(index, queries: np.ndarray, exact: np.ndarray, repeat: int = 2) -> Dict[str, float]:
    """recall@1, recall@k against ``exact``, queries per second and ms per query (one batched
    search over all queries on every thread; the best of ``repeat`` runs)."""
    q = np.ascontiguousarray(queries, dtype=np.float32)
    best, ids = float("inf"), None
    for _ in range(max(1, repeat)):
        t0 = time.perf_counter()
        _, ids = index.search(q, exact.shape[1])
        best = min(best, time.perf_counter() - t0)
    out = recalls(ids, exact)
    out.update(qps=len(q) / best if best > 0 else float("inf"), ms_per_query=1000.0 * best / max(1, len(q)))
    return out


def tune(index, queries: np.ndarray, exact: np.ndarray, target: float = DEFAULT_TARGET_RECALL
         ) -> Tuple[Dict[str, int], bool, List[Dict[str, float]]]:
    """The smallest knob value whose recall@k (k = exact's width) reaches ``target``; returns
    (search params, reached, curve of every value tried). The index is left set to the choice.
    An index without a knob returns ({}, whether it reaches the target, [its measure])."""
    knob = knob_of(index)
    k = exact.shape[1]
    key = f"recall@{k}"
    curve: List[Dict[str, float]] = []

    def at(v: int) -> float:
        apply_search_params(index, {knob[0]: v} if knob else {})
        r = measure(index, queries, exact, repeat=1)
        curve.append(dict(r, **({knob[0]: v} if knob else {})))
        return r[key]

    if knob is None:
        return {}, at(0) >= target, curve
    name, top = knob
    # HNSW searches max(efSearch, k) candidates: values below k are all the same
    lo, v = (0, 1) if name == "nprobe" else (k - 1, max(16, k))
    while True:
        v = min(v, top)
        if at(v) >= target:
            break
        if v == top:
            return {name: top}, False, curve
        lo, v = v, v * 2
    hi = v  # recall(hi) ≥ target > recall(lo): bisect for the smallest such value
    while hi - lo > 1 and hi > 1:
        mid = (lo + hi) // 2
        if mid == lo:
            break
        if at(mid) >= target:
            hi = mid
        else:
            lo = mid
    apply_search_params(index, {name: hi})
    return {name: hi}, True, curve
