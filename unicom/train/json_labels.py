"""Labels read from each shard sample's json (``unicom-train --dataset shards --label-key FIELD``),
e.g. ``concept_id`` on the sample set: supervised training on shards without ``make cluster``.

The labels are class ids (integers ≥ 0, or strings of digits) or class names (``"dog"``),
numbered in sorted order (``classes.py``; ``classes.json`` keeps the mapping). Unless both
``data.num_classes`` and ``data.samples_per_epoch`` are set (class ids only, or a resumed run's
saved names), the shards are scanned once before training (tar members read, images not
decoded) to count the classes and the labelled samples and to check every label: a label that
is neither, or a field mixing ids and names, is an error naming the shard and key. While
training, a sample without the field is skipped as ``no_label``, and a label outside the head
(≥ ``num_classes``, or a name the run does not know) is an error naming it.
"""
from __future__ import annotations

import json
from collections import Counter
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from ..data.shards import shard_name
from ..data.wds_reader import Skipped, iter_raw
from .classes import INT, NAME, KindTracker, as_id, label_kind, map_names


def _parse(raw: Dict[str, Any], field: str) -> Any:
    data = raw.get("json")
    if data is None:
        return None
    try:
        meta = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return None
    return meta.get(field) if isinstance(meta, dict) else None


class JsonLabels:
    """Per-sample labels from the json field ``field``; the ``LabelIndex`` interface that
    ``data.TrainStream`` uses (``label_for``, ``num_classes``, ``class_sizes``). ``names`` (class
    names by id) is set when the labels are names, None when they are class ids."""

    def __init__(self, field: str, num_classes: int, class_sizes: Optional[np.ndarray] = None,
                 names: Optional[Sequence[Optional[str]]] = None):
        self.field = field
        self.num_classes = int(num_classes)
        self.class_sizes = class_sizes if class_sizes is not None else np.zeros(self.num_classes, np.int64)
        self.names = list(names) if names is not None else None
        self._lookup = {n: i for i, n in enumerate(self.names) if n is not None} if self.names is not None else None

    def label_for(self, raw: Dict[str, Any], shard: str, key: str) -> Optional[int]:
        value = _parse(raw, self.field)
        kind = label_kind(value)
        if kind is None:
            return None
        where = f"shard {shard}, sample {key}: json field {self.field!r} = {value!r}"
        if kind == NAME:
            if self._lookup is None:
                raise ValueError(f"{where} is a class name, but this run's labels are class ids (integers); "
                                 "use one kind throughout")
            label = self._lookup.get(str(value).strip())
            if label is None:
                raise ValueError(f"{where} is not among the {len(self._lookup)} class names of the run "
                                 "(classes.json); the head has no row for it")
            return label
        if self._lookup is not None:
            raise ValueError(f"{where} is a class id, but this run's labels are class names; use one kind throughout")
        label = as_id(value)
        if label >= self.num_classes:
            raise ValueError(f"{where} is outside the head (data.num_classes={self.num_classes}); raise "
                             "data.num_classes")
        return label

    @classmethod
    def scan(cls, shards: Sequence[str], field: str, num_classes: Optional[int] = None,
             saved_names: Optional[Sequence[Optional[str]]] = None) -> "JsonLabels":
        """Read every sample's json once: count the classes and check the labels (all ids or all
        names; names numbered in sorted order, or through a resumed run's ``saved_names``)."""
        counts: Counter = Counter()
        kinds = KindTracker()
        for raw in iter_raw(list(shards)):
            if isinstance(raw, Skipped):
                continue
            value = _parse(raw, field)
            if value is None:
                continue
            where = f"shard {shard_name(raw.get('__url__', '?'))}, sample {raw.get('__key__')}"
            kind = label_kind(value)
            if kind is None:
                raise ValueError(f"{where}: json field {field!r} = {value!r} is neither a class id (an integer ≥ 0) "
                                 "nor a class name")
            try:
                kinds.add(kind, where, value)
            except ValueError as exn:
                raise ValueError(f"json field {field!r}: {exn}") from None
            counts[as_id(value) if kind == INT else str(value).strip()] += 1
        if not counts:
            raise ValueError(f"no sample of the {len(shards)} shards has the json field {field!r} "
                             f"(e.g. {shards[0] if shards else '-'}); check --label-key")
        if kinds.kind == NAME:
            lookup = map_names(list(counts), saved_names, f"json field {field!r}")
            names: Optional[List[Optional[str]]] = (list(saved_names) if saved_names is not None
                                                    else sorted(lookup, key=lookup.__getitem__))
            needed = len(names or [])
            ids = {lookup[n]: c for n, c in counts.items()}
        else:
            names, ids = None, dict(counts)
            needed = max(ids) + 1
        classes = int(num_classes) if num_classes else needed
        if needed > classes:
            raise ValueError(f"json field {field!r} needs {needed} classes, more than the head "
                             f"(data.num_classes={classes})")
        sizes = np.zeros(classes, np.int64)
        for k, v in ids.items():
            sizes[k] = v
        return cls(field, classes, sizes, names)
