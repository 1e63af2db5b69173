"""DeepFashion In-Shop Clothes Retrieval (Liu et al. 2016): the ``query`` images of
``list_eval_partition.txt`` search the ``gallery`` images; labels are item ids.
Recall@1/10/20/30. The layout is read by ``unicom.datasets.inshop`` (shared with the trainer)."""
from __future__ import annotations

from unicom.datasets import inshop as reader
from unicom.datasets.inshop import NAME, SOURCE  # noqa: F401

from .base import LABELLED, Benchmark, labelled_image_sets


def load(data_root, **_) -> Benchmark:
    parts = {s: reader.read(data_root, s) for s in ("query", "gallery")}
    sets, _ = labelled_image_sets({s: list(zip(r.paths, r.labels)) for s, r in parts.items()})
    return Benchmark(NAME, LABELLED, sets["query"], sets["gallery"], ks=(1, 10, 20, 30), source=SOURCE,
                     info={"split": "list_eval_partition.txt query/gallery", "root": str(parts["query"].root)})
