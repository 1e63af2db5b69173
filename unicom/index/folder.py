"""Build, tune and append to an index folder (``docs/formats.md``, "Index folder").

``build_index_folder``: plan (every error before work) → train on a sample → add the collection
chunk by chunk from disk → write ``index.faiss`` and the columnar keys → tune ``nprobe`` /
``efSearch`` on held-out queries to the target recall → write ``report.json`` and, last,
``index.json`` (with the estimate beside the measured size and the tuned parameters).

``append_to_index_folder``: add new feature shards to a built index without retraining (the
trained IVF quantiser is kept); features of another encoder or dimension are refused.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np

from ..formats import index as fi
from ..formats.atomic_io import write_json
from ..runtime.faiss_utils import import_faiss, write_index_file
from .build import BuildOptions, IndexPlan, add_stream, family, new_index, plan_index, train_index
from .factory import ivf_of
from .report import format_report
from .source import VectorSource, array_source, features_source
from .tune import (
    DEFAULT_TARGET_RECALL,
    DEFAULT_TUNE_QUERIES,
    TUNE_K,
    apply_search_params,
    current_search_params,
    exact_neighbours,
    measure,
    tune,
)

Printer = Callable[[str], None]


def tune_and_report(index, source: VectorSource, plan_dict: Dict[str, Any], timings: Dict[str, float],
                    index_bytes: int, target_recall: Optional[float] = DEFAULT_TARGET_RECALL,
                    tune_queries: Optional[np.ndarray] = None, n_queries: int = DEFAULT_TUNE_QUERIES,
                    fixed_params: Optional[Dict[str, Any]] = None, seed: int = 1) -> Dict[str, Any]:
    """Tune the index's knob to ``target_recall`` (None: keep its values) on ``tune_queries`` or
    ``n_queries`` rows held out from ``source``, and measure it; ``fixed_params`` (the user's
    ``--nprobe`` / ``--ef-search``) are set instead of tuned. Returns the report dict."""
    if tune_queries is None:
        _, queries = source.sample(min(n_queries, source.n), seed=seed)
        where = "held out from the collection"
    else:
        queries = np.ascontiguousarray(tune_queries, dtype=np.float32)
        where = "given (--tune-queries)"
    exact = exact_neighbours(source, queries, TUNE_K)
    fixed = {k: v for k, v in (fixed_params or {}).items() if v is not None}
    reached, curve = None, []
    if fixed or target_recall is None:
        apply_search_params(index, fixed)
    else:
        _, reached, curve = tune(index, queries, exact, target_recall)
    m = measure(index, queries, exact)
    k = exact.shape[1]
    return {"factory": plan_dict["factory"], "type": family(index), "n": int(index.ntotal), "d": int(index.d),
            "recall@1": m["recall@1"], "recall@10": m[f"recall@{k}"], "search_params": current_search_params(index),
            "target_recall": None if fixed else target_recall, "reached": reached, "queries": int(len(queries)),
            "query_source": where, "qps": m["qps"], "ms_per_query": m["ms_per_query"],
            "bytes_on_disk": int(index_bytes), "bytes_per_vector": index_bytes / max(1, int(index.ntotal)),
            "estimate_bytes": plan_dict["estimate"]["bytes"], **timings, "tuning_curve": curve}


def _write_on_disk(index, source: VectorSource, out: Path, opts: BuildOptions, progress: bool) -> float:
    """Add ``source`` to the trained, empty IVF ``index`` block by block, each block written to
    a temporary index file, then merge the blocks' inverted lists into ``index.ivfdata``
    (faiss ``OnDiskInvertedLists``) and write ``index.faiss`` pointing at it; seconds."""
    from faiss.contrib.ondisk import merge_ondisk

    faiss = import_faiss()
    t0 = time.time()
    tmp = out / ".blocks"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    files: List[str] = []
    block_rows = opts.chunk * 8
    try:
        part = faiss.clone_index(index)
        rows = 0
        from ..cli.progress import progress_bar

        with progress_bar(progress, total=source.n, unit="vec", desc="add (on disk)") as bar:
            for _, block in source.chunks(opts.chunk):
                part.add(block)
                rows += len(block)
                bar.update(len(block))
                if rows >= block_rows:
                    files.append(str(tmp / f"{len(files):05d}.faiss"))
                    faiss.write_index(part, files[-1])
                    part.reset()
                    rows = 0
        if rows or not files:
            files.append(str(tmp / f"{len(files):05d}.faiss"))
            faiss.write_index(part, files[-1])
        del part
        data = out / fi.IVF_DATA_FILE
        with contextlib.suppress(FileNotFoundError):
            os.remove(data)
        merge_ondisk(index, files, str(data.resolve()))
        write_index_file(index, out / fi.INDEX_FILE)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return time.time() - t0


def index_bytes(out: Path) -> int:
    """Bytes on disk of the index proper (``index.faiss`` and ``index.ivfdata``, not the keys)."""
    return sum((out / f).stat().st_size for f in (fi.INDEX_FILE, fi.IVF_DATA_FILE) if (out / f).is_file())


def build_index_folder(source: VectorSource, out_dir, spec: str = "auto", opts: Optional[BuildOptions] = None, *,
                       encoder: Optional[Dict[str, Any]] = None, features_dir=None,
                       target_recall: Optional[float] = DEFAULT_TARGET_RECALL,
                       tune_queries: Optional[np.ndarray] = None, search_params: Optional[Dict[str, Any]] = None,
                       on_disk: bool = False, plan: Optional[IndexPlan] = None, progress: bool = True,
                       echo: Optional[Printer] = print) -> Path:
    """Build the index folder ``out_dir`` over ``source`` (see the module docstring). ``plan``
    may be given when the caller validated it already. Returns ``out_dir``."""
    opts = opts or BuildOptions()
    plan = plan or plan_index(spec, source.n, source.d, opts)
    if on_disk and plan.family != "ivf":
        raise ValueError(f"--on-disk stores IVF inverted lists on disk; {plan.factory} is not an IVF index")
    if echo and plan.auto is not None:
        echo(plan.auto.describe())
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        os.remove(out / fi.META_FILE)  # the folder is incomplete until the new index.json
    index = new_index(plan, opts)
    train_s = train_index(index, source, plan, opts)
    if on_disk:
        add_s = _write_on_disk(index, source, out, opts, progress)
        index = import_faiss().read_index(str(out / fi.INDEX_FILE), import_faiss().IO_FLAG_ONDISK_SAME_DIR)
    else:
        add_s = add_stream(index, source, opts, progress, desc=f"add to {plan.factory}")
        write_index_file(index, out / fi.INDEX_FILE)
        with contextlib.suppress(FileNotFoundError):
            os.remove(out / fi.IVF_DATA_FILE)
    timings = {"train_s": round(train_s, 3), "add_s": round(add_s, 3), "build_s": round(train_s + add_s, 3),
               "train_points": plan.train_points}
    size = index_bytes(out)
    report = tune_and_report(index, source, plan.to_dict(), timings, size, target_recall, tune_queries,
                             fixed_params=search_params)
    write_json(out / fi.REPORT_FILE, report)
    params = _build_params(index, plan)
    extra = {"factory": plan.factory, "search_params": report["search_params"], "estimate": plan.estimate.to_dict(),
             "measured_bytes": size, "build_s": timings["build_s"], "train_points": plan.train_points,
             "on_disk": bool(on_disk), "recall": {"recall@1": report["recall@1"], "recall@10": report["recall@10"]}}
    if plan.auto is not None:
        extra["auto"] = plan.auto.to_dict()
    fi.write_index_dir(out, index, source.key_parts(), plan.family, params, source.d, encoder or {},
                       features_dir, source.shard_records(), extra=extra, write_index=False)
    if echo:
        echo(format_report(report))
    return out


def _build_params(index, plan: IndexPlan) -> Dict[str, Any]:
    """index.json's ``params``: the build knobs (nlist, M, efConstruction) and the search ones."""
    from .tune import hnsw_of

    params: Dict[str, Any] = {}
    ivf = ivf_of(index)
    if ivf is not None:
        params["nlist"] = int(ivf.nlist)
    hnsw = hnsw_of(index)
    if hnsw is not None:
        params.update(M=int(hnsw.hnsw.nb_neighbors(1)), efConstruction=int(hnsw.hnsw.efConstruction))
    params.update(current_search_params(index))
    return params


