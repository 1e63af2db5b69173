"""Stanford Online Products (Oh Song et al. 2016): ``Ebay_test.txt`` (11,316 classes, 60,502
images), every image a query against all the others; Recall@1/10/100/1000. The layout is read
by ``unicom.datasets.sop`` (shared with the trainer)."""
from __future__ import annotations

from unicom.datasets import sop as reader
from unicom.datasets.sop import NAME, SOURCE  # noqa: F401

from .base import LABELLED, Benchmark, ImageSet


def load(data_root, **_) -> Benchmark:
    rows = reader.read(data_root, "test")
    return Benchmark(NAME, LABELLED, ImageSet(rows.paths, labels=rows.labels), ks=(1, 10, 100, 1000), source=SOURCE,
                     info=dict(rows.info))
