"""A CSV list benchmark: rows of ``path,label,split``.

* ``split`` is ``query`` / ``gallery`` (queries search the gallery), or ``test`` (also
  ``eval``/``all``/empty: every such image a query against all the others). ``train`` rows
  are ignored. Mixing ``test`` with ``query``/``gallery`` is an error.
* A header row (``path,label,split``) is optional. Labels may be any strings.
* Relative paths are resolved against the CSV file's directory.

``--data-root`` is the CSV file, or a directory holding ``list.csv``. The file is read by
``unicom.datasets.csv_list`` (shared with the trainer, which takes the ``train`` rows).
"""
from __future__ import annotations

from unicom.datasets import csv_list as reader
from unicom.datasets.base import LabelledList
from unicom.datasets.csv_list import NAME, SOURCE  # noqa: F401
from unicom.datasets.registry import DATASETS

from .base import LABELLED, Benchmark, labelled_image_sets


def _merge_in_file_order(a: LabelledList, b: LabelledList) -> LabelledList:
    """Rows without a split are test rows for the evaluation: merge them with the ``test``
    rows, in the order of the file (the order precomputed ``--embeddings`` follow)."""
    merged = LabelledList(a.name, "all", a.root, origins=[], source=a.source, info=a.info)
    rows = [(r, i) for r in (a, b) for i in range(len(r))]
    for r, i in sorted(rows, key=lambda t: int(t[0].origin(t[1]).rsplit(":", 1)[1])):
        merged.add(r.paths[i], r.labels[i], r.origin(i))
    return merged


def load(data_root, **_) -> Benchmark:
    parts = reader.read(data_root)
    path = reader.locate(data_root)
    rows = {"query": parts["query"], "gallery": parts["gallery"], "all": _merge_in_file_order(parts["all"], parts[""])}
    if len(rows["all"]) and (len(rows["query"]) or len(rows["gallery"])):
        raise ValueError(f"{path}: mixes 'test' rows with 'query'/'gallery' rows; use one scheme")
    if not len(rows["all"]) and not (len(rows["query"]) and len(rows["gallery"])):
        raise ValueError(f"{path}: no evaluation rows (need 'test' rows, or both 'query' and 'gallery' rows)")
    order = ["all"] if len(rows["all"]) else ["query", "gallery"]
    sets, names = labelled_image_sets({k: list(zip(rows[k].paths, rows[k].labels)) for k in order})
    info = {"list": str(path), "class_names": names}
    if len(rows["all"]):
        return Benchmark(NAME, LABELLED, sets["all"], ks=DATASETS[NAME].ks, source=SOURCE, info=info)
    return Benchmark(NAME, LABELLED, sets["query"], sets["gallery"], ks=DATASETS[NAME].ks, source=SOURCE,
                     info=info)
