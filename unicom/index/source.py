"""The vectors an index is built from, read from disk part by part, never joined.

A ``VectorSource`` is an ordered list of parts (a features folder's shards, or arrays); row i of
the source is row i of the index. Parts are ``.npy`` files read with ``pread`` (``NpyFile``), so
reading a chunk or a random training sample reads only those rows: peak memory is one chunk
(float32), not the collection.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from ..formats.features import (
    check_finite,
    read_meta,
    read_shard_keys,
    resolve_features_dir,
    shard_names,
)

DEFAULT_CHUNK = 65536  # rows per add() call: 128 MB of float32 at 512-d


class NpyFile:
    """Rows of a 2-d ``.npy`` file read with ``os.pread``, not memory-mapped: the pages read go
    to the page cache, never into this process's memory, so reading a collection chunk by chunk
    keeps the resident memory at one chunk. Supports ``x[a:b]`` and ``x[sorted int array]``."""

    def __init__(self, path):
        self.path = str(path)
        with open(self.path, "rb") as f:
            version = np.lib.format.read_magic(f)
            read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else \
                np.lib.format.read_array_header_2_0
            shape, fortran, dtype = read_header(f)
            self.offset = f.tell()
        if fortran or len(shape) != 2:
            raise ValueError(f"{self.path}: expected a C-ordered [n, d] array, got shape {shape}")
        self.shape: Tuple[int, int] = (int(shape[0]), int(shape[1]))
        self.dtype = np.dtype(dtype)
        self.row_bytes = self.shape[1] * self.dtype.itemsize
        self.ndim = 2

    def __len__(self) -> int:
        return self.shape[0]

    def _read(self, fd: int, a: int, b: int) -> np.ndarray:
        buf = os.pread(fd, (b - a) * self.row_bytes, self.offset + a * self.row_bytes)
        if len(buf) != (b - a) * self.row_bytes:
            raise ValueError(f"{self.path} is truncated: rows {a}..{b} could not be read; write the shard again")
        return np.frombuffer(buf, dtype=self.dtype).reshape(b - a, self.shape[1])

    def __getitem__(self, item) -> np.ndarray:
        fd = os.open(self.path, os.O_RDONLY)
        try:
            if isinstance(item, slice):
                a, b, step = item.indices(self.shape[0])
                if step != 1:
                    raise IndexError("NpyFile reads contiguous slices only")
                return self._read(fd, a, max(a, b))
            ids = np.asarray(item, dtype=np.int64)
            out = np.empty((len(ids), self.shape[1]), dtype=self.dtype)
            for j, i in enumerate(ids):
                out[j] = self._read(fd, int(i), int(i) + 1)[0]
            return out
        finally:
            os.close(fd)


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
    """The shards of a features folder (``OUT`` or ``OUT/features``) as a source, read from disk
    on demand (``NpyFile``), in name order (``only``: just those shard names); returns (source, meta.json, folder)."""
    fdir = resolve_features_dir(features)
    meta = read_meta(fdir)
    sources = meta.get("sources") or {}
    names = shard_names(fdir) if only is None else list(only)
    parts = []
    for name in names:
        arr = NpyFile(fdir / f"{name}.npy")
        src = sources.get(name, {})
        parts.append(Part(name, arr, str(fdir / f"{name}.npy"), lambda name=name: read_shard_keys(fdir, name),
                          src.get("kind", "unknown"), src.get("source")))
    return VectorSource(parts), meta, fdir


def array_source(x: np.ndarray, name: str = "vectors", keys: Optional[Sequence[str]] = None) -> VectorSource:
    """One array (or memory-map) as a source; keys default to the row numbers."""
    return VectorSource([Part(name, x, name, (lambda: list(keys)) if keys is not None else
                              (lambda: [str(i) for i in range(len(x))]))])
