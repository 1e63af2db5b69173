"""The three stages of ``unicom-cluster`` wired together: extract → k-means → assign + report.

Every stage is resumable: extraction skips shards whose features exist; k-means reuses
``centroids.npy`` when ``kmeans.json`` records the same settings and the same features; the
assignment keeps label files made with the same centroids.
"""
from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

from unicom.data.shards import split_for_rank
from unicom.formats import features as ff
from unicom.formats.atomic_io import read_npy, write_json, write_npy
from unicom.runtime.distributed import DistContext, barrier, broadcast_object
from unicom.runtime.faiss_utils import pick_gpus

from . import feature_store as fs
from .assign import assign_shards
from .config import METHODS, STAGES, ClusterConfig  # noqa: F401  (re-exported)
from .extract import ExtractConfig, ExtractResult, extract_features
from .hierarchical import hierarchical_kmeans
from .kmeans import KMeansResult, KMeansState, check_k, resolve_init, spherical_kmeans
from .report import build_report, format_table, write_report
from .two_level import two_level_kmeans

log = logging.getLogger(__name__)

CENTROIDS = "centroids.npy"
KMEANS_JSON = "kmeans.json"
REPORT_JSON = "report.json"
SIZES_PNG = "cluster_sizes.png"
CLASS_GRID_PNG = "class_grid.png"
STATE_DIR = "kmeans_state"   # flat k-means in progress: centroids after iteration N, for resuming


def resolve_gpu_list(spec: str, ctx: DistContext, all_of_them: bool) -> List[int]:
    """Which GPUs faiss uses (``unicom.runtime.faiss_utils.pick_gpus``): ``all_of_them`` (one process
    doing the work for the run) takes every GPU faiss sees; otherwise a rank takes its own."""
    return pick_gpus(spec, local_rank=None if all_of_them else ctx.local_rank)


def _fingerprint(shards: Sequence[fs.FeatureShard], cfg: ClusterConfig, world: int,
                 weights: Optional[str] = None) -> str:
    h = hashlib.sha256()
    h.update(json.dumps([[s.name, s.n, s.dim] for s in shards]).encode())
    if weights:  # the CLIP weights' content: features of rewritten weights need new centroids
        h.update(weights.encode())
    keys = dict(k=cfg.k, method=cfg.method, niter=cfg.niter, mppc=cfg.max_points_per_centroid, seed=cfg.seed,
                init=cfg.init,
                coarse_k=cfg.coarse_k, parts=cfg.parts, local=cfg.local_method,
                world=world if cfg.method == "hierarchical" else 1)
    h.update(json.dumps(keys, sort_keys=True).encode())
    return h.hexdigest()[:16]


def saved_centroids(out: str) -> np.ndarray:
    """``OUT/centroids.npy``, or a clear error when the k-means stage has not run."""
    cpath = Path(out) / CENTROIDS
    if not cpath.is_file():
        raise ValueError(f"{cpath} not found: run the k-means stage first (--stage kmeans or all)")
    return read_npy(cpath)


def run_extract(shard_paths: Sequence, out: str, ecfg: ExtractConfig, ctx: DistContext) -> ExtractResult:
    res = extract_features(shard_paths, out, ecfg, ctx)
    if ctx.is_main:
        total_written = sum(len(w) for w in res.written_by_rank)
        log.info("extraction: %d shards written, %d already done, %d samples embedded (%.1f samples/s on rank 0, "
                 "model busy %.0f%%)", total_written, res.already_done, res.samples_total,
                 res.samples / max(res.seconds, 1e-9), 100 * res.model_busy)
        print(res.skipped.report("skipped during extraction"), flush=True)
    return res


def load_feature_shards(out: str, names: Sequence[str]) -> List[fs.FeatureShard]:
    shards, missing = fs.scan_shards(out, names)
    if missing:
        log.warning("%d shard(s) have no features and are left out: %s%s", len(missing), ", ".join(missing[:5]),
                    " …" if len(missing) > 5 else "")
    if not shards:
        raise ValueError(f"no features found in {ff.features_dir(out)} for the given shards: run the "
                         "extraction first (--stage extract or all)")
    return shards


