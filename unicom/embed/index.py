"""Build the index folder of ``unicom-embed`` from a features directory, in a stream.

The index specifications, the memory budget, the streaming build and the tuning live in
``unicom.index``; the folder's layout is owned by ``unicom.formats.index`` (``docs/formats.md``,
"Index folder").
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Optional, Sequence

from ..formats.index import Entry, IndexDir, resolve_index_dir, write_index_dir  # noqa: F401
from ..index.build import BuildOptions, plan_index
from ..index.folder import build_index_folder, load_tune_queries
from ..index.source import features_source
from ..index.tune import DEFAULT_TARGET_RECALL
from ..runtime.faiss_utils import (  # noqa: F401  (re-exported: the size rule of ``auto`` without a budget)
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
)

_OPTION_KEYS = ("nlist", "hnsw_m", "ef_construction", "max_index_memory", "max_query_ms", "max_training_points",
                "seed", "chunk")


def build_options(gpus: Sequence[int] = (), **kwargs: Any) -> BuildOptions:
    """``BuildOptions`` from keyword arguments (None values keep the defaults)."""
    return BuildOptions(gpus=tuple(gpus), **{k: v for k, v in kwargs.items() if k in _OPTION_KEYS and v is not None})


def build_index_dir(features, out_dir, kind: str = "auto", gpus: Sequence[int] = (), *,
                    nprobe: Optional[int] = None, ef_search: Optional[int] = None,
                    target_recall: Optional[float] = DEFAULT_TARGET_RECALL, tune_queries=None,
                    on_disk: bool = False, progress: bool = True, echo=print, **build_kwargs) -> Optional[Path]:
    """Index every complete shard of ``features`` (``OUT`` or ``OUT/features``) into ``out_dir``,
    recording the encoder of the features. ``kind`` is an ``--index-type`` (short name, ``auto``
    or a faiss factory string; ``none`` builds nothing and returns None). ``nprobe`` /
    ``ef_search`` fix the search knob instead of tuning it to ``target_recall``; the other
    keywords are ``BuildOptions`` fields. Returns ``out_dir``."""
    if kind == "none":
        return None
    source, meta, fdir = features_source(features)
    if not source.n:
        raise ValueError(f"{fdir} holds no features to index")
    opts = build_options(gpus, **build_kwargs)
    plan = plan_index(kind, source.n, source.d, opts)
    queries = load_tune_queries(tune_queries) if tune_queries is not None else None
    fixed: Dict[str, Any] = {"nprobe": nprobe, "efSearch": ef_search}
    return build_index_folder(source, out_dir, kind, opts, encoder=meta, features_dir=fdir,
                              target_recall=target_recall, tune_queries=queries, search_params=fixed,
                              on_disk=on_disk, plan=plan, progress=progress, echo=echo)
