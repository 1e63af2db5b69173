"""Exact k-nearest-neighbour search: inner product on L2-normalised embeddings.

* The gallery goes into a flat (exact) inner-product index: faiss on the GPU when faiss sees
  one and the k asked is ≤ 2048 (faiss' GPU k-selection limit), otherwise torch on the CPU
  (``unicom.runtime.dense.FlatIP``: blocked GEMMs, bf16 where the CPU has native bf16 under
  ``precision``, every candidate re-scored in float64 and each row certified exact, so the
  top k equals float32 brute force whatever the precision). The index is asked for one result
  more than needed (k + 1, or k + 2 when the query itself is excluded).
* Queries go in chunks, so only ``chunk × k`` results are ever held: a 1M × 1M evaluation
  needs the gallery plus one chunk of results in memory, and callers reduce each chunk to
  per-query numbers before the next (``iter_search``).
* A full ranking (k = the gallery size, the revisitop protocol) is one sgemm and a stable
  sort per chunk of queries instead of a faiss heap of k = N, which is several times slower.
* Ties are broken deterministically: equal scores rank the lower gallery index first, both
  inside the top k and at its edge (when the k-th and (k+1)-th scores are equal, the query is
  searched again with a larger k until the whole tie group is seen). Results therefore do
  not depend on faiss' internal order, the chunk size or the device.
* ``exclude_self=True`` (queries *are* the gallery, row i = item i) searches k + 1 and removes
  each query's own index wherever it ranks; duplicates of the query may legitimately rank
  above it, so the first result is never assumed to be the query.
* A zero vector stays zero after normalisation (it scores 0 against everything).
"""
from __future__ import annotations

import math
from typing import Iterator, Optional, Tuple, Union

import numpy as np

from unicom.runtime.dense import FlatIP
from unicom.runtime.faiss_utils import import_faiss as _faiss
from unicom.runtime.precision import DEFAULT_PRECISION

GPU_MAX_K = 2048
RESULT_BYTES_PER_CHUNK = 256 << 20  # scores + ids of one chunk of queries


