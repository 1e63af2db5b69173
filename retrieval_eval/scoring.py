"""Embeddings + ground truth → metrics, one function per protocol.

Each function searches with ``knn.iter_search`` and reduces every chunk of results to
per-query numbers before the next chunk, so memory stays O(queries + chunk × k). It also keeps
the top results of a few chosen queries for the retrieval picture.

Search depth (``search_k``):
* labelled: max(max K, min(max R, ``max_r``)), capped by the number of candidates. MAP@R and
  R-precision use min(R, ``max_r``) for a query whose class is larger than ``max_r``
  (reported as ``queries_r_capped``; default cap 1000).
* revisitop: the whole gallery (the official numbers rank every database image).
* gldv2: 100.

``distractors`` [m, D] (optional) join the searched set after the gallery (after the queries
for all-vs-all benchmarks) as items relevant to no query; R, the revisitop lists and the GLDv2
relevant sets are unchanged, so every metric is that of the benchmark with a larger database.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np

from . import knn
from .loaders.base import GLDV2, GLDV2_MISSING, LABELLED, REVISITOP, Benchmark
from .metrics import (
    average_precision_at_k,
    average_precision_at_r,
    first_relevant_rank,
    nan_mean,
    r_precision_per_query,
    revisitop_query,
    split_ground_truth,
    summarize,
)
from .metrics.per_class import average_of_averages, per_class_means
from .options import DEFAULT_MAX_R

REVISITOP_KAPPAS = (1, 5, 10)
GLDV2_K = 100

# A searcher has ``ntotal``, ``search(xq, k) -> (scores, ids)`` and ``device_for(k)``, as
# ``knn.ExactSearcher``; an approximate one (``index_eval.IndexSearcher``) may pad ids with -1
# where the index found fewer than k results. ``make_searcher(db, device)`` builds one.
SearcherFactory = Callable[[np.ndarray, str], Any]


def exact_searcher(db: np.ndarray, device: str = "auto") -> "knn.ExactSearcher":
    """The default searcher: exact inner product over the normalised rows ``db`` [n, d]."""
    return knn.ExactSearcher(db, device=device, normalized=True)


@dataclass
class Example:
    """One query's top results for the picture: gallery indices, scores and their status
    (``pos``, ``neg`` or ``ignored``)."""

    query: int
    neighbours: List[int]
    scores: List[float]
    status: List[str]


@dataclass
class Scored:
    metrics: Dict[str, Any]
    settings: Dict[str, Any]
    examples: List[Example] = field(default_factory=list)
    per_class: Optional[List[Dict[str, Any]]] = None


def example_queries(num_queries: int, n: int) -> np.ndarray:
    """``n`` query indices spread evenly over the query set (deterministic)."""
    if n <= 0 or num_queries == 0:
        return np.zeros(0, np.int64)
    return np.unique(np.linspace(0, num_queries - 1, min(n, num_queries)).round().astype(np.int64))


def gallery_label_counts(query_labels: np.ndarray, gallery_labels: np.ndarray, exclude_self: bool) -> np.ndarray:
    """R per query: gallery items sharing the query's label (the query itself not counted)."""
    uniq, counts = np.unique(gallery_labels, return_counts=True)
    pos = np.clip(np.searchsorted(uniq, query_labels), 0, max(len(uniq) - 1, 0))
    present = (uniq[pos] == query_labels) if len(uniq) else np.zeros(len(query_labels), bool)
    r = np.where(present, counts[pos] if len(uniq) else 0, 0)
    return r - (1 if exclude_self else 0)


def searched_set(base: np.ndarray, distractors: Optional[np.ndarray]) -> np.ndarray:
    """The searched rows, L2-normalised: ``base`` followed by the distractors (if any). One copy
    is made (the concatenation, normalised in place), so a 1M database is held once here and
    once in the faiss index."""
    if distractors is None or len(distractors) == 0:
        return knn.l2_normalize(base)
    if distractors.shape[1] != base.shape[1]:
        raise ValueError(f"the distractors are {distractors.shape[1]}-dimensional but the benchmark's embeddings "
                         f"are {base.shape[1]}-dimensional: they come from another encoder")
    db = np.concatenate([np.asarray(base, np.float32), np.asarray(distractors, np.float32)])
    return knn.l2_normalize(db, copy=False)


def _collect(examples: Dict[int, Example], wanted: set, start: int, scores, ids, status_fn, k: int) -> None:
    for row in range(len(ids)):
        q = start + row
        if q in wanted:
            nb = ids[row, :k]
            examples[q] = Example(q, nb.tolist(), scores[row, :k].astype(float).tolist(), status_fn(q, nb))


