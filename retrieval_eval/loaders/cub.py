"""CUB-200-2011 (Wah et al. 2011): test split = classes 101–200, every image a query against
all the others. The layout is read by ``unicom.datasets.cub`` (shared with the trainer)."""
from __future__ import annotations

from unicom.datasets import cub as reader
from unicom.datasets.cub import NAME, SOURCE  # noqa: F401

from .base import LABELLED, Benchmark, ImageSet


def load(data_root, **_) -> Benchmark:
    rows = reader.read(data_root, "test")
    return Benchmark(NAME, LABELLED, ImageSet(rows.paths, labels=rows.labels), ks=(1, 2, 4, 8), source=SOURCE,
                     info={"split": "test classes 101-200", "root": str(rows.root)})