def run_kmeans(out: str, names: Sequence[str], cfg: ClusterConfig, ctx: DistContext) -> np.ndarray:
    """Cluster the features into ``cfg.k`` centroids (or reuse a matching earlier result)."""
    if cfg.method not in METHODS:
        raise ValueError(f"unknown method {cfg.method!r}; use one of {', '.join(METHODS)}")
    shards = load_feature_shards(out, names)
    n_total = sum(s.n for s in shards)
    dim = fs.feature_dim(shards)
    check_k(cfg.k, n_total)
    fp = _fingerprint(shards, cfg, ctx.world_size, ff.read_meta(ff.features_dir(out)).get(fs.PRETRAINED_SHA256))
    cpath, jpath = Path(out) / CENTROIDS, Path(out) / KMEANS_JSON
    reuse = False
    if ctx.is_main and not cfg.redo_kmeans and cpath.is_file() and jpath.is_file():
        try:
            reuse = json.loads(jpath.read_text()).get("fingerprint") == fp
        except ValueError:
            reuse = False
    reuse = broadcast_object(reuse)
    if reuse:
        if ctx.is_main:
            log.info("k-means: %s matches these features and settings; reusing it (--redo-kmeans to redo)", jpath)
        return read_npy(cpath)
    t0 = time.time()
    kw = dict(niter=cfg.niter, seed=cfg.seed, max_points_per_centroid=cfg.max_points_per_centroid,
              verbose=cfg.faiss_verbose, init=cfg.init)
    result: Optional[KMeansResult] = None
    if cfg.method == "hierarchical":
        gpus = resolve_gpu_list(cfg.gpus, ctx, all_of_them=not ctx.is_distributed)
        mine = split_for_rank(shards, ctx.rank, ctx.world_size)
        parts = cfg.parts or (1 if ctx.is_distributed else 4)
        cap = cfg.k * cfg.max_points_per_centroid * parts
        x = fs.sample_rows(out, mine, cap, cfg.seed + ctx.rank) if sum(s.n for s in mine) else \
            np.zeros((0, dim), np.float32)
        result = hierarchical_kmeans(x, cfg.k, parts=parts, local_method=cfg.local_method, gpus=gpus, **kw)
        del x
    elif ctx.is_main:
        gpus = resolve_gpu_list(cfg.gpus, ctx, all_of_them=True)
        x = fs.sample_rows(out, shards, cfg.k * cfg.max_points_per_centroid, cfg.seed)
        log.info("k-means (%s): K=%d on %d of %d samples, D=%d, %s", cfg.method, cfg.k, len(x), n_total, dim,
                 f"GPUs {gpus}" if gpus else "CPU")
        if cfg.method == "two-level":
            result = two_level_kmeans(x, cfg.k, k1=cfg.coarse_k, gpus=gpus, progress=cfg.progress, **kw)
        else:
            resume = None if cfg.redo_kmeans else load_state(out, fp)
            result = spherical_kmeans(x, cfg.k, gpus=gpus, checkpoint=_checkpointer(out, fp, cfg.checkpoint_every_s),
                                      resume=resume, progress=cfg.progress, precision=cfg.precision, **kw)
        del x
    if ctx.is_main:
        write_npy(cpath, result.centroids.astype(np.float32))
        write_json(jpath, _kmeans_json(result, cfg, fp, n_total, dim, time.time() - t0, ctx.world_size))
        log.info("k-means done in %.1fs: objective (mean cosine) %.5f", time.time() - t0, result.objective)
        shutil.rmtree(Path(out) / STATE_DIR, ignore_errors=True)
    barrier()
    return read_npy(cpath)


def _checkpointer(out: str, fp: str, every_s: float):
    """A ``spherical_kmeans`` checkpoint callback: save the state at most every ``every_s``
    seconds, atomically. The centroids file is named by its iteration and ``state.json``
    names it, so a kill between the two writes leaves the previous state intact."""
    last = [time.time()]
    d = Path(out) / STATE_DIR

    def save(state: KMeansState) -> None:
        if time.time() - last[0] < every_s:
            return
        name = f"centroids_iter{state.iteration:05d}.npy"
        write_npy(d / name, state.centroids)
        write_json(d / "state.json", {"fingerprint": fp, "iteration": state.iteration, "centroids": name,
                                       "objective_per_iter": state.objective_per_iter,
                                       "iteration_stats": state.iteration_stats})
        for old in d.glob("centroids_iter*.npy"):
            if old.name != name:
                old.unlink()
        last[0] = time.time()
        log.info("k-means state saved after iteration %d (%s)", state.iteration, d)

    return save


