"""Per-class figures and their mean over classes (pytorch-metric-learning's ``avg_of_avgs``).

Each class's value is the mean over its queries that have a value (NaN entries, e.g. MAP@R of
a query without positives, are left out); the average of averages is the mean over the
classes that have a value.
"""
from __future__ import annotations

from typing import Dict, List, Mapping, Optional, Sequence

import numpy as np


def per_class_means(labels: np.ndarray, values: Mapping[str, np.ndarray],
                    names: Optional[Sequence] = None) -> List[Dict]:
    """One record per class (sorted by label): ``label``, ``name`` (when ``names`` is given),
    ``queries`` and the class mean of every per-query array in ``values`` (None where no query
    of the class has a value)."""
    labels = np.asarray(labels)
    uniq, inverse = np.unique(labels, return_inverse=True)
    out = []
    for c, label in enumerate(uniq):
        rows = inverse == c
        rec: Dict = {"label": int(label)}
        if names is not None and 0 <= int(label) < len(names):
            rec["name"] = str(names[int(label)])
        rec["queries"] = int(rows.sum())
        for key, arr in values.items():
            v = np.asarray(arr, dtype=np.float64)[rows]
            v = v[~np.isnan(v)]
            rec[key] = float(v.mean()) if v.size else None
        out.append(rec)
    return out


def average_of_averages(records: Sequence[Mapping], key: str) -> float:
    """Mean of ``key`` over the per-class records that have a value; NaN when none has."""
    v = np.array([r[key] for r in records if r.get(key) is not None], dtype=np.float64)
    return float(v.mean()) if v.size else float("nan")
