"""The index folder written by ``unicom-embed`` (``docs/formats.md``, "Index folder"), and its
clip-retrieval layout. This module is the one owner of those names.

``OUT/index/``:
  index.faiss        the faiss index; row i is the i-th feature in shard-name order
  keys.utf8          the keys of all rows, UTF-8, concatenated (columnar: no per-key object)
  keys.offsets.npy   int64 [n + 1]: key i is ``keys.utf8[offsets[i]:offsets[i + 1]]``
  keys.txt           (folders written before the columnar keys) n lines: the key of row i
  index.ivfdata      (``--on-disk`` IVF only) the inverted lists, memory-mapped at search time
  index.json         {"format": "unicom-index", "type", "factory", "n", "dim", "params",
                      "search_params", "metric": "inner_product", "model", "image_size", "heads",
                      "embed_dim", "weights", "weights_sha256" (the SHA-256 of the weights
                      file; unicom-search refuses weights that differ), "decode" (the image decode
                      policy), "features": dir, "shards": [{"name", "kind", "source",
                      "count"}] in row order, "estimate", "measured_bytes", "build_s", ...}
  report.json        the index report (recall against exact search, bytes per vector, QPS)
Every file is written atomically; index.json last, so a folder with it is complete.

``--format clip-retrieval`` (``OUT/``), what autofaiss reads (not for clip-retrieval's back end, which embeds queries
with CLIP: serve with unicom-serve):
  img_emb/img_emb_0.npy          float32 [n, D], L2-normalised, row i = row i of the index
  metadata/metadata_0.parquet    columns image_path, key, caption (null where unknown)
"""
from __future__ import annotations

import bisect
import json
import os
import tarfile
from collections.abc import Sequence as SequenceABC
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np

from .atomic_io import atomic_path, atomic_write, read_npy, write_json, write_npy
from .features import read_keys

INDEX_SUBDIR = "index"
INDEX_FORMAT = "unicom-index"
INDEX_FILE = "index.faiss"
KEYS_FILE = "keys.txt"             # read only: folders written before the columnar keys
KEYS_DATA_FILE = "keys.utf8"
KEYS_OFFSETS_FILE = "keys.offsets.npy"
IVF_DATA_FILE = "index.ivfdata"
META_FILE = "index.json"
REPORT_FILE = "report.json"
# the encoder fields of the features' meta.json that the index records (search checks them);
# ``decode``: the image decode policy the collection was decoded under (unicom.data.decode)
ENCODER_FIELDS = ("model", "image_size", "heads", "embed_dim", "weights", "kind", "weights_sha256", "decode")
CLIP_RETRIEVAL_EMB = ("img_emb", "img_emb_0.npy")
CLIP_RETRIEVAL_META = ("metadata", "metadata_0.parquet")


def write_index_dir(out_dir, index, keys: Union[Sequence[str], Iterable[Sequence[str]]], kind: str,
                    params: Dict[str, Any], dim: int, encoder: Dict[str, Any], features_dir,
                    shards: List[Dict[str, Any]], extra: Optional[Dict[str, Any]] = None,
                    write_index: bool = True) -> Path:
    """Write the index folder: the faiss index, its keys (columnar), then ``index.json`` (last:
    its presence means the folder is complete). ``keys`` is a list of keys, or an iterable of
    per-shard key lists (streamed, never joined). ``encoder`` holds the ``ENCODER_FIELDS`` of
    the features; ``extra`` adds fields to index.json (factory, estimate, search_params, ...).
    ``write_index=False`` when the caller has written ``index.faiss`` itself (on-disk IVF)."""
    from ..runtime.faiss_utils import write_index_file

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if write_index:
        write_index_file(index, out / INDEX_FILE)
    n = write_keys(out, keys, int(index.ntotal))
    meta = {"format": INDEX_FORMAT, "type": kind, "n": n, "dim": int(dim), "params": params,
            "metric": "inner_product", **{f: encoder.get(f) for f in ENCODER_FIELDS},
            "features": str(Path(features_dir).resolve()) if features_dir is not None else None, "shards": shards}
    meta.update(extra or {})
    if (out / KEYS_FILE).exists():  # an old-style key list would disagree with the new index
        (out / KEYS_FILE).unlink()
    write_json(out / META_FILE, meta)
    return out


