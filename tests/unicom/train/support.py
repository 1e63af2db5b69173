"""Shared helpers for the trainer tests (imported, not collected): pseudo-label files in the
docs/formats.md format, written from the sample set's ground-truth ``concept_id`` (a learnable toy
set), and small configs."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable

import numpy as np

from unicom.data.shards import expand_shards, shard_name
from unicom.data.wds_reader import Skipped, iter_raw
from unicom.formats.atomic_io import write_npy, write_text


def write_concept_labels(shards_dir, out_dir, drop_keys: Iterable[str] = (), skip_shards: Iterable[str] = ()) -> Path:
    """Write ``out_dir/features/SHARD.keys`` and ``out_dir/labels/SHARD.npy`` (+ class_sizes.npy)
    with each sample's json ``concept_id`` as its label. ``drop_keys`` are left out of the files
    (unlabelled samples); ``skip_shards`` get no files at all. Returns the labels dir."""
    out = Path(out_dir)
    drop, skip = set(drop_keys), set(skip_shards)
    per_shard = {}
    num_classes = 0
    for shard in expand_shards(str(shards_dir)):
        name = shard_name(shard)
        keys, labels = [], []
        for raw in iter_raw([shard]):
            if isinstance(raw, Skipped) or "json" not in raw:
                continue
            meta = json.loads(raw["json"])
            if raw["__key__"] in drop:
                continue
            keys.append(raw["__key__"])
            labels.append(int(meta["concept_id"]))
        per_shard[name] = (keys, labels)
        num_classes = max([num_classes] + [l + 1 for l in labels])
    sizes = np.zeros(num_classes, dtype=np.int64)
    for name, (keys, labels) in per_shard.items():
        if name in skip:
            continue
        write_text(out / "features" / f"{name}.keys", "".join(k + "\n" for k in keys))
        write_npy(out / "labels" / f"{name}.npy", np.asarray(labels, dtype=np.int32))
        np.add.at(sizes, np.asarray(labels, dtype=np.int64), 1)
    write_npy(out / "labels" / "class_sizes.npy", sizes)
    return out / "labels"


TINY_OVERRIDES = [
    "model.name={image_size: 32, patch_size: 8, width: 64, depth: 2, heads: 2, embed_dim: 32}",
    "head.sample_rate=0.5", "head.feature_sample_rate=0.5", "head.scale=16", "head.m2=0.2",
    "optim.lr=2e-3", "optim.weight_decay=0.01", "schedule.warmup_steps=2",
    "data.batch_size=16", "data.num_workers=0", "data.shuffle_buffer=64", "data.crop_scale=[0.5, 1.0]",
    "train.device=cpu", "train.log_every=1", "train.progress=false", "train.ckpt_every=0", "train.threads=1",
]


def tiny_config(*extra: str):
    from unicom.train.config import load_config

    return load_config(None, TINY_OVERRIDES + list(extra))