def load_tune_queries(path) -> np.ndarray:
    """``--tune-queries``: a ``.npy`` of query vectors [m, d], or a features folder (all its rows)."""
    from ..formats.atomic_io import read_npy

    p = Path(path)
    if p.suffix == ".npy" and p.is_file():
        q = read_npy(p).astype(np.float32)
    elif p.is_dir():
        src, _, _ = features_source(p)
        q = src.rows(np.arange(src.n))
    else:
        raise FileNotFoundError(f"--tune-queries {path}: give a .npy file of query vectors or a features folder")
    if q.ndim != 2 or not len(q):
        raise ValueError(f"--tune-queries {path}: expected a non-empty [m, d] array, got shape {q.shape}")
    return q


# --------------------------------------------------------------------------- append

def check_appendable(meta: Dict[str, Any], features_meta: Dict[str, Any], d: int, index_dim: int, where) -> None:
    """Refuse features of another encoder or dimension than the index's, in one line."""
    if d != index_dim:
        raise ValueError(f"{where} holds {d}-d features but the index holds {index_dim}-d vectors; append features "
                         "of the index's own encoder, or build a new index")
    for f in ("model", "image_size", "embed_dim"):
        if meta.get(f) is not None and features_meta.get(f) is not None and meta[f] != features_meta[f]:
            raise ValueError(f"{where} holds features of another encoder ({f}: {features_meta[f]!r}, the index: "
                             f"{meta[f]!r}); embed with the index's encoder ({meta.get('model')}) first")