def score_labelled(bench: Benchmark, q_emb: np.ndarray, g_emb: Optional[np.ndarray], ks: Sequence[int],
                   max_r: Optional[int] = DEFAULT_MAX_R, device: str = "auto", chunk_size: Optional[int] = None,
                   n_examples: int = 0, example_k: int = 8, progress: bool = False,
                   distractors: Optional[np.ndarray] = None, avg_of_avgs: bool = False,
                   make_searcher: SearcherFactory = exact_searcher) -> Scored:
    """Recall@K, MAP@R and R-precision; all-vs-all (self excluded by index) or query → gallery.
    ``avg_of_avgs`` reports the mean over classes of the per-class means instead of the mean
    over queries; the per-class records are returned either way. A result id of -1 (an
    approximate index that found fewer than k items) counts as a non-relevant item."""
    ql = bench.queries.labels
    gl = bench.search_set.labels
    exclude_self = bench.all_vs_all
    r = gallery_label_counts(ql, gl, exclude_self)
    base = q_emb if g_emb is None else g_emb
    db = searched_set(base, distractors)
    if len(db) > len(base):  # distractors carry a label no query has
        gl = np.concatenate([gl, np.full(len(db) - len(base), min(int(gl.min()), int(ql.min())) - 1)])
    n_candidates = len(gl) - (1 if exclude_self else 0)
    r_needed = int(r.max()) if len(r) else 0
    if max_r is not None:
        r_needed = min(r_needed, int(max_r))
    k = max(1, min(n_candidates, max(max(ks), r_needed, example_k if n_examples else 1)))
    first = np.empty(len(ql), np.int64)
    ap = np.empty(len(ql), np.float64)
    rp = np.empty(len(ql), np.float64)
    wanted = set(example_queries(len(ql), n_examples).tolist())
    examples: Dict[int, Example] = {}
    t0 = time.time()
    searcher = make_searcher(db, device)
    # id -1 (no result) reads this sentinel label, which no query has
    gl_lookup = np.append(gl, min(int(gl.min()), int(ql.min())) - 2)
    for start, s, i in knn.iter_search(q_emb, None, k, exclude_self=exclude_self, chunk_size=chunk_size,
                                       progress=progress, searcher=searcher):
        stop = start + len(i)
        rel = gl_lookup[i] == ql[start:stop, None]
        first[start:stop] = first_relevant_rank(rel)
        ap[start:stop] = average_precision_at_r(rel, r[start:stop], max_r)
        rp[start:stop] = r_precision_per_query(rel, r[start:stop], max_r)
        _collect(examples, wanted, start, s, i,
                 lambda q, nb: ["pos" if gl_lookup[j] == ql[q] else "neg" for j in nb], example_k)
    per_query = {f"R@{int(kk)}": (first < int(kk)).astype(np.float64) for kk in ks}
    per_query["MAP@R"], per_query["RP"] = ap, rp
    per_class = per_class_means(ql, per_query, bench.info.get("class_names"))
    if avg_of_avgs:
        metrics: Dict[str, Any] = {key: average_of_averages(per_class, key) for key in per_query}
    else:
        metrics = {key: nan_mean(v) for key, v in per_query.items()}
    metrics["queries_without_positives"] = int((r <= 0).sum())
    metrics["queries_r_capped"] = int((r > max_r).sum()) if max_r is not None else 0
    settings = {"search_k": k, "search_device": searcher.device_for(k + exclude_self), "max_r": max_r,
                "avg_of_avgs": bool(avg_of_avgs), "exclude_self": exclude_self,
                "search_seconds": round(time.time() - t0, 3)}
    return Scored(metrics, settings, [examples[q] for q in sorted(examples)], per_class)


