"""The vectors an index is built from, read from disk part by part, never joined.

A ``VectorSource`` is an ordered list of parts (a features folder's shards, or arrays); row i of
the source is row i of the index. Parts are memory-mapped ``.npy`` files, so reading a chunk or
a random training sample touches only those rows: peak memory is one chunk (float32), not the
collection.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from ..formats.features import (
    check_finite,
    read_features,
    read_meta,
    read_shard_keys,
    resolve_features_dir,
    shard_names,
)

DEFAULT_CHUNK = 65536  # rows per add() call: 128 MB of float32 at 512-d


@dataclass
class Part:
    """One stretch of rows: its name, its array ([count, d], any float dtype, usually a
    memory-map), where it lives (for error messages) and how to read its keys."""

    name: str
    array: Any
    path: str
    keys: Callable[[], Sequence[str]]
    kind: str = "unknown"          # "tar", "files" or "unknown": how a row maps to its image
    source: Optional[str] = None   # the tar path or image root

    @property
    def count(self) -> int:
        return int(self.array.shape[0])

    def shard_record(self) -> Dict[str, Any]:
        """The entry of index.json's ``shards`` list."""
        return {"name": self.name, "kind": self.kind, "source": self.source, "count": self.count}


class VectorSource:
    """Ordered parts of one dimension ``d``; ``n`` rows in all."""

    def __init__(self, parts: List[Part]):
        self.parts = [p for p in parts if p.count]
        dims = {int(p.array.shape[1]) for p in self.parts}
        if len(dims) > 1:
            raise ValueError(f"the parts have different dimensions {sorted(dims)}: "
                             f"{', '.join(f'{p.name}={p.array.shape[1]}' for p in self.parts[:4])}")
        self.d = dims.pop() if dims else 0
        self.n = sum(p.count for p in self.parts)
        self.starts = np.cumsum([0] + [p.count for p in self.parts])

    def chunks(self, chunk: int = DEFAULT_CHUNK, start: int = 0) -> Iterator[Tuple[int, np.ndarray]]:
        """``(first_row, float32 [m, d])`` blocks of at most ``chunk`` rows from row ``start`` on,
        each checked finite (a NaN row names its file and row)."""
        for p, s0 in zip(self.parts, self.starts[:-1]):
            s0 = int(s0)
            if s0 + p.count <= start:
                continue
            for a in range(max(0, start - s0), p.count, chunk):
                block = np.ascontiguousarray(p.array[a:a + chunk], dtype=np.float32)
                check_finite(block, p.path, first_row=a)
                yield s0 + a, block

    def rows(self, ids: np.ndarray) -> np.ndarray:
        """float32 [len(ids), d]: the rows ``ids`` (sorted ascending) gathered part by part."""
        ids = np.asarray(ids, dtype=np.int64)
        out = np.empty((len(ids), self.d), dtype=np.float32)
        which = np.searchsorted(self.starts, ids, side="right") - 1
        for j in np.unique(which):
            sel = np.flatnonzero(which == j)
            p = self.parts[int(j)]
            local = ids[sel] - int(self.starts[j])
            block = np.asarray(p.array[local], dtype=np.float32)
            check_finite(block, p.path, row_ids=local)
            out[sel] = block
        return out

    def sample(self, m: int, seed: int = 0) -> Tuple[np.ndarray, np.ndarray]:
        """``(ids, float32 [m, d])``: ``m`` distinct rows drawn uniformly (all rows when m ≥ n)."""
        if m >= self.n:
            ids = np.arange(self.n, dtype=np.int64)
        else:
            ids = np.sort(np.random.default_rng(seed).choice(self.n, size=m, replace=False)).astype(np.int64)
        return ids, self.rows(ids)

    def key_parts(self) -> Iterator[Sequence[str]]:
        """Each part's keys in turn (for the columnar key file)."""
        for p in self.parts:
            keys = p.keys()
            if len(keys) != p.count:
                raise ValueError(f"{p.path}: {p.count} rows but {len(keys)} keys")
            yield keys

    def shard_records(self) -> List[Dict[str, Any]]:
        return [p.shard_record() for p in self.parts]


def features_source(features, only: Optional[Sequence[str]] = None) -> Tuple[VectorSource, Dict[str, Any], Path]:
    """The shards of a features folder (``OUT`` or ``OUT/features``) as a source, memory-mapped,
    in name order (``only``: just those shard names); returns (source, meta.json, folder)."""
    fdir = resolve_features_dir(features)
    meta = read_meta(fdir)
    sources = meta.get("sources") or {}
    names = shard_names(fdir) if only is None else list(only)
    parts = []
    for name in names:
        arr = read_features(fdir, name, mmap=True)
        if arr.ndim != 2:
            raise ValueError(f"{fdir / (name + '.npy')} has shape {arr.shape}, not [n, d]")
        src = sources.get(name, {})
        parts.append(Part(name, arr, str(fdir / f"{name}.npy"), lambda name=name: read_shard_keys(fdir, name),
                          src.get("kind", "unknown"), src.get("source")))
    return VectorSource(parts), meta, fdir


def array_source(x: np.ndarray, name: str = "vectors", keys: Optional[Sequence[str]] = None) -> VectorSource:
    """One array (or memory-map) as a source; keys default to the row numbers."""
    return VectorSource([Part(name, x, name, (lambda: list(keys)) if keys is not None else
                              (lambda: [str(i) for i in range(len(x))]))])
