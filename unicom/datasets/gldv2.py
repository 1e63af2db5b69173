"""Google Landmarks Dataset v2 (Weyand et al. 2020).

* ``train``: ``train_clean.csv`` (``landmark_id,images``: the cleaned subset, 1.6M images of
  81k landmarks, the usual retrieval training set) or, without it, ``train.csv``
  (``id,url,landmark_id``, 4.1M images); the landmark id is the label.
* the retrieval task (``read_retrieval``): the test images listed in
  ``retrieval_solution_v2.1.csv`` search the index set (``index.csv``); ``Ignored`` rows are
  not queries.

Official layout (https://github.com/cvdfoundation/google-landmark)::

    train_clean.csv / train.csv   (also accepted in train/)
    retrieval_solution_v2.1.csv   id,images,Usage   (images: space-separated index ids; may sit in test/)
    index.csv                     id,...            (may sit in index/)
    {train,index,test}/<a>/<b>/<c>/<id>.jpg         (a, b, c = the id's first three characters)
"""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Any, Dict, List

from .base import LabelledList, LayoutError, find_dataset_dir, missing_file_error

NAME = "gldv2"
SOURCE = ("Google Landmarks Dataset v2, https://github.com/cvdfoundation/google-landmark (train/, index/ and test/ "
          "image tars, train_clean.csv or train.csv, index.csv, and the retrieval ground truth "
          "retrieval_solution_v2.1.csv)")
SOLUTION = "retrieval_solution_v2.1.csv"
TRAIN_LISTS = ("train_clean.csv", "train/train_clean.csv", "train.csv", "train/train.csv")
SUBDIRS = ["gldv2", "GLDv2", "google-landmark"]


def image_path(base: Path, image_id: str) -> str:
    """``base/a/b/c/<id>.jpg``, the official nesting by the id's first three characters."""
    return str(base / image_id[0] / image_id[1] / image_id[2] / f"{image_id}.jpg")


def _read_csv(path: Path, columns=("id",)) -> List[dict]:
    """All rows of ``path`` as dicts; a file that is not CSV text, or lacks one of ``columns``,
    is a one-line ``LayoutError`` naming it."""
    try:
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            rows = list(reader)
    except (csv.Error, UnicodeDecodeError) as exc:
        raise LayoutError(f"{path}: cannot read this CSV ({exc})") from exc
    absent = [c for c in columns if c not in (reader.fieldnames or [])]
    if absent:
        raise LayoutError(f"{path}: no column {', '.join(absent)} in its header; is it the GLDv2 file?")
    return rows


def read(data_root, split: str = "train") -> LabelledList:
    """The training images with their int landmark ids (``train_clean.csv`` preferred)."""
    if split != "train":
        raise ValueError(f"{NAME}: split {split!r} has no label list; the test split is read with read_retrieval")
    root, marker = find_dataset_dir(data_root, list(TRAIN_LISTS), SUBDIRS, NAME, SOURCE)
    images = root / "train"
    out = LabelledList(NAME, split, root, origins=[], source=SOURCE, info={"split": marker, "root": str(root)})
    with open(root / marker, newline="") as f:
        for n, row in enumerate(csv.DictReader(f), start=2):
            landmark = (row.get("landmark_id") or "").strip()
            if not landmark.isdigit():
                raise LayoutError(f"{root / marker}:{n}: landmark_id {landmark!r} is not an integer")
            ids = (row.get("images") or "").split() if "images" in row else [(row.get("id") or "").strip()]
            for image_id in ids:
                if len(image_id) < 3:
                    raise LayoutError(f"{root / marker}:{n}: image id {image_id!r} is too short")
                out.add(image_path(images, image_id), int(landmark), f"{root / marker}:{n}")
    return out


def read_retrieval(data_root) -> Dict[str, Any]:
    """The retrieval task: ``{"root", "solution", "index_ids", "queries": [(id, usage, [index ids])]}``
    with the ``Ignored`` rows left out."""
    root, marker = find_dataset_dir(data_root, [SOLUTION, f"test/{SOLUTION}"], SUBDIRS, NAME, SOURCE)
    index_csv = next((p for p in (root / "index.csv", root / "index" / "index.csv") if p.is_file()), None)
    if index_csv is None:
        raise missing_file_error(NAME, [root / "index.csv", root / "index" / "index.csv"], SOURCE)
    queries = []
    for row in _read_csv(root / marker, ("id", "images", "Usage")):
        usage = (row.get("Usage") or "").strip().lower()
        if usage in ("public", "private"):
            queries.append((row["id"], usage, (row.get("images") or "").split()))
    return {"root": root, "solution": root / marker, "index_ids": [row["id"] for row in _read_csv(index_csv)],
            "queries": queries}