def write_keys(out_dir, keys: Union[Sequence[str], Iterable[Sequence[str]]], n: int) -> int:
    """Write ``keys.utf8`` and ``keys.offsets.npy`` for ``n`` rows from a list of keys or an
    iterable of key lists (one per shard), streaming: memory holds one shard's keys. Returns the
    number of keys written (a mismatch with ``n`` is a ValueError)."""
    out = Path(out_dir)
    flat = isinstance(keys, (list, tuple)) and (not keys or isinstance(keys[0], str))
    parts: Iterable[Sequence[str]] = [keys] if flat else keys  # type: ignore[list-item]
    done, pos = 0, 0
    with atomic_path(out / KEYS_OFFSETS_FILE) as tmp_off, atomic_write(out / KEYS_DATA_FILE, "wb") as data:
        offsets = np.lib.format.open_memmap(tmp_off, mode="w+", dtype=np.int64, shape=(n + 1,))
        offsets[0] = 0
        for part in parts:
            enc = [k.encode("utf-8") for k in part]
            if done + len(enc) > n:
                raise ValueError(f"{out}: more keys than the index's {n} vectors")
            lengths = np.fromiter((len(b) for b in enc), dtype=np.int64, count=len(enc))
            offsets[done + 1:done + 1 + len(enc)] = pos + np.cumsum(lengths)
            data.write(b"".join(enc))
            pos += int(lengths.sum())
            done += len(enc)
        if done != n:
            raise ValueError(f"{out}: {done} keys for an index of {n} vectors")
        offsets.flush()
        del offsets
    return done


class KeyColumn(SequenceABC):
    """The keys of an index folder, read on demand from the columnar files (memory-mapped); a
    read-only sequence of str that also compares equal to a list of the same keys."""

    def __init__(self, offsets: np.ndarray, data: Union[np.ndarray, bytes]):
        self._off, self._data = offsets, data

    @classmethod
    def open(cls, folder) -> "KeyColumn":
        folder = Path(folder)
        offsets = read_npy(folder / KEYS_OFFSETS_FILE, mmap=True)
        size = (folder / KEYS_DATA_FILE).stat().st_size
        data: Union[np.ndarray, bytes] = np.memmap(folder / KEYS_DATA_FILE, dtype=np.uint8, mode="r") if size else b""
        return cls(offsets, data)

    def __len__(self) -> int:
        return int(len(self._off) - 1)

    def __getitem__(self, i):  # type: ignore[override]
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        n = len(self)
        i = int(i)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f"key {i} out of range for {n} keys")
        a, b = int(self._off[i]), int(self._off[i + 1])
        return bytes(self._data[a:b]).decode("utf-8")

    def __eq__(self, other) -> bool:
        if not isinstance(other, (SequenceABC, list, tuple)) or len(other) != len(self):
            return False
        return all(a == b for a, b in zip(self, other))

    __hash__ = None  # type: ignore[assignment]  # mutable-sequence semantics: unhashable, like a list

    def iter_chunks(self, start: int = 0, stop: Optional[int] = None, size: int = 65536) -> Iterator[List[str]]:
        """Keys ``start..stop`` as lists of at most ``size`` (for copying a column in bounded memory)."""
        stop = len(self) if stop is None else stop
        for a in range(start, stop, size):
            yield self[a:min(stop, a + size)]


def read_index_keys(folder) -> Sequence[str]:
    """The keys of an index folder: the columnar files, or ``keys.txt`` of an older folder."""
    folder = Path(folder)
    if (folder / KEYS_OFFSETS_FILE).is_file():
        return KeyColumn.open(folder)
    return read_keys(folder / KEYS_FILE)


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

        faiss = import_faiss()
        # an on-disk IVF (OnDiskInvertedLists) memory-maps index.ivfdata itself: only the pages a
        # search touches are read; the flag finds it beside index.faiss wherever the folder moved
        flags = faiss.IO_FLAG_ONDISK_SAME_DIR if self.meta.get("on_disk") else 0
        self.index = faiss.read_index(str(self.dir / INDEX_FILE), flags)
        self.keys = read_index_keys(self.dir)
        self.kind = self.meta["type"]
        if len(self.keys) != self.index.ntotal:
            raise ValueError(f"{self.dir}: the key files hold {len(self.keys)} keys for {self.index.ntotal} vectors; "
                             "rebuild the index with unicom-embed or unicom-index build")
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
            from ..data.wds_reader import image_members

            members = image_members(source)
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
                            "(built by unicom-embed --index-type SPEC or unicom-index build)")