def score_revisitop(bench: Benchmark, q_emb: np.ndarray, g_emb: np.ndarray, device: str = "auto",
                    chunk_size: Optional[int] = None, n_examples: int = 0, example_k: int = 8,
                    progress: bool = False, kappas: Sequence[int] = REVISITOP_KAPPAS,
                    distractors: Optional[np.ndarray] = None,
                    make_searcher: SearcherFactory = exact_searcher) -> Scored:
    """mAP and mP@k under the Easy/Medium/Hard protocols, ranking the whole database (gallery
    and distractors)."""
    gt = bench.ground_truth
    db = searched_set(g_emb, distractors)
    k = len(db)
    per_query: List[Dict] = [{} for _ in gt]
    wanted = set(example_queries(len(gt), n_examples).tolist())
    examples: Dict[int, Example] = {}

    def status(q, nb):
        pos, ign = split_ground_truth(gt[q], "medium")
        return ["pos" if j in set(pos.tolist()) else "ignored" if j in set(ign.tolist()) else "neg" for j in nb]

    t0 = time.time()
    searcher = make_searcher(db, device)
    for start, s, i in knn.iter_search(q_emb, None, k, chunk_size=chunk_size, progress=progress, searcher=searcher):
        for row in range(len(i)):
            per_query[start + row] = revisitop_query(i[row], gt[start + row], kappas)
        _collect(examples, wanted, start, s, i, status, example_k)
    metrics: Dict[str, Any] = {}
    for protocol, res in summarize(per_query, kappas).items():
        tag = protocol[0].upper()
        metrics[f"mAP_{tag}"] = res["mAP"]
        for kk in kappas:
            metrics[f"mP@{kk}_{tag}"] = res[f"mP@{kk}"]
        metrics[f"queries_{tag}"] = res["queries"]
    settings = {"search_k": k, "search_device": searcher.device_for(k), "search_seconds": round(time.time() - t0, 3)}
    return Scored(metrics, settings, [examples[q] for q in sorted(examples)])


def score_gldv2(bench: Benchmark, q_emb: np.ndarray, g_emb: np.ndarray, device: str = "auto",
                chunk_size: Optional[int] = None, n_examples: int = 0, example_k: int = 8, progress: bool = False,
                k: int = GLDV2_K, distractors: Optional[np.ndarray] = None,
                make_searcher: SearcherFactory = exact_searcher) -> Scored:
    """mAP@100 per query group: ``mAP@100`` for the Private (test) queries, ``mAP@100_public``.

    Relevant ids of the solution that are missing from the index (``bench.info``'s per-query
    count) stay in the denominator min(m, 100), as in the Kaggle metric: they can never be
    retrieved, so they lower the AP instead of being forgotten."""
    gt = bench.ground_truth
    missing = np.asarray(bench.info.get(GLDV2_MISSING, np.zeros(len(gt))), dtype=np.int64)
    if len(missing) != len(gt):
        raise ValueError(f"{bench.name}: {len(missing)} missing-id counts for {len(gt)} queries")
    db = searched_set(g_emb, distractors)
    depth = min(k, len(db))
    aps = np.full(len(gt), np.nan)
    wanted = set(example_queries(len(gt), n_examples).tolist())
    examples: Dict[int, Example] = {}
    t0 = time.time()
    searcher = make_searcher(db, device)
    for start, s, i in knn.iter_search(q_emb, None, max(depth, min(example_k, len(db))), chunk_size=chunk_size,
                                       progress=progress, searcher=searcher):
        for row in range(len(i)):
            q = start + row
            aps[q] = average_precision_at_k(i[row, :depth], gt[q], k, unreachable=int(missing[q]))
        _collect(examples, wanted, start, s, i,
                 lambda q, nb: ["pos" if j in set(gt[q].tolist()) else "neg" for j in nb], example_k)
    groups = bench.query_groups if bench.query_groups is not None else np.full(len(gt), "private")
    metrics: Dict[str, Any] = {}
    for group, name in (("private", f"mAP@{k}"), ("public", f"mAP@{k}_public")):
        metrics[name] = nan_mean(aps[groups == group])
        metrics[f"queries_{group}"] = int(((groups == group) & ~np.isnan(aps)).sum())
    metrics[f"mAP@{k}_all"] = nan_mean(aps)
    metrics["queries_without_relevant"] = int(np.isnan(aps).sum())
    metrics["relevant_ids_not_in_index"] = int(missing.sum())
    settings = {"search_k": depth, "search_device": searcher.device_for(depth),
                "search_seconds": round(time.time() - t0, 3)}
    return Scored(metrics, settings, [examples[q] for q in sorted(examples)])


def score(bench: Benchmark, q_emb: np.ndarray, g_emb: Optional[np.ndarray], ks: Optional[Sequence[int]] = None,
          max_r: Optional[int] = DEFAULT_MAX_R, avg_of_avgs: bool = False, **kw) -> Scored:
    """Dispatch on ``bench.protocol`` (``max_r`` and ``avg_of_avgs`` concern labelled benchmarks)."""
    if bench.protocol == LABELLED:
        return score_labelled(bench, q_emb, g_emb, ks or bench.ks, max_r=max_r, avg_of_avgs=avg_of_avgs, **kw)
    if bench.protocol == REVISITOP:
        return score_revisitop(bench, q_emb, g_emb, **kw)
    if bench.protocol == GLDV2:
        return score_gldv2(bench, q_emb, g_emb, **kw)
    raise ValueError(f"unknown protocol {bench.protocol!r}")
