"""Retrieval metrics on plain numpy arrays (no faiss, no torch), usable on their own.

Every function takes a *ranking*: for each query, the gallery items in rank order (best first),
given either as their labels (``neighbour_labels`` [Q, k]) or as their indices (``ranking``
[Q, k]). Self-matches must already be gone from the ranking (``retrieval_eval.knn`` removes
them by index). Definitions follow ``docs/evaluation.md`` ("Metric definitions").
"""
from .map_at_k import average_precision_at_k, map_at_k
from .map_at_r import average_precision_at_r, map_at_r, nan_mean, r_precision, r_precision_per_query
from .recall import first_relevant_rank, recall_at_k, relevance
from .revisitop_map import (
                            PROTOCOLS,
                            revisitop_average_precision,
                            revisitop_map,
                            revisitop_precision_at_k,
                            revisitop_query,
                            split_ground_truth,
                            summarize,
)

__all__ = [
    "relevance", "first_relevant_rank", "recall_at_k",
    "average_precision_at_r", "map_at_r", "r_precision", "r_precision_per_query", "nan_mean",
    "average_precision_at_k", "map_at_k",
    "PROTOCOLS", "split_ground_truth", "revisitop_average_precision", "revisitop_precision_at_k", "revisitop_query",
    "revisitop_map", "summarize",
]
