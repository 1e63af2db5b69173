"""Labels read from each shard sample's json (``unicom-train --dataset shards --label-key FIELD``),
e.g. ``concept_id`` on the sample set: supervised training on shards without ``make cluster``.

Unless both ``data.num_classes`` and ``data.samples_per_epoch`` are set, the shards are scanned
once before training (tar members read, images not decoded) to count the classes and the
labelled samples and to check every label: a label that is not an integer ≥ 0 is an error
naming the shard and key. While training, a sample without the field is skipped as
``no_label``, and a label outside the head (≥ ``num_classes``) is an error naming it.
"""
from __future__ import annotations

import json
from typing import Any, Dict, Optional, Sequence

import numpy as np

from ..data.shards import shard_name
from ..data.wds_reader import Skipped, iter_raw


def _parse(raw: Dict[str, Any], field: str) -> Any:
    data = raw.get("json")
    if data is None:
        return None
    try:
        meta = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return None
    return meta.get(field) if isinstance(meta, dict) else None


def _as_label(value: Any) -> Optional[int]:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return None


class JsonLabels:
    """Per-sample labels from the json field ``field``; the ``LabelIndex`` interface that
    ``data.TrainStream`` uses (``label_for``, ``num_classes``, ``class_sizes``)."""

    def __init__(self, field: str, num_classes: int, class_sizes: Optional[np.ndarray] = None):
        self.field = field
        self.num_classes = int(num_classes)
        self.class_sizes = class_sizes if class_sizes is not None else np.zeros(self.num_classes, np.int64)

    def label_for(self, raw: Dict[str, Any], shard: str, key: str) -> Optional[int]:
        value = _parse(raw, self.field)
        label = _as_label(value)
        if label is None or label < 0:
            return None
        if label >= self.num_classes:
            raise ValueError(f"shard {shard}, sample {key}: json field {self.field!r} = {label} is outside the head "
                             f"(data.num_classes={self.num_classes}); raise data.num_classes")
        return label

    @classmethod
    def scan(cls, shards: Sequence[str], field: str, num_classes: Optional[int] = None) -> "JsonLabels":
        """Read every sample's json once: count the classes and check the labels."""
        counts: Dict[int, int] = {}
        seen = 0
        for raw in iter_raw(list(shards)):
            if isinstance(raw, Skipped):
                continue
            value = _parse(raw, field)
            if value is None:
                continue
            label = _as_label(value)
            if label is None or label < 0:
                raise ValueError(f"shard {shard_name(raw.get('__url__', '?'))}, sample {raw.get('__key__')}: json "
                                 f"field {field!r} = {value!r} is not a class id (an integer ≥ 0)")
            counts[label] = counts.get(label, 0) + 1
            seen += 1
        if not seen:
            raise ValueError(f"no sample of the {len(shards)} shards has the json field {field!r} "
                             f"(e.g. {shards[0] if shards else '-'}); check --label-key")
        needed = max(counts) + 1
        classes = int(num_classes) if num_classes else needed
        if needed > classes:
            raise ValueError(f"json field {field!r} reaches {needed - 1}, outside the head "
                             f"(data.num_classes={classes})")
        sizes = np.zeros(classes, np.int64)
        for k, v in counts.items():
            sizes[k] = v
        return cls(field, classes, sizes)
