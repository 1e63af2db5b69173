"""What a loaded benchmark is (image sets plus ground truth). The layout helpers (finding the
dataset directory, the error a missing file raises) come from ``unicom.datasets``."""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

# The layout helpers live with the readers in unicom.datasets (shared with the trainer).
from unicom.datasets.base import (  # noqa: F401
    IMAGE_EXTENSIONS,
    DatasetNotFoundError,
    encode_labels,
    find_dataset_dir,
    list_images,
    missing_file_error,
    require_file,
)

LABELLED = "labelled"     # class labels: Recall@K, MAP@R, R-precision
REVISITOP = "revisitop"   # easy/hard/junk lists: mAP (Easy/Medium/Hard), mP@k
GLDV2 = "gldv2"           # relevant index images per query: mAP@100
PROTOCOLS = (LABELLED, REVISITOP, GLDV2)

# ``Benchmark.info`` entries that hold one value per query: ``Benchmark.subset`` keeps their
# rows of the kept queries. GLDV2_MISSING: relevant ids of the solution absent from the index.
GLDV2_MISSING = "relevant_ids_not_in_index_per_query"
PER_QUERY_INFO = (GLDV2_MISSING,)

Box = Tuple[float, float, float, float]
Item = Any  # a path (str), an in-memory PIL image, or None when only embeddings exist


class UnreadableDataError(RuntimeError):
    """No usable image is left (none could be read, or all were skipped)."""


def labelled_image_sets(parts: Dict[str, Sequence[Tuple[str, Any]]]) -> Tuple[Dict[str, "ImageSet"], List[Any]]:
    """``{split: [(path, raw label)]}`` → ``{split: ImageSet}`` with one label numbering shared by
    every split (so a query's label means the same class in the gallery), plus the class names."""
    ids, names = encode_labels([label for rows in parts.values() for _, label in rows])
    sets, start = {}, 0
    for split, rows in parts.items():
        sets[split] = ImageSet([p for p, _ in rows], labels=ids[start:start + len(rows)])
        start += len(rows)
    return sets, names


@dataclass
class ImageSet:
    """An ordered set of images: ``items`` (paths, in-memory PIL images, or None when only
    embeddings exist), optional int ``labels`` [n], ``keys`` (stable names: the path, or a
    tag for in-memory images) and optional crop ``boxes`` (x1, y1, x2, y2) per item."""

    items: List[Item]
    labels: Optional[np.ndarray] = None
    keys: Optional[List[str]] = None
    boxes: Optional[List[Optional[Box]]] = None

    def __post_init__(self):
        n = len(self.items)
        if self.labels is not None:
            self.labels = np.asarray(self.labels, dtype=np.int64)
            if self.labels.shape != (n,):
                raise ValueError(f"labels shape {self.labels.shape} does not match {n} items")
        if self.keys is None:
            self.keys = [str(x) if isinstance(x, (str, Path)) else f"#{i}" for i, x in enumerate(self.items)]
        if len(self.keys) != n or (self.boxes is not None and len(self.boxes) != n):
            raise ValueError("keys and boxes must have one entry per item")

    def __len__(self) -> int:
        return len(self.items)

    @property
    def has_images(self) -> bool:
        return any(x is not None for x in self.items)

    def subset(self, keep: np.ndarray) -> "ImageSet":
        """The items where the boolean mask ``keep`` is true, in order."""
        idx = np.flatnonzero(keep)
        return ImageSet(items=[self.items[i] for i in idx],
                        labels=None if self.labels is None else self.labels[idx],
                        keys=[self.keys[i] for i in idx],
                        boxes=None if self.boxes is None else [self.boxes[i] for i in idx])


def _remap(ids: Any, new_index: np.ndarray) -> np.ndarray:
    ids = np.asarray(ids, dtype=np.int64).ravel()
    mapped = new_index[ids] if ids.size else ids
    return mapped[mapped >= 0]


@dataclass
class Benchmark:
    """A loaded retrieval benchmark.

    * ``protocol``: ``labelled`` (class labels), ``revisitop`` or ``gldv2``.
    * ``gallery=None``: every query searches all the other queries (itself excluded by index).
    * ``ground_truth`` (revisitop): per query a dict of ``easy``/``hard``/``junk`` gallery indices;
      (gldv2): per query an int array of relevant gallery indices.
    * ``query_groups`` (gldv2): per query ``"public"`` or ``"private"``.
    * ``source``: where the benchmark is obtained (used in error messages and the report).
    """

    name: str
    protocol: str
    queries: ImageSet
    gallery: Optional[ImageSet] = None
    ks: Tuple[int, ...] = (1, 2, 4, 8)
    ground_truth: Optional[List[Any]] = None
    query_groups: Optional[np.ndarray] = None
    source: str = ""
    info: Dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"unknown protocol {self.protocol!r}; expected one of {PROTOCOLS}")
        if self.protocol == LABELLED:
            for s in (self.queries, self.gallery):
                if s is not None and s.labels is None:
                    raise ValueError(f"{self.name}: a labelled benchmark needs labels on every image set")
        else:
            if self.gallery is None or self.ground_truth is None or len(self.ground_truth) != len(self.queries):
                raise ValueError(f"{self.name}: {self.protocol} needs a gallery and one ground-truth entry per query")

    @property
    def all_vs_all(self) -> bool:
        return self.gallery is None

    @property
    def search_set(self) -> ImageSet:
        """The set that is searched: the gallery, or the queries themselves."""
        return self.queries if self.gallery is None else self.gallery

    def sizes(self) -> Dict[str, Any]:
        out: Dict[str, Any] = {"queries": len(self.queries),
                               "gallery": len(self.search_set),
                               "all_vs_all": self.all_vs_all}
        if self.protocol == LABELLED:
            labels = [self.queries.labels] + ([] if self.gallery is None else [self.gallery.labels])
            out["classes"] = int(len(np.unique(np.concatenate(labels)))) if len(self.search_set) else 0
        return out

    def subset(self, query_keep: np.ndarray, gallery_keep: Optional[np.ndarray] = None) -> "Benchmark":
        """The benchmark restricted to the kept queries and gallery items; ground-truth indices
        are renumbered, dropped gallery items leave every ground-truth list, and the per-query
        ``info`` entries (``PER_QUERY_INFO``) keep the kept queries' rows."""
        query_keep = np.asarray(query_keep, dtype=bool)
        queries = self.queries.subset(query_keep)
        info = {**self.info, **{key: np.asarray(self.info[key])[query_keep] for key in PER_QUERY_INFO
                                if key in self.info}}
        if self.gallery is None:
            return replace(self, queries=queries, info=info)
        gallery_keep = np.ones(len(self.gallery), bool) if gallery_keep is None else np.asarray(gallery_keep, bool)
        new_index = np.full(len(self.gallery), -1, np.int64)
        new_index[gallery_keep] = np.arange(int(gallery_keep.sum()))
        gt = None
        if self.ground_truth is not None:
            kept = [g for g, k in zip(self.ground_truth, query_keep) if k]
            if self.protocol == REVISITOP:
                gt = [{**g, **{key: _remap(g.get(key, ()), new_index) for key in ("easy", "hard", "junk")}}
                      for g in kept]
            else:
                gt = [_remap(g, new_index) for g in kept]
        groups = None if self.query_groups is None else self.query_groups[query_keep]
        return replace(self, queries=queries, gallery=self.gallery.subset(gallery_keep), ground_truth=gt,
                       query_groups=groups, info=info)