def append_to_index_folder(index_dir, features=None, shards: Optional[Sequence[str]] = None, progress: bool = True,
                           opts: Optional[BuildOptions] = None) -> Dict[str, Any]:
    """Add the shards of ``features`` (default: the index's own features folder) that the index
    does not hold yet (or just ``shards``) to the index at ``index_dir``, without retraining.
    Returns {"added": rows, "shards": names, "n": new total}. Checks come before any work."""
    opts = opts or BuildOptions()
    idx = fi.IndexDir(index_dir)
    out = idx.dir
    meta = dict(idx.meta)
    features = features if features is not None else meta.get("features")
    if features is None:
        raise ValueError(f"{out / fi.META_FILE} records no features folder; pass --features")
    have = {s["name"] for s in idx.shards}
    src_all, fmeta, fdir = features_source(features)
    names = list(shards) if shards is not None else [p.name for p in src_all.parts if p.name not in have]
    clash = sorted(set(names) & have)
    if clash:
        raise ValueError(f"the index already holds shard {clash[0]!r}; to replace a shard rebuild the index")
    src, _, _ = features_source(fdir, only=names)
    if not src.n:
        return {"added": 0, "shards": [], "n": len(idx)}
    check_appendable(meta, fmeta, src.d, idx.dim, fdir)
    if meta.get("on_disk"):
        raise ValueError(f"{out} is an on-disk index; appending to it is not supported: rebuild it with the new shards")
    index = import_faiss().read_index(str(out / fi.INDEX_FILE))
    add_s = add_stream(index, src, opts, progress, desc="append")
    keys_old = idx.keys
    old_parts = (keys_old.iter_chunks() if isinstance(keys_old, fi.KeyColumn) else iter([list(keys_old)]))

    def key_parts():
        yield from old_parts
        yield from src.key_parts()

    n_old = len(idx)
    staged = out / ".append"
    shutil.rmtree(staged, ignore_errors=True)
    staged.mkdir()
    try:
        # the new keys are written aside first: the old ones are read while they are copied
        fi.write_keys(staged, key_parts(), int(index.ntotal))
        del idx, keys_old
        os.remove(out / fi.META_FILE)  # incomplete from here until the new index.json
        write_index_file(index, out / fi.INDEX_FILE)
        for f in (fi.KEYS_DATA_FILE, fi.KEYS_OFFSETS_FILE):
            os.replace(staged / f, out / f)
    finally:
        shutil.rmtree(staged, ignore_errors=True)
    with contextlib.suppress(FileNotFoundError):
        os.remove(out / fi.KEYS_FILE)
    size = index_bytes(out)
    meta.update(n=int(index.ntotal), shards=list(meta.get("shards", [])) + src.shard_records(), measured_bytes=size,
                appended=list(meta.get("appended", [])) + [{"shards": names, "rows": src.n, "add_s": round(add_s, 3)}])
    write_json(out / fi.META_FILE, meta)
    return {"added": int(index.ntotal) - n_old, "shards": names, "n": int(index.ntotal)}


__all__ = ["build_index_folder", "append_to_index_folder", "tune_and_report", "load_tune_queries", "array_source",
           "index_bytes"]
