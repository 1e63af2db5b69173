"""The trainer tests' own helpers (``tests/unicom/train/support.py``) write the docs/formats.md layout."""
from __future__ import annotations

import numpy as np


def test_labels_helper_writes_design_format(toy_labels):
    shards, labels = toy_labels
    from unicom.formats.atomic_io import read_npy

    sizes = read_npy(labels / "class_sizes.npy")
    assert sizes.dtype == np.int64 and sizes.sum() > 0
    lab = read_npy(labels / "00000.npy")
    keys = (labels.parent / "features" / "00000.keys").read_text().splitlines()
    assert lab.dtype == np.int32 and len(lab) == len(keys)
