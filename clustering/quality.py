"""Agreement of pseudo labels with ground truth: purity and NMI, computed by scikit-learn.

The clustering gathers a ``{(cluster, truth): count}`` mapping from every rank (a few bytes per
distinct pair, whatever the number of samples), so the report starts from counts. scikit-learn's
``contingency_matrix`` and ``normalized_mutual_info_score`` take aligned label arrays, so the
counts are expanded back into one int32 code per labelled sample (8 bytes a sample) just for
this call.
"""
from __future__ import annotations

from collections import Counter
from typing import Dict, Hashable, Mapping, Tuple

import numpy as np
from sklearn.metrics import normalized_mutual_info_score
from sklearn.metrics.cluster import contingency_matrix


def label_codes(pairs: Mapping[Tuple[int, Hashable], int]) -> Tuple[np.ndarray, np.ndarray]:
    """Two aligned int32 arrays ``(cluster_codes, truth_codes)`` of length sum(counts), one
    entry per labelled sample, from a {(cluster, truth): count} mapping. Truth values may be of
    any hashable type (names or ids); they are ordered by ``str`` so that mixed types sort."""
    items = [(c, t, n) for (c, t), n in pairs.items() if n > 0]
    truths = sorted({t for _, t, _ in items}, key=str)
    ti = {t: i for i, t in enumerate(truths)}
    counts = np.fromiter((n for _, _, n in items), np.int64, len(items))
    clusters = np.fromiter((c for c, _, _ in items), np.int64, len(items))
    truth = np.fromiter((ti[t] for _, t, _ in items), np.int64, len(items))
    return (np.repeat(clusters, counts).astype(np.int32, copy=False),
            np.repeat(truth, counts).astype(np.int32, copy=False))


def agreement(pairs: Mapping[Tuple[int, Hashable], int]) -> Dict[str, float]:
    """Purity, NMI and sizes from a {(cluster, truth): count} mapping.

    purity: fraction of samples whose cluster's majority truth class is their own;
    nmi: scikit-learn's ``normalized_mutual_info_score`` (arithmetic normalisation,
    I(U;V) / mean(H(U), H(V)); 1.0 when both partitions are trivial and equal).
    NaN for both when no sample has a truth value."""
    clusters, truth = label_codes(pairs)
    if len(clusters) == 0:
        return {"purity": float("nan"), "nmi": float("nan"), "samples_with_truth": 0,
                "truth_classes": 0, "clusters_with_truth": 0}
    m = contingency_matrix(clusters, truth, sparse=True)  # [clusters, truth classes], only those that occur
    return {"purity": float(m.max(axis=1).sum() / len(clusters)),
            "nmi": float(normalized_mutual_info_score(truth, clusters)),
            "samples_with_truth": int(len(clusters)),
            "truth_classes": int(m.shape[1]), "clusters_with_truth": int(m.shape[0])}


def pairs_from_labels(labels, truth) -> Counter:
    """The {(cluster, truth): count} mapping of two aligned label sequences."""
    return Counter(zip((int(x) for x in labels), truth))