def l2_normalize(x: np.ndarray, copy: bool = True) -> np.ndarray:
    """Return a C-contiguous float32 copy of ``x`` [n, d] with unit rows (zero rows stay zero).
    ``copy=False`` normalises ``x`` in place when it already is C-contiguous float32."""
    x = np.array(x, dtype=np.float32, order="C", copy=True) if copy else np.asarray(x, np.float32, order="C")
    if x.ndim != 2:
        raise ValueError(f"embeddings must be a 2-D array [n, d], got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("embeddings contain NaN or inf; drop those rows before searching")
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    np.divide(x, norms, out=x, where=norms > 0)
    return x


def resolve_search_device(device: Union[str, None] = "auto") -> Tuple[str, int]:
    """('gpu', id) or ('cpu', -1) for a device string: auto, cpu, cuda or cuda:N."""
    name = (str(device) if device is not None else "auto").strip().lower()
    if name == "cpu":
        return "cpu", -1
    ngpu = _faiss().get_num_gpus() if hasattr(_faiss(), "get_num_gpus") else 0
    if name == "auto":
        return ("gpu", 0) if ngpu > 0 else ("cpu", -1)
    if name.startswith("cuda"):
        gid = int(name.split(":", 1)[1]) if ":" in name else 0
        if ngpu == 0:
            raise RuntimeError(f"search device {device!r} asked for, but this faiss build sees no GPU "
                               "(install faiss-gpu, or pass --device cpu)")
        if gid >= ngpu:
            raise RuntimeError(f"search device {device!r}: faiss sees only {ngpu} GPU(s)")
        return "gpu", gid
    raise ValueError(f"unknown search device {device!r}; use auto, cpu, cuda or cuda:N")


def search_device_for(model_device: Union[str, None]) -> str:
    """The search device that follows a model device: the same GPU when faiss can use it, the
    CPU for ``cpu``, and otherwise ``auto`` (a CPU-only faiss build with a CUDA model searches
    on the CPU instead of failing)."""
    name = (str(model_device) if model_device is not None else "auto").strip().lower()
    if name.startswith("cuda"):
        gid = int(name.split(":", 1)[1]) if ":" in name else 0
        ngpu = _faiss().get_num_gpus() if hasattr(_faiss(), "get_num_gpus") else 0
        return name if gid < ngpu else "auto"
    return name


class ExactSearcher:
    """A flat inner-product index over an L2-normalised gallery, on the GPU where it can be.

    ``search(xq, k)`` expects normalised queries and returns (scores, ids), each [nq, k], ordered
    by score (descending) and then gallery index (ascending).
    """

    def __init__(self, gallery: np.ndarray, device: Union[str, None] = "auto", normalized: bool = False,
                 precision: str = DEFAULT_PRECISION):
        faiss = _faiss()
        self.precision = precision  # the CPU GEMM's; results are exact either way
        self.gallery = gallery if normalized else l2_normalize(gallery)
        self.ntotal, self.dim = self.gallery.shape
        self.kind, self.gpu_id = resolve_search_device(device)
        self._cpu = None
        self._gpu = None
        if self.kind == "gpu":
            self._res = faiss.StandardGpuResources()
            cfg = faiss.GpuIndexFlatConfig()
            cfg.device = self.gpu_id
            self._gpu = faiss.GpuIndexFlatIP(self._res, self.dim, cfg)
            self._gpu.add(self.gallery)
        # The CPU index is built on first use: a full ranking (revisitop) never needs it.

    def _cpu_index(self):
        if self._cpu is None:
            self._cpu = FlatIP(self.gallery, self.precision)
        return self._cpu

    def _on_gpu(self, k_raw: int) -> bool:
        return self._gpu is not None and k_raw <= GPU_MAX_K

    def device_for(self, k: int) -> str:
        """'gpu' or 'cpu': where ``search(xq, k)`` runs (it asks faiss for k + 1 results)."""
        return "gpu" if self._on_gpu(min(k + 1, self.ntotal)) else "cpu"

    def _raw(self, xq: np.ndarray, k: int) -> Tuple[np.ndarray, np.ndarray]:
        index = self._gpu if self._on_gpu(k) else self._cpu_index()
        return index.search(np.ascontiguousarray(xq, dtype=np.float32), k)

    def search(self, xq: np.ndarray, k: int) -> Tuple[np.ndarray, np.ndarray]:
        k = int(k)
        if not 1 <= k <= self.ntotal:
            raise ValueError(f"k must be in [1, {self.ntotal}] (the gallery size), got {k}")
        if len(xq) == 0:
            return np.zeros((0, k), np.float32), np.zeros((0, k), np.int64)
        if k == self.ntotal:
            return self._full_ranking(xq)
        kk = min(k + 1, self.ntotal)  # one extra result shows whether a tie straddles the cut
        scores, ids = self._raw(xq, kk)
        if kk > k:
            risky = np.flatnonzero(scores[:, k] == scores[:, k - 1])
            scores, ids = scores[:, :k].copy(), ids[:, :k].copy()
            if risky.size:
                self._resolve_edge_ties(xq, k, kk, risky, scores, ids)
        _sort_ties(scores, ids)
        return scores, ids

    def _full_ranking(self, xq: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """Every gallery item ranked (revisitop's protocol): one sgemm and a stable sort of the
        negated scores, which is the tie rule itself (equal scores keep index order). A heap
        of k = N, as faiss would keep, is several times slower than sorting whole rows."""
        scores = np.ascontiguousarray(xq, dtype=np.float32) @ self.gallery.T
        ids = np.argsort(-scores, axis=1, kind="stable")
        return np.take_along_axis(scores, ids, axis=1), ids

    def _resolve_edge_ties(self, xq, k, kk, rows, scores, ids) -> None:
        """Re-search rows whose k-th score is tied beyond the cut, doubling k until the whole tie
        group is in view, then keep the k best by (score desc, index asc)."""
        k2 = kk
        while rows.size:
            k2 = min(2 * k2, self.ntotal)
            s2, i2 = self._raw(xq[rows], k2)
            done = np.full(len(rows), k2 == self.ntotal) | (s2[:, k2 - 1] < s2[:, k - 1])
            for r in np.flatnonzero(done):
                order = np.lexsort((i2[r], -s2[r]))[:k]
                scores[rows[r]], ids[rows[r]] = s2[r, order], i2[r, order]
            rows = rows[~done]


def _sort_ties(scores: np.ndarray, ids: np.ndarray) -> None:
    """In place: within runs of equal scores, order ids ascending (rows are score-sorted)."""
    if scores.shape[1] < 2:
        return
    rows = np.flatnonzero((scores[:, 1:] == scores[:, :-1]).any(axis=1))
    if rows.size:
        order = np.lexsort((ids[rows], -scores[rows]), axis=1)
        scores[rows] = np.take_along_axis(scores[rows], order, axis=1)
        ids[rows] = np.take_along_axis(ids[rows], order, axis=1)


def _drop_self(scores: np.ndarray, ids: np.ndarray, self_ids: np.ndarray, k: int) -> Tuple[np.ndarray, np.ndarray]:
    """Remove each row's own index from k + 1 results (or the last result where it is absent)."""
    is_self = ids == self_ids[:, None]
    absent = ~is_self.any(axis=1)
    is_self[absent, -1] = True
    keep = ~is_self
    return scores[keep].reshape(len(ids), k), ids[keep].reshape(len(ids), k)


def default_chunk_size(k: int) -> int:
    """Queries per chunk so that one chunk's results stay near 256 MiB."""
    return int(max(1, min(65536, RESULT_BYTES_PER_CHUNK // (12 * (k + 1)))))


def iter_search(queries: np.ndarray, gallery: Optional[np.ndarray], k: int, exclude_self: bool = False,
                device: Union[str, None] = "auto", chunk_size: Optional[int] = None, progress: bool = False,
                searcher: Optional[ExactSearcher] = None,
                precision: str = DEFAULT_PRECISION) -> Iterator[Tuple[int, np.ndarray, np.ndarray]]:
    """Yield ``(start, scores, ids)`` per chunk of queries; scores/ids are [chunk, k].

    ``gallery=None`` searches the queries against themselves. ``exclude_self`` needs the queries
    to be the gallery's first rows (row i is item i; distractors may follow them) and removes
    each query's own index. ``k`` is
    capped at the number of candidates (gallery size, minus one when excluding self).
    """
    xq = l2_normalize(queries)
    if searcher is None:
        searcher = ExactSearcher(xq if gallery is None else gallery, device=device, normalized=gallery is None,
                                 precision=precision)
    if exclude_self and searcher.ntotal < len(xq):
        raise ValueError("exclude_self needs the queries to be the gallery's first rows (same order)")
    n_candidates = searcher.ntotal - (1 if exclude_self else 0)
    k = min(int(k), n_candidates)
    if k < 1:
        raise ValueError(f"nothing to search: {searcher.ntotal} gallery item(s)"
                         + (" and the query itself is excluded" if exclude_self else ""))
    chunk = int(chunk_size or default_chunk_size(k))
    starts = range(0, len(xq), chunk)
    if progress:
        from unicom.cli.progress import progress_bar

        where = searcher.device_for(k + exclude_self)
        starts = progress_bar(True, iterable=starts, total=math.ceil(len(xq) / chunk), desc=f"search k={k} ({where})",
                              unit="chunk")
    for start in starts:
        block = xq[start:start + chunk]
        if exclude_self:
            s, i = searcher.search(block, k + 1)
            s, i = _drop_self(s, i, np.arange(start, start + len(block)), k)
        else:
            s, i = searcher.search(block, k)
        yield start, s, i


def search(queries: np.ndarray, gallery: Optional[np.ndarray], k: int, exclude_self: bool = False,
           device: Union[str, None] = "auto", chunk_size: Optional[int] = None,
           precision: str = DEFAULT_PRECISION) -> Tuple[np.ndarray, np.ndarray]:
    """All results at once: (scores [nq, k], ids [nq, k]). See ``iter_search``."""
    parts = list(iter_search(queries, gallery, k, exclude_self, device, chunk_size, precision=precision))
    if not parts:
        return np.zeros((0, 0), np.float32), np.zeros((0, 0), np.int64)
    return np.concatenate([p[1] for p in parts]), np.concatenate([p[2] for p in parts])
