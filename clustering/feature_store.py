"""Clustering's view of the feature shards (``unicom.formats.features`` owns the files): the
settings check of ``meta.json``, the scan of finished shards, the k-means training sample and
chunked streaming, each read checked for NaN/Inf rows (named by file and row).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from unicom.formats import features as ff

log = logging.getLogger(__name__)

# meta.json fields that must agree between a resumed run and the files already written
# (``decode``: the image decode policy, unicom.data.decode; features of another policy are not mixed)
_META_MUST_MATCH = ("model", "pretrained", "modality", "image_weight", "text_weight", "dim", "decode")


def check_meta(existing: Optional[Dict], new: Dict, out: str) -> None:
    """Refuse to mix features of different models/weights/fusion in one ``OUT/features``."""
    if not existing:
        return
    diff = [f"{k}: {existing.get(k)!r} on disk vs {new.get(k)!r} now" for k in _META_MUST_MATCH
            if k in existing and k in new and existing.get(k) != new.get(k)]
    if diff:
        raise ValueError(f"{ff.features_dir(out)} holds features made with other settings ("
                         + "; ".join(diff) + "). Use another --output, or delete that folder to start over")


PRETRAINED_SHA256 = "pretrained_sha256"   # meta.json: the SHA-256 of the CLIP weights file (content identity)


def drop_if_other_weights(existing: Optional[Dict], new: Dict, out: str) -> bool:
    """When ``OUT/features`` was extracted with CLIP weights of another content at the same path
    (``pretrained_sha256`` differs), its features are stale: remove every shard (with its
    labels) and ``meta.json``, with a warning that says why, so that all of them are extracted
    again (and k-means and the labels follow). Returns True when they were dropped. Called by
    one process (the main rank)."""
    from unicom.formats.fingerprint import short

    old, now = (existing or {}).get(PRETRAINED_SHA256), new.get(PRETRAINED_SHA256)
    if not old or not now or old == now or (existing or {}).get("pretrained") != new.get("pretrained"):
        return False
    fdir = ff.features_dir(out)
    names = {p.name[:-len(ff.RECORD_SUFFIX)] for p in fdir.glob(f"*{ff.RECORD_SUFFIX}")} | set(ff.shard_names(fdir))
    log.warning("the CLIP weights %s changed since the features in %s were extracted (sha256 %s → %s): its %d "
                "shard(s) are extracted again", new.get("pretrained"), fdir, short(old), short(now), len(names))
    for name in sorted(names):
        ff.remove_shard(fdir, name)
    (fdir / ff.META_FILE).unlink(missing_ok=True)
    return True


@dataclass(frozen=True)
class FeatureShard:
    """One finished shard of features: its name, number of rows and dimension."""

    name: str
    n: int
    dim: int


def scan_shards(out: str, names: Sequence[str]) -> Tuple[List[FeatureShard], List[str]]:
    """Return (finished shards among ``names`` with their shapes, names without features).

    Raises ValueError when the shards do not all have the same feature dimension, or a keys
    file does not match its features."""
    fdir = ff.features_dir(out)
    found, missing = [], []
    for name in names:
        if not ff.shard_complete(fdir, name):
            missing.append(name)
            continue
        arr = ff.read_features(fdir, name, mmap=True)
        if arr.ndim != 2:
            raise ValueError(f"{ff.shard_paths(fdir, name)[0]} has shape {arr.shape}; expected [n, D]")
        found.append(FeatureShard(name, int(arr.shape[0]), int(arr.shape[1])))
    dims: Dict[int, List[str]] = {}
    for s in found:
        if s.n > 0:
            dims.setdefault(s.dim, []).append(s.name)
    if len(dims) > 1:
        desc = "; ".join(f"D={d}: {', '.join(v[:3])}{' …' if len(v) > 3 else ''}" for d, v in sorted(dims.items()))
        raise ValueError(f"feature shards in {fdir} have different dimensions ({desc}); "
                         "they were made by different models. Re-extract them with one model "
                         "(delete the odd shards' files) before clustering")
    return found, missing


def feature_dim(shards: Sequence[FeatureShard]) -> int:
    dims = {s.dim for s in shards if s.n > 0}
    if not dims:
        raise ValueError("no features to cluster: every shard is empty or missing")
    return dims.pop()


def sample_rows(out: str, shards: Sequence[FeatureShard], n_sample: int, seed: int) -> np.ndarray:
    """Load a uniform random subset of ``n_sample`` rows (without replacement) across all
    shards, as float32 [n_sample, D] (all rows when ``n_sample`` >= the total)."""
    total = sum(s.n for s in shards)
    dim = feature_dim(shards)
    n_sample = min(n_sample, total)
    rng = np.random.default_rng(seed)
    take = np.sort(rng.choice(total, size=n_sample, replace=False)) if n_sample < total else None
    out_arr = np.empty((n_sample, dim), dtype=np.float32)
    fdir = ff.features_dir(out)
    start, pos = 0, 0
    for s in shards:
        if s.n == 0:
            continue
        arr = ff.read_features(fdir, s.name, mmap=True)
        if take is None:
            ids = None
            rows = np.asarray(arr)
        else:
            lo, hi = np.searchsorted(take, [start, start + s.n])
            ids = take[lo:hi] - start
            rows = arr[ids]
        ff.check_finite(rows, ff.shard_paths(fdir, s.name)[0], row_ids=ids)
        out_arr[pos:pos + len(rows)] = rows
        pos += len(rows)
        start += s.n
    assert pos == n_sample
    return out_arr


def iter_chunks(out: str, name: str, chunk: int) -> Iterator[np.ndarray]:
    """Stream a shard's features as float32 blocks of at most ``chunk`` rows; a NaN/Inf row is a
    ``NonFiniteFeaturesError`` naming the file and the row."""
    fdir = ff.features_dir(out)
    arr = ff.read_features(fdir, name, mmap=True)
    for i in range(0, arr.shape[0], chunk):
        block = np.ascontiguousarray(arr[i:i + chunk], dtype=np.float32)
        ff.check_finite(block, ff.shard_paths(fdir, name)[0], first_row=i)
        yield block
