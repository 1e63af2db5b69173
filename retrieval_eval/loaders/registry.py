"""Benchmark names → loaders. ``load_benchmark(name, data_root)`` returns a ``Benchmark``.

Names, aliases, ks and splits are declared once, in ``unicom.datasets.registry`` (shared with
``unicom-train --dataset``). The official labelled layouts (CUB, Cars196, SOP, In-Shop,
iNaturalist) need no code of their own here: ``load_labelled`` builds their ``Benchmark`` from
the ``unicom.datasets`` reader of the layout (the trainer reads the train split with the same
code). The others have a module each: revisitop, gldv2, image_folder, csv_list, sample, digits.
"""
from __future__ import annotations

import csv
import pickle
from functools import partial
from typing import Callable, Dict, List

from unicom.datasets import cars, cub, inaturalist, inshop, sop
from unicom.datasets.registry import DATASETS, DatasetSpec, benchmark_names, canonical_name

from . import csv_list, digits, gldv2, image_folder, revisitop, sample
from .base import LABELLED, Benchmark, ImageSet, labelled_image_sets

READERS = {m.NAME: m for m in (cub, cars, sop, inshop, inaturalist)}


def load_labelled(spec: DatasetSpec, data_root, **_) -> Benchmark:
    """An official labelled layout's evaluation split: the ``test`` split, every image a query
    against all the others, or (``spec.query_gallery``) the ``query`` images searching the
    ``gallery`` (one label numbering across both)."""
    reader = READERS[spec.name]
    if spec.query_gallery:
        parts = {s: reader.read(data_root, s) for s in ("query", "gallery")}
        sets, _ = labelled_image_sets({s: list(zip(r.paths, r.labels)) for s, r in parts.items()})
        return Benchmark(spec.name, LABELLED, sets["query"], sets["gallery"], ks=spec.ks, source=reader.SOURCE,
                         info={"split": spec.eval_split, "root": str(parts["query"].root)})
    rows = reader.read(data_root, "test")
    info = {"split": spec.eval_split, "root": str(rows.root)} if spec.eval_split else dict(rows.info)
    return Benchmark(spec.name, LABELLED, ImageSet(rows.paths, labels=rows.labels), ks=spec.ks, source=reader.SOURCE,
                     info=info)


LOADERS: Dict[str, Callable[..., Benchmark]] = {
    **{name: partial(load_labelled, DATASETS[name]) for name in READERS},
    "roxford5k": partial(revisitop.load, name="roxford5k"),
    "rparis6k": partial(revisitop.load, name="rparis6k"),
    "gldv2": gldv2.load,
    "image_folder": image_folder.load,
    "csv": csv_list.load,
    "sample": sample.load,
    "digits": digits.load,
}


class BenchmarkReadError(ValueError):
    """A benchmark's files exist but cannot be parsed (the message names the benchmark and root)."""


def available_benchmarks() -> List[str]:
    """The benchmark names ``load_benchmark`` accepts (aliases aside)."""
    return benchmark_names()


def load_benchmark(name: str, data_root=None, **options) -> Benchmark:
    """Load benchmark ``name`` (or an alias of it) from ``data_root`` (its official downloaded layout)."""
    key = canonical_name(name)
    if key not in LOADERS:
        raise ValueError(f"unknown benchmark {name!r}; available: {', '.join(benchmark_names())}")
    try:
        return LOADERS[key](data_root, **options)
    except (pickle.UnpicklingError, EOFError, csv.Error, KeyError, IndexError) as exc:
        # the last net under every reader: a malformed file is a one-line error, not a traceback
        raise BenchmarkReadError(f"{key}: cannot read the benchmark's files under {data_root} "
                                 f"({type(exc).__name__}: {exc})") from exc
