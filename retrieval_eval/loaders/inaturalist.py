"""iNaturalist 2018 retrieval (Brown et al., Smooth-AP, 2020): the test split file
``Inaturalist_test_set1.txt`` (2,452 species, 136,093 images; the 5,690 training species are
disjoint), every image a query against all the others. Recall@1/4/16/32, the Ks every paper on
this split reports. The layout is read by ``unicom.datasets.inaturalist`` (shared with the
trainer)."""
from __future__ import annotations

from unicom.datasets import inaturalist as reader
from unicom.datasets.inaturalist import NAME, SOURCE, SPLIT_FILE  # noqa: F401

from .base import LABELLED, Benchmark, ImageSet


def load(data_root, **_) -> Benchmark:
    rows = reader.read(data_root, "test")
    return Benchmark(NAME, LABELLED, ImageSet(rows.paths, labels=rows.labels), ks=(1, 4, 16, 32), source=SOURCE,
                     info={"split": SPLIT_FILE, "root": str(rows.root)})
