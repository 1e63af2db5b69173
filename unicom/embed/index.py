"""faiss indexes over L2-normalised features (inner product = cosine), and their directory.

Which index ``auto`` picks, by collection size n (see docs/pretrained.md):
  n ≤ 100k      ``flat``  exact search (``IndexFlatIP``); brute force is fast enough here.
  n ≤ 2M        ``hnsw``  ``IndexHNSWFlat`` (M=32, efConstruction=200, efSearch=128, inner
                product): no training, high recall, ~M·2·4 extra bytes per vector.
  n > 2M        ``ivf``   ``IndexIVFFlat`` with nlist ≈ 4·√n spherical k-means cells, trained
                on ≤ 256 points per cell; nprobe = max(16, nlist/64) cells are searched.

Index directory (``OUT/index/``):
  index.faiss   the faiss index; row i is the i-th feature in shard-name order
  keys.txt      n lines: the key of row i
  index.json    {"format": "unicom-index", "type", "n", "dim", "params", "metric": "inner_product",
                 "model", "image_size", "features": dir, "shards": [{"name", "kind", "source",
                 "count"}] in row order}
Every file is written atomically; index.json last, so a directory with it is complete.
"""
from __future__ import annotations

import bisect
import json
import math
import os
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from ..atomic_io import atomic_path, write_json, write_text
from ..formats.features import iter_shards, read_keys, read_meta, resolve_features_dir

INDEX_FORMAT = "unicom-index"
INDEX_FILE = "index.faiss"
KEYS_FILE = "keys.txt"
META_FILE = "index.json"
INDEX_TYPES = ("auto", "flat", "ivf", "hnsw", "none")
FLAT_MAX = 100_000
HNSW_MAX = 2_000_000
HNSW_M = 32
EF_CONSTRUCTION = 200
EF_SEARCH = 128
MIN_POINTS_PER_CELL = 39  # faiss warns below this many training points per centroid
MAX_POINTS_PER_CELL = 256


def choose_index_type(n: int) -> str:
    """The ``auto`` choice for a collection of ``n`` vectors."""
    if n <= FLAT_MAX:
        return "flat"
    if n <= HNSW_MAX:
        return "hnsw"
    return "ivf"


