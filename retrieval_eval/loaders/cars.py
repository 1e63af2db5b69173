"""Cars196 / Stanford Cars (Krause et al. 2013): test split = classes 99–196, every image a query
against all the others. Bounding boxes are not used. The layout is read by
``unicom.datasets.cars`` (shared with the trainer)."""
from __future__ import annotations

from unicom.datasets import cars as reader
from unicom.datasets.cars import NAME, SOURCE, read_annotations  # noqa: F401

from .base import LABELLED, Benchmark, ImageSet


def load(data_root, **_) -> Benchmark:
    rows = reader.read(data_root, "test")
    return Benchmark(NAME, LABELLED, ImageSet(rows.paths, labels=rows.labels), ks=(1, 2, 4, 8), source=SOURCE,
                     info={"split": "test classes 99-196", "root": str(rows.root)})
