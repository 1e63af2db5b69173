"""Stage 3: give every sample its nearest centroid and write ``OUT/labels/``.

Features are streamed per shard in chunks through an index over the centroids: exact inner
product (faiss on the GPU when faiss has one; on the CPU torch GEMMs with a float64 re-rank
that makes the labels those of float32 brute force, ``unicom.runtime.dense.FlatIP``), or, with
``approx``, a faiss HNSW graph over the centroids for large K on the CPU. Each rank labels its round-robin share of the
shards and writes ``labels/SHARD.npy`` (int32, aligned with ``features/SHARD.keys``); the
class sizes are summed over ranks and rank 0 writes ``labels/class_sizes.npy`` (int64 [K]).

``labels/assign.json`` names the centroids (a hash) the labels were made with. A re-run with
the same centroids keeps the label files it finds (a killed run resumes); new centroids make
rank 0 delete the old label files first, so no label file ever pairs with the wrong centroids.
"""
from __future__ import annotations

import hashlib
import json
import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch

from unicom.cli.progress import progress_bar
from unicom.data.shards import split_for_rank
from unicom.data.wds_reader import SkipCounter
from unicom.formats import features as ff
from unicom.formats.atomic_io import write_json
from unicom.runtime.dense import FlatIP
from unicom.runtime.distributed import DistContext, all_gather_object, all_reduce_sum, barrier, comm_device
from unicom.runtime.faiss_utils import build_index, pick_gpus
from unicom.runtime.precision import DEFAULT_PRECISION

from . import feature_store as fs

log = logging.getLogger(__name__)

STAMP = "assign.json"
DEFAULT_CHUNK = 65536
labels_dir = ff.labels_dir


def label_path(out: str, name: str) -> Path:
    """``OUT/labels/SHARD.npy``."""
    return ff.label_path(ff.labels_dir(out), name)


def centroids_id(centroids: np.ndarray) -> str:
    """A short content hash of the centroids (what the labels were computed against)."""
    return hashlib.sha256(np.ascontiguousarray(centroids, dtype=np.float32).tobytes()).hexdigest()[:16]


def centroid_index(centroids: np.ndarray, approx: bool = False, gpus: Optional[Sequence[int]] = None,
                   hnsw_m: int = 32, ef_search: int = 128, precision: str = DEFAULT_PRECISION):
    """An index over the centroids for nearest-centroid search by inner product: exact (faiss
    flat) on the GPUs given (all that faiss sees when None), exact on the CPU with torch
    (``FlatIP``, its GEMM under ``precision``); ``approx`` builds a faiss HNSW graph instead
    (CPU), for large K where exact search is slow."""
    if not approx and not pick_gpus(gpus):
        return FlatIP(centroids, precision)
    index, _, _ = build_index(centroids, "hnsw" if approx else "flat", hnsw_m=hnsw_m, ef_search=ef_search,
                              gpus=[] if approx else pick_gpus(gpus))
    return index


def assign_array(index, x: np.ndarray, chunk: int = DEFAULT_CHUNK,
                 approx: bool = False) -> Tuple[np.ndarray, np.ndarray]:
    """Nearest centroid of each row of ``x``: (labels int64 [n], similarities float32 [n]).
    ``approx`` says that ``index`` is an HNSW graph (it may find no neighbour when too narrow)."""
    n = len(x)
    labels = np.empty(n, np.int64)
    sims = np.empty(n, np.float32)
    for i in range(0, n, chunk):
        block = np.ascontiguousarray(x[i:i + chunk], dtype=np.float32)
        D, I = index.search(block, 1)
        labels[i:i + len(block)], sims[i:i + len(block)] = I[:, 0], D[:, 0]
    if n and labels.min() < 0:
        row = int(np.argmin(labels))
        if approx:
            raise RuntimeError(f"the HNSW search found no centroid for {int((labels < 0).sum())} row(s) (first: row "
                               f"{row}): the approximate search is too narrow, raise --ef-search")
        # exact search finds a neighbour for every finite row; callers check finiteness first
        raise RuntimeError(f"the exact search found no centroid for row {row}: its features are not finite")
    return labels, sims


@dataclass
class AssignResult:
    class_sizes: np.ndarray                      # int64 [K], summed over ranks
    n: int = 0                                   # samples labelled, all ranks
    mean_cosine: float = float("nan")            # the objective over all samples
    written: List[str] = field(default_factory=list)   # this rank
    reused: List[str] = field(default_factory=list)    # this rank
    contingency: Counter = field(default_factory=Counter)  # (label, truth) → count, all ranks
    truth_field: Optional[str] = None
    skipped: SkipCounter = field(default_factory=SkipCounter)  # from the shards' side files, all ranks
    seconds: float = 0.0