def default_nlist(n: int) -> int:
    """About 4·√n cells, but never fewer than 39 training points per cell."""
    return max(1, min(int(4 * math.sqrt(n)), n // MIN_POINTS_PER_CELL))


def default_nprobe(nlist: int) -> int:
    return min(nlist, max(16, nlist // 64))


def _faiss():
    import faiss

    return faiss


def build_index(x: np.ndarray, kind: str = "auto", nlist: Optional[int] = None, nprobe: Optional[int] = None,
                hnsw_m: int = HNSW_M, ef_construction: int = EF_CONSTRUCTION, ef_search: int = EF_SEARCH,
                seed: int = 0) -> Tuple[Any, str, Dict[str, Any]]:
    """Build an inner-product index over the rows of ``x`` (float32 [n, d], normalised).

    Returns (index, type, params); row i of ``x`` gets id i.
    """
    faiss = _faiss()
    x = np.ascontiguousarray(x, dtype=np.float32)
    if x.ndim != 2 or x.shape[0] == 0:
        raise ValueError(f"need a non-empty [n, d] array to index, got shape {x.shape}")
    n, d = x.shape
    kind = choose_index_type(n) if kind == "auto" else kind
    if kind == "flat":
        index = faiss.IndexFlatIP(d)
        params: Dict[str, Any] = {}
    elif kind == "hnsw":
        index = faiss.IndexHNSWFlat(d, hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = ef_construction
        index.hnsw.efSearch = ef_search
        params = {"M": hnsw_m, "efConstruction": ef_construction, "efSearch": ef_search}
    elif kind == "ivf":
        nlist = default_nlist(n) if nlist is None else int(nlist)
        if not 1 <= nlist <= n:
            raise ValueError(f"nlist={nlist} must lie in [1, n={n}]")
        quantizer = faiss.IndexFlatIP(d)
        index = faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_INNER_PRODUCT)
        index.cp.spherical = True
        index.cp.seed = seed
        rng = np.random.default_rng(seed)
        m = min(n, nlist * MAX_POINTS_PER_CELL)
        train = x if m == n else x[np.sort(rng.choice(n, m, replace=False))]
        index.train(train)
        index.nprobe = default_nprobe(nlist) if nprobe is None else min(int(nprobe), nlist)
        params = {"nlist": nlist, "nprobe": int(index.nprobe)}
    else:
        raise ValueError(f"unknown index type {kind!r}; choose from {', '.join(INDEX_TYPES)}")
    index.add(x)
    return index, kind, params


def set_search_params(index, kind: str, nprobe: Optional[int] = None, ef_search: Optional[int] = None) -> None:
    """Change the search-time knobs of a loaded index (others are ignored)."""
    if kind == "ivf" and nprobe is not None:
        index.nprobe = max(1, min(int(nprobe), index.nlist))
    if kind == "hnsw" and ef_search is not None:
        index.hnsw.efSearch = int(ef_search)


def write_index_file(index, path) -> None:
    """Write a faiss index to ``path`` atomically, with the usual file mode."""
    with atomic_path(path) as tmp:
        _faiss().write_index(index, str(tmp))


def build_index_dir(features, out_dir, kind: str = "auto", **build_kwargs) -> Optional[Path]:
    """Index every complete shard of ``features`` (``OUT`` or ``OUT/features``) into ``out_dir``.

    Returns ``out_dir``, or None for ``kind="none"``.
    """
    if kind == "none":
        return None
    fdir = resolve_features_dir(features)
    meta = read_meta(fdir)
    sources = meta.get("sources") or {}
    arrays, keys, shards = [], [], []
    for name, feats, shard_keys in iter_shards(fdir):
        if not len(shard_keys):
            continue
        arrays.append(np.asarray(feats, dtype=np.float32))
        keys.extend(shard_keys)
        src = sources.get(name, {})
        shards.append({"name": name, "kind": src.get("kind", "unknown"), "source": src.get("source"),
                       "count": len(shard_keys)})
    if not arrays:
        raise ValueError(f"{fdir} holds no features to index")
    x = np.concatenate(arrays)
    index, kind, params = build_index(x, kind, **build_kwargs)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_index_file(index, out / INDEX_FILE)
    write_text(out / KEYS_FILE, "".join(k + "\n" for k in keys))
    write_json(out / META_FILE, {
        "format": INDEX_FORMAT, "type": kind, "n": int(x.shape[0]), "dim": int(x.shape[1]), "params": params,
        "metric": "inner_product", "model": meta.get("model"), "image_size": meta.get("image_size"),
        "heads": meta.get("heads"), "features": str(fdir.resolve()), "shards": shards})
    return out


@dataclass
class Entry:
    """What row ``id`` of an index is: its shard, its key and where its image lives."""

    id: int
    shard: str
    key: str
    kind: str                 # "files", "tar" or "unknown"
    source: Optional[str]     # image root (files) or tar path (tar)

    @property
    def path(self) -> Optional[str]:
        """The image file (files), ``TAR::KEY`` (tar), or the key alone (unknown source)."""
        if self.kind == "files" and self.source:
            return str(Path(self.source) / self.key)
        if self.kind == "tar" and self.source:
            return f"{self.source}::{self.key}"
        return None


class IndexDir:
    """A loaded index directory: the faiss index, its keys and its shard table."""

    def __init__(self, path):
        self.dir = resolve_index_dir(path)
        self.meta = json.loads((self.dir / META_FILE).read_text())
        if self.meta.get("format") != INDEX_FORMAT:
            raise ValueError(f"{self.dir / META_FILE} is not a unicom index (format={self.meta.get('format')!r})")
        self.index = _faiss().read_index(str(self.dir / INDEX_FILE))
        self.keys = read_keys(self.dir / KEYS_FILE)
        self.kind = self.meta["type"]
        if len(self.keys) != self.index.ntotal:
            raise ValueError(f"{self.dir}: {KEYS_FILE} has {len(self.keys)} keys for {self.index.ntotal} vectors")
        self.shards: List[Dict[str, Any]] = self.meta.get("shards", [])
        self._starts = list(np.cumsum([0] + [s["count"] for s in self.shards])[:-1])
        self._tar_members: Dict[str, Dict[str, tarfile.TarInfo]] = {}

    def __len__(self) -> int:
        return int(self.index.ntotal)

    @property
    def dim(self) -> int:
        return int(self.index.d)

    def entry(self, i: int) -> Entry:
        j = bisect.bisect_right(self._starts, i) - 1
        s = self.shards[j] if j >= 0 else {"name": "?", "kind": "unknown", "source": None}
        return Entry(int(i), s["name"], self.keys[i], s.get("kind", "unknown"), s.get("source"))

    def search(self, q: np.ndarray, k: int) -> Tuple[np.ndarray, np.ndarray]:
        """(scores, ids), each [m, k]; ids are -1 where fewer than k results exist."""
        q = np.ascontiguousarray(q, dtype=np.float32)
        if q.ndim != 2 or q.shape[1] != self.dim:
            raise ValueError(f"queries of shape {q.shape} do not fit an index of dimension {self.dim}")
        return self.index.search(q, int(min(k, len(self))))

    def _tar_index(self, source: str) -> Dict[str, tarfile.TarInfo]:
        """key → the TarInfo of its image, for one shard (read once; a truncated shard still
        gives the members before the cut)."""
        members = self._tar_members.get(source)
        if members is None:
            from ..wds_reader import IMAGE_EXTS

            members = {}
            try:
                with tarfile.open(source) as tf:
                    for m in tf:
                        base, _, ext = m.name.rpartition(".")
                        if m.isfile() and ext.lower() in IMAGE_EXTS:
                            members.setdefault(base, m)
            except (tarfile.TarError, OSError, EOFError):
                pass
            self._tar_members[source] = members
        return members

    def open_image(self, i: int):
        """The PIL image of row ``i`` (from its file or its tar shard), or None if unknown."""
        from ..wds_reader import decode_image
        from .dataset import load_image

        e = self.entry(i)
        if e.kind == "files" and e.source:
            return load_image(e.path)
        if e.kind == "tar" and e.source and os.path.isfile(e.source):
            member = self._tar_index(e.source).get(e.key)
            if member is not None:
                with open(e.source, "rb") as f:
                    f.seek(member.offset_data)
                    return decode_image(f.read(member.size))
        return None


def resolve_index_dir(path) -> Path:
    """``OUT`` or ``OUT/index`` → the directory holding index.json."""
    p = Path(path)
    if (p / META_FILE).is_file():
        return p
    if (p / "index" / META_FILE).is_file():
        return p / "index"
    raise FileNotFoundError(f"no index at {p}: expected {p / META_FILE} or {p / 'index' / META_FILE} "
                            "(built by unicom-embed --index auto|flat|ivf|hnsw)")
