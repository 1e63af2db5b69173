"""Brute-force references, written independently of retrieval_eval: full float64 score
matrices, Python sorting with the documented tie rule (score descending, then index ascending)
and metric formulas spelled out loop by loop."""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence

import numpy as np


def unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def rankings(queries: np.ndarray, gallery: Optional[np.ndarray] = None) -> List[List[int]]:
    """Every gallery index per query in rank order; without a gallery the query itself is left out."""
    q = unit(queries)
    g = q if gallery is None else unit(gallery)
    scores = q @ g.T
    out = []
    for i in range(len(q)):
        cands = [j for j in range(len(g)) if gallery is not None or j != i]
        out.append(sorted(cands, key=lambda j: (-scores[i, j], j)))
    return out


def recall(order: List[List[int]], ql, gl, k: int) -> float:
    hits = 0
    for i, row in enumerate(order):
        if any(gl[j] == ql[i] for j in row[:k]):
            hits += 1
    return hits / len(order)


def ap_rp_per_query(order, ql, gl, self_excluded: bool, max_r: Optional[int] = None):
    """(AP@R, R-precision) per query, NaN where R = 0."""
    aps, rps = [], []
    for i, row in enumerate(order):
        r = sum(1 for lab in gl if lab == ql[i]) - (1 if self_excluded else 0)
        if max_r is not None:
            r = min(r, max_r)
        if r <= 0:
            aps.append(np.nan)
            rps.append(np.nan)
            continue
        found, ap = 0, 0.0
        for pos in range(r):
            if gl[row[pos]] == ql[i]:
                found += 1
                ap += found / (pos + 1)
        aps.append(ap / r)
        rps.append(found / r)
    return np.array(aps), np.array(rps)


def map_at_r(order, ql, gl, self_excluded: bool, max_r: Optional[int] = None):
    aps, rps = ap_rp_per_query(order, ql, gl, self_excluded, max_r)
    return float(np.nanmean(aps)), float(np.nanmean(rps))


def labelled_metrics(queries, ql, gallery=None, gl=None, ks: Sequence[int] = (1, 2, 4, 8), max_r=None) -> Dict:
    order = rankings(queries, gallery)
    gl = ql if gallery is None else gl
    out = {f"R@{k}": recall(order, ql, gl, k) for k in ks}
    out["MAP@R"], out["RP"] = map_at_r(order, ql, gl, gallery is None, max_r)
    return out


def revisitop_ap_official_style(ranking, positives, junk) -> float:
    """AP as the revisitop code computes it: positions in the full list, each lowered by the
    number of junk items ranked before it, then the trapezoid per positive."""
    ranking = list(ranking)
    pos = [p for p, x in enumerate(ranking) if x in set(positives)]
    junk_pos = [p for p, x in enumerate(ranking) if x in set(junk)]
    adjusted = [p - sum(1 for jp in junk_pos if jp < p) for p in pos]
    ap = 0.0
    for j, rank in enumerate(adjusted):
        p0 = 1.0 if rank == 0 else j / rank
        p1 = (j + 1) / (rank + 1)
        ap += (p0 + p1) / 2 / len(positives)
    return ap


def ap_at_k(ranking, relevant, k=100) -> float:
    rel = np.isin(np.asarray(ranking)[:k], list(relevant)).astype(float)
    prec = np.cumsum(rel) / np.arange(1, len(rel) + 1)
    return float((prec * rel).sum() / min(len(relevant), k))
