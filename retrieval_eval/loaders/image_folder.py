"""A generic image-folder benchmark: one directory per class.

Two layouts::

    DIR/<class>/<image>            every image a query against all the others
    DIR/query/<class>/<image>      queries ...
    DIR/gallery/<class>/<image>    ... searching a separate gallery (class names shared)

The layout is read by ``unicom.datasets.image_folder`` (shared with the trainer).
"""
from __future__ import annotations

from unicom.datasets import image_folder as reader
from unicom.datasets.image_folder import NAME, SOURCE
from unicom.datasets.registry import DATASETS

from .base import LABELLED, Benchmark, labelled_image_sets


def load(data_root, name: str = NAME, source: str = SOURCE, **_) -> Benchmark:
    """The image-folder benchmark ``name`` (``image_folder``, or ``sample`` on the sample set's
    held-out concepts), with the ks of that name (``unicom.datasets.registry``)."""
    ks = DATASETS[name].ks
    parts = reader.read(data_root, "all", name=name, source=source)
    sets, names = labelled_image_sets({s: list(zip(r.paths, r.labels)) for s, r in parts.items()})
    info = {"root": str(next(iter(parts.values())).root if "all" in parts else parts["query"].root.parent),
            "class_names": names}
    if "query" in sets:
        return Benchmark(name, LABELLED, sets["query"], sets["gallery"], ks=tuple(ks), source=source, info=info)
    return Benchmark(name, LABELLED, sets["all"], ks=tuple(ks), source=source, info=info)
