"""Google Landmarks Dataset v2, retrieval task (Weyand et al. 2020): the test images listed in
``retrieval_solution_v2.1.csv`` search the index set; mAP@100, reported for the Private
(test) and Public (validation) queries. ``Ignored`` rows are not queries. The layout is read
by ``unicom.datasets.gldv2`` (shared with the trainer, which reads its train split)."""
from __future__ import annotations

import numpy as np

from unicom.datasets import gldv2 as reader
from unicom.datasets.gldv2 import NAME, SOLUTION, SOURCE, image_path  # noqa: F401
from unicom.datasets.registry import DATASETS

from .base import GLDV2, GLDV2_MISSING, Benchmark, ImageSet


def load(data_root, **_) -> Benchmark:
    task = reader.read_retrieval(data_root)
    root, index_ids = task["root"], task["index_ids"]
    position = {x: i for i, x in enumerate(index_ids)}
    q_items, q_keys, groups, gt = [], [], [], []
    unknown = 0
    missing_per_query = []  # relevant ids absent from index.csv: they stay in the mAP@100 denominator
    for query_id, usage, images in task["queries"]:
        relevant = [position[x] for x in images if x in position]
        missing_per_query.append(sum(1 for x in images if x not in position))
        unknown += missing_per_query[-1]
        q_items.append(image_path(root / "test", query_id))
        q_keys.append(f"test/{query_id}")
        groups.append(usage)
        gt.append(np.asarray(relevant, dtype=np.int64))
    queries = ImageSet(q_items, keys=q_keys)
    gallery = ImageSet([image_path(root / "index", x) for x in index_ids], keys=[f"index/{x}" for x in index_ids])
    return Benchmark(NAME, GLDV2, queries, gallery, ks=DATASETS[NAME].ks, ground_truth=gt,
                     query_groups=np.asarray(groups), source=SOURCE,
                     info={"root": str(root), "solution": str(task["solution"]), "relevant_ids_not_in_index": unknown,
                           GLDV2_MISSING: np.asarray(missing_per_query)})