def load_state(out: str, fp: str) -> Optional[KMeansState]:
    """The saved state of an interrupted flat k-means with the same fingerprint, if any."""
    d = Path(out) / STATE_DIR
    try:
        st = json.loads((d / "state.json").read_text())
        if st.get("fingerprint") != fp:
            return None
        return KMeansState(int(st["iteration"]), read_npy(d / st["centroids"]), list(st["objective_per_iter"]),
                           list(st["iteration_stats"]))
    except (OSError, ValueError, KeyError):
        return None


def _kmeans_json(r: KMeansResult, cfg: ClusterConfig, fp: str, n_total: int, dim: int, seconds: float,
                 world: int) -> Dict:
    extra = {k: v for k, v in r.extra.items() if not isinstance(v, np.ndarray)}
    return {
        "k": r.k, "method": cfg.method, "dim": dim, "iterations": cfg.niter,
        "iterations_run": len(r.objective_per_iter), "objective": r.objective,
        "objective_kind": "mean cosine similarity of the training points to their nearest centroid",
        "objective_per_iter": r.objective_per_iter, "seed": cfg.seed,
        "max_points_per_centroid": cfg.max_points_per_centroid, "init": cfg.init,
        "init_used": resolve_init(cfg.init, r.k if cfg.method == "flat" else r.extra.get("k1", r.k)),
        "n_train": r.n_train,
        "n_samples": n_total,
        "seconds": seconds, "world_size": world, "extra": extra, "iteration_stats": r.iteration_stats,
        "fingerprint": fp, "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }


def run_assign(out: str, names: Sequence[str], centroids: np.ndarray, cfg: ClusterConfig, ctx: DistContext,
               extra_report: Optional[Dict] = None, inputs: Optional[Sequence] = None) -> Dict:
    """Label every sample, write class sizes and (rank 0) the report; return the report. With
    ``inputs`` (the shard paths or image list the features came from) the report also gets
    ``class_grid.png``, a picture of ``cfg.grid_classes`` pseudo classes."""
    shards = load_feature_shards(out, names)
    gpus = resolve_gpu_list(cfg.gpus, ctx, all_of_them=not ctx.is_distributed)
    if cfg.approx_assign and gpus:
        log.info("--approx-assign is for the CPU; with GPUs the exact search is used")
    res = assign_shards(out, shards, centroids, ctx, approx=cfg.approx_assign and not gpus, gpus=gpus,
                        chunk=cfg.assign_chunk, hnsw_m=cfg.hnsw_m, ef_search=cfg.ef_search,
                        progress=cfg.progress and ctx.is_main, precision=cfg.precision)
    rep: Dict = {}
    if ctx.is_main:
        km = {}
        jpath = Path(out) / KMEANS_JSON
        if jpath.is_file():
            km = json.loads(jpath.read_text())
        rep = build_report(res.class_sizes, res.contingency, res.truth_field, cfg.tiny, extra={
            "objective": res.mean_cosine,
            "objective_kind": "mean cosine similarity of every sample to its assigned centroid",
            "method": km.get("method", cfg.method), "kmeans_objective": km.get("objective"),
            "kmeans_seconds": km.get("seconds"), "assign_seconds": res.seconds,
            "approx_assign": bool(cfg.approx_assign and not gpus), "skipped": res.skipped.as_dict(),
            "shards": len(shards), "shards_without_features": len(names) - len(shards),
            **(extra_report or {})})
        json_path = cfg.report_json or str(Path(out) / REPORT_JSON)
        if inputs is not None and cfg.grid_classes > 0:
            from .class_grid import render_class_grid

            grid = render_class_grid(out, inputs, Path(out) / CLASS_GRID_PNG, cfg.grid_classes, cfg.grid_images,
                                     cfg.seed)
            rep["pictures"] = {"cluster_sizes": SIZES_PNG, "class_grid": grid.name if grid else None}
        write_report(rep, res.class_sizes, json_path, str(Path(out) / SIZES_PNG), cfg.tiny)
        print(format_table(rep), flush=True)
        log.info("labels: %s (report %s, pictures %s, %s)", Path(out) / "labels", json_path,
                 Path(out) / SIZES_PNG, Path(out) / CLASS_GRID_PNG)
    return rep
