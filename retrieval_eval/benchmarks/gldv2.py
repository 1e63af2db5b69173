"""Google Landmarks Dataset v2, retrieval task (Weyand et al. 2020): the test images listed in
``retrieval_solution_v2.1.csv`` search the index set; mAP@100, reported for the Private
(test) and Public (validation) queries. ``Ignored`` rows are not queries.

Official layout (https://github.com/cvdfoundation/google-landmark)::

    retrieval_solution_v2.1.csv   id,images,Usage   (images: space-separated index ids)
    index.csv                     id,...            (the index image ids)
    index/<a>/<b>/<c>/<id>.jpg    (a, b, c = the id's first three characters)
    test/<a>/<b>/<c>/<id>.jpg

``retrieval_solution_v2.1.csv`` may also sit in ``test/`` and ``index.csv`` in ``index/``.
"""
from __future__ import annotations

import csv
from pathlib import Path
from typing import List

import numpy as np

from .base import GLDV2, Benchmark, ImageSet, find_dataset_dir, missing_file_error

NAME = "gldv2"
SOURCE = ("Google Landmarks Dataset v2, https://github.com/cvdfoundation/google-landmark (index/ and test/ "
          "image tars, index.csv, and the retrieval ground truth retrieval_solution_v2.1.csv)")
SOLUTION = "retrieval_solution_v2.1.csv"


def image_path(base: Path, image_id: str) -> str:
    return str(base / image_id[0] / image_id[1] / image_id[2] / f"{image_id}.jpg")


def _read_csv(path: Path, columns=("id",)) -> List[dict]:
    try:
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            rows = list(reader)
    except (csv.Error, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: cannot read this CSV ({exc})") from exc
    absent = [c for c in columns if c not in (reader.fieldnames or [])]
    if absent:
        raise ValueError(f"{path}: no column {', '.join(absent)} in its header; is it the GLDv2 file?")
    return rows


def load(data_root, **_) -> Benchmark:
    root, marker = find_dataset_dir(data_root, [SOLUTION, f"test/{SOLUTION}"], ["gldv2", "GLDv2", "google-landmark"],
                                    NAME, SOURCE)
    index_csv = next((p for p in (root / "index.csv", root / "index" / "index.csv") if p.is_file()), None)
    if index_csv is None:
        raise missing_file_error(NAME, [root / "index.csv", root / "index" / "index.csv"], SOURCE)
    index_ids = [row["id"] for row in _read_csv(index_csv)]
    position = {x: i for i, x in enumerate(index_ids)}
    q_items, q_keys, groups, gt = [], [], [], []
    unknown = 0
    missing_per_query = []  # relevant ids absent from index.csv: they stay in the mAP@100 denominator
    for row in _read_csv(root / marker, ("id", "images", "Usage")):
        usage = (row.get("Usage") or "").strip().lower()
        if usage not in ("public", "private"):
            continue
        relevant = [position[x] for x in (row.get("images") or "").split() if x in position]
        missing_per_query.append(sum(1 for x in (row.get("images") or "").split() if x not in position))
        unknown += missing_per_query[-1]
        q_items.append(image_path(root / "test", row["id"]))
        q_keys.append(f"test/{row['id']}")
        groups.append(usage)
        gt.append(np.asarray(relevant, dtype=np.int64))
    queries = ImageSet(q_items, keys=q_keys)
    gallery = ImageSet([image_path(root / "index", x) for x in index_ids], keys=[f"index/{x}" for x in index_ids])
    return Benchmark(NAME, GLDV2, queries, gallery, ks=(100,), ground_truth=gt, query_groups=np.asarray(groups),
                     source=SOURCE, info={"root": str(root), "solution": str(root / marker),
                                          "relevant_ids_not_in_index": unknown,
                                          "relevant_ids_not_in_index_per_query": np.asarray(missing_per_query)})