def _prepare_stamp(out: str, cid: str, approx: bool, ctx: DistContext) -> None:
    """Rank 0: drop label files made with other centroids, then record the current ones."""
    if ctx.is_main:
        d = labels_dir(out)
        stamp_path = d / STAMP
        old = json.loads(stamp_path.read_text()) if stamp_path.is_file() else None
        if old is None or old.get("centroids") != cid:
            stale = [p for p in d.glob("*.npy")] if d.is_dir() else []
            for p in stale:
                p.unlink()
            if stale:
                log.info("removed %d label files made with other centroids", len(stale))
            write_json(stamp_path, {"centroids": cid, "approx": approx})
    barrier()


def assign_shards(out: str, shards: Sequence[fs.FeatureShard], centroids: np.ndarray, ctx: DistContext,
                  approx: bool = False, gpus: Optional[Sequence[int]] = None, chunk: int = DEFAULT_CHUNK,
                  hnsw_m: int = 32, ef_search: int = 128, write_sizes: bool = True,
                  progress: bool = False, precision: str = DEFAULT_PRECISION) -> AssignResult:
    """Label every shard's features (collective over ranks); see the module doc. ``progress``
    shows a tqdm bar over this rank's rows."""
    t0 = time.time()
    k, d = centroids.shape
    bad = [s.name for s in shards if s.n and s.dim != d]
    if bad:
        raise ValueError(f"features of shards {bad[:3]} have D={shards[0].dim} but the centroids have D={d}")
    cid = centroids_id(centroids)
    _prepare_stamp(out, cid, approx, ctx)
    index = centroid_index(centroids, approx=approx, gpus=gpus, hnsw_m=hnsw_m, ef_search=ef_search, precision=precision)
    sizes = np.zeros(k, np.int64)
    sim_sum, n_local = 0.0, 0
    res = AssignResult(class_sizes=sizes)
    contingency: Counter = Counter()
    skipped = SkipCounter()
    truth_field = None
    mine = split_for_rank(list(shards), ctx.rank, ctx.world_size)
    bar = progress_bar(progress, total=sum(s.n for s in mine), desc="assign", unit="row")
    for s in mine:
        path = label_path(out, s.name)
        labels = None
        if path.is_file():
            labels = ff.read_labels(labels_dir(out), s.name).astype(np.int64)
            if len(labels) != s.n or (len(labels) and (labels.min() < 0 or labels.max() >= k)):
                labels = None  # not ours (other features or K): recompute
        if labels is None:
            parts_l, parts_s = [], []
            for block in fs.iter_chunks(out, s.name, chunk):
                lab, sim = assign_array(index, block, chunk, approx=approx)
                parts_l.append(lab)
                parts_s.append(sim)
                bar.update(len(block))
            labels = np.concatenate(parts_l) if parts_l else np.zeros(0, np.int64)
            sims = np.concatenate(parts_s) if parts_s else np.zeros(0, np.float32)
            ff.write_labels(labels_dir(out), s.name, labels)
            res.written.append(s.name)
        else:
            sims = _similarities(out, s.name, centroids, labels, chunk)
            res.reused.append(s.name)
            bar.update(len(labels))
        sizes += np.bincount(labels, minlength=k)
        sim_sum += float(sims.astype(np.float64).sum())
        n_local += len(labels)
        info = ff.read_record(ff.features_dir(out), s.name)
        skipped.update(info.get("skipped", {}))
        gt = info.get("ground_truth")
        if gt and len(gt.get("values", [])) == len(labels):
            truth_field = gt.get("field")
            contingency.update((int(l), t) for l, t in zip(labels.tolist(), gt["values"]) if t is not None)
    bar.close()
    dev = comm_device()
    t = torch.from_numpy(sizes).to(dev)
    all_reduce_sum(t)
    res.class_sizes = t.cpu().numpy().astype(np.int64)
    tot = torch.tensor([sim_sum, float(n_local)], dtype=torch.float64, device=dev)
    all_reduce_sum(tot)
    res.n = int(tot[1].item())
    res.mean_cosine = float(tot[0].item() / max(tot[1].item(), 1))
    for c in all_gather_object(dict(contingency)):
        res.contingency.update(c)
    for c in all_gather_object(skipped.as_dict()):
        res.skipped.update(c)
    res.truth_field = next((f for f in all_gather_object(truth_field) if f), None)
    if write_sizes and ctx.is_main:
        ff.write_class_sizes(labels_dir(out), res.class_sizes)
    barrier()
    res.seconds = time.time() - t0
    return res


def _similarities(out: str, name: str, centroids: np.ndarray, labels: np.ndarray, chunk: int) -> np.ndarray:
    """Cosine of each sample to its assigned centroid (for reused label files)."""
    sims = []
    start = 0
    for block in fs.iter_chunks(out, name, chunk):
        lab = labels[start:start + len(block)]
        sims.append(np.einsum("nd,nd->n", block, centroids[lab]))
        start += len(block)
    return np.concatenate(sims) if sims else np.zeros(0, np.float32)
