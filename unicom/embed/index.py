"""Build the index folder of ``unicom-embed`` from a features directory.

The index types and ``auto``'s choice are in ``unicom.runtime.faiss_utils``; the folder's layout is
owned by ``unicom.formats.index`` (``docs/formats.md``, "Index folder").
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from ..formats.features import iter_shards, read_meta, resolve_features_dir
from ..formats.index import Entry, IndexDir, resolve_index_dir, write_index_dir  # noqa: F401
from ..runtime.faiss_utils import (  # noqa: F401
    EF_CONSTRUCTION,
    EF_SEARCH,
    FLAT_MAX,
    HNSW_M,
    HNSW_MAX,
    INDEX_TYPES,
    build_index,
    choose_index_type,
    default_nlist,
    default_nprobe,
    set_search_params,
)


def build_index_dir(features, out_dir, kind: str = "auto", gpus: Sequence[int] = (), **build_kwargs) -> Optional[Path]:
    """Index every complete shard of ``features`` (``OUT`` or ``OUT/features``) into ``out_dir``,
    recording the encoder of the features. Returns ``out_dir``, or None for ``kind="none"``."""
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
    index, kind, params = build_index(x, kind, gpus=gpus, **build_kwargs)
    return write_index_dir(out_dir, index, keys, kind, params, x.shape[1], meta, fdir, shards)
