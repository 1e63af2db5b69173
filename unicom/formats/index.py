"""The index folder written by ``unicom-embed`` (``docs/formats.md``, "Index folder"), and its
clip-retrieval layout. This module is the one owner of those names.

``OUT/index/``:
  index.faiss   the faiss index; row i is the i-th feature in shard-name order
  keys.txt      n lines: the key of row i
  index.json    {"format": "unicom-index", "type", "n", "dim", "params", "metric": "inner_product",
                 "model", "image_size", "heads", "embed_dim", "weights", "weights_sha256" (the
                 SHA-256 of the weights file; unicom-search refuses weights that differ), "features": dir,
                 "shards": [{"name", "kind", "source", "count"}] in row order}
Every file is written atomically; index.json last, so a folder with it is complete.

``--format clip-retrieval`` (``OUT/``), what clip-retrieval's back end and autofaiss read:
  img_emb/img_emb_0.npy          float32 [n, D], L2-normalised, row i = row i of the index
  metadata/metadata_0.parquet    columns image_path, key, caption (null where unknown)
"""
from __future__ import annotations

import bisect
import json
import os
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from .atomic_io import atomic_write, write_json, write_npy, write_text
from .features import read_keys

INDEX_SUBDIR = "index"
INDEX_FORMAT = "unicom-index"
INDEX_FILE = "index.faiss"
KEYS_FILE = "keys.txt"
META_FILE = "index.json"
# the encoder fields of the features' meta.json that the index records (search checks them);
# ``decode``: the image decode policy the collection was decoded under (unicom.data.decode)
ENCODER_FIELDS = ("model", "image_size", "heads", "embed_dim", "weights", "kind", "weights_sha256", "decode")
CLIP_RETRIEVAL_EMB = ("img_emb", "img_emb_0.npy")
CLIP_RETRIEVAL_META = ("metadata", "metadata_0.parquet")


def write_index_dir(out_dir, index, keys: Sequence[str], kind: str, params: Dict[str, Any], dim: int,
                    encoder: Dict[str, Any], features_dir, shards: List[Dict[str, Any]]) -> Path:
    """Write the index folder: the faiss index, its keys, then ``index.json`` (last: its presence
    means the folder is complete). ``encoder`` holds the ``ENCODER_FIELDS`` of the features."""
    from ..runtime.faiss_utils import write_index_file

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_index_file(index, out / INDEX_FILE)
    write_text(out / KEYS_FILE, "".join(k + "\n" for k in keys))
    write_json(out / META_FILE, {
        "format": INDEX_FORMAT, "type": kind, "n": len(keys), "dim": int(dim), "params": params,
        "metric": "inner_product", **{f: encoder.get(f) for f in ENCODER_FIELDS},
        "features": str(Path(features_dir).resolve()), "shards": shards})
    return out


def write_clip_retrieval(out_dir, embeddings: np.ndarray, image_paths: Sequence[Optional[str]],
                         keys: Sequence[str], captions: Sequence[Optional[str]]) -> Tuple[Path, Path]:
    """Write ``img_emb/img_emb_0.npy`` (float32 [n, D]) and ``metadata/metadata_0.parquet``
    (image_path, key, caption; row i describes embedding i). Needs pyarrow (the ``parquet``
    extra); returns the two paths."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise RuntimeError("--format clip-retrieval writes parquet and needs pyarrow: "
                           "pip install 'unicom-toolkit[parquet]' (or pip install pyarrow)") from None
    n = len(keys)
    if not (len(embeddings) == len(image_paths) == len(captions) == n):
        raise ValueError(f"clip-retrieval output: {len(embeddings)} embeddings for {n} keys")
    out = Path(out_dir)
    emb_path = out.joinpath(*CLIP_RETRIEVAL_EMB)
    meta_path = out.joinpath(*CLIP_RETRIEVAL_META)
    emb_path.parent.mkdir(parents=True, exist_ok=True)
    meta_path.parent.mkdir(parents=True, exist_ok=True)
    write_npy(emb_path, np.ascontiguousarray(embeddings, dtype=np.float32))
    table = pa.table({"image_path": pa.array(list(image_paths), pa.string()), "key": pa.array(list(keys), pa.string()),
                      "caption": pa.array(list(captions), pa.string())})
    with atomic_write(meta_path, "wb") as f:
        pq.write_table(table, f)
    return emb_path, meta_path


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
        from ..runtime.faiss_utils import import_faiss

        self.index = import_faiss().read_index(str(self.dir / INDEX_FILE))
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
        """Row ``i``'s shard, key and image location (from the shard table of index.json)."""
        j = bisect.bisect_right(self._starts, i) - 1
        s: Dict[str, Any] = self.shards[j] if j >= 0 else {"name": "?", "kind": "unknown", "source": None}
        return Entry(int(i), str(s["name"]), self.keys[i], str(s.get("kind", "unknown")), s.get("source"))

    def encoder_record(self) -> Dict[str, Any]:
        """The encoder that embedded the indexed collection (``ENCODER_FIELDS``, None if unknown)."""
        return {f: self.meta.get(f) for f in ENCODER_FIELDS}

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
            from ..data.wds_reader import IMAGE_EXTS

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
        """The PIL image of row ``i`` (from its file or its tar shard), or None if unknown;
        decoded under the background the index records (``decode``)."""
        from ..data.decode import DecodePolicy, current_policy
        from ..data.images import open_image
        from ..data.wds_reader import decode_image

        background = (self.meta.get("decode") or {}).get("background")
        policy = DecodePolicy.from_settings(background, current_policy().max_pixels) if background else None
        e = self.entry(i)
        if e.kind == "files" and e.source:
            return open_image(e.path, policy=policy)
        if e.kind == "tar" and e.source and os.path.isfile(e.source):
            member = self._tar_index(e.source).get(e.key)
            if member is not None:
                with open(e.source, "rb") as f:
                    f.seek(member.offset_data)
                    return decode_image(f.read(member.size), policy)
        return None


def resolve_index_dir(path) -> Path:
    """``OUT`` or ``OUT/index`` → the directory holding index.json."""
    p = Path(path)
    if (p / META_FILE).is_file():
        return p
    if (p / INDEX_SUBDIR / META_FILE).is_file():
        return p / INDEX_SUBDIR
    raise FileNotFoundError(f"no index at {p}: expected {p / META_FILE} or {p / INDEX_SUBDIR / META_FILE} "
                            "(built by unicom-embed --index-type auto|flat|ivf|hnsw)")
