"""mAP@k as in the Google Landmarks v2 retrieval challenge (k = 100):

    AP@k(q) = (1 / min(m_q, k)) · Σ_{i ≤ k} P(i) · rel(i)

where m_q is the number of index images relevant to q, P(i) the precision over the first i
results and rel(i) = 1 when the i-th result is relevant. A result listed twice counts once.
As in the Kaggle metric, m_q counts every relevant id of the solution, including ids that are
not in the index (``unreachable``): they can never be retrieved and lower the AP. Queries with
m_q = 0 have no value (NaN) and are left out of the mean.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from .map_at_r import nan_mean


def average_precision_at_k(ranking: Sequence[int], relevant: Sequence[int], k: int = 100,
                           unreachable: int = 0) -> float:
    """AP@k of one ranked list of gallery indices against the set of relevant indices, plus
    ``unreachable`` relevant items that are not in the gallery (they count in m_q only)."""
    relevant_set = set(int(x) for x in relevant)
    if not relevant_set and unreachable <= 0:
        return float("nan")
    seen, hits, total = set(), 0, 0.0
    for i, idx in enumerate(list(ranking)[:k], start=1):
        idx = int(idx)
        if idx in relevant_set and idx not in seen:
            hits += 1
            total += hits / i
        seen.add(idx)
    return total / min(len(relevant_set) + max(int(unreachable), 0), k)


def map_at_k(ranking: np.ndarray, relevant: Sequence[Sequence[int]], k: int = 100) -> float:
    """Mean AP@k over the queries that have at least one relevant gallery item.

    ``ranking`` [Q, ≥k] holds gallery indices best first; ``relevant[q]`` the relevant ones.
    """
    if len(ranking) != len(relevant):
        raise ValueError(f"{len(ranking)} ranked lists but {len(relevant)} ground-truth sets")
    return nan_mean([average_precision_at_k(r, g, k) for r, g in zip(ranking, relevant)])
