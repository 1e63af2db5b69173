"""Dense inner-product search on the CPU with torch, in cache-sized blocks: nearest centroid
(k-means, label assignment) and exact top-k (kNN evaluation, distractors, flat search).

Why torch and not faiss on the CPU: torch's GEMM (MKL / oneDNN) knows the CPU it runs on and
has bf16 kernels for CPUs with AMX or AVX-512 BF16, while the OpenBLAS bundled with the faiss
wheel may run generic kernels (``faiss_blas_warning``). faiss stays for ANN indexes and GPUs.

``precision`` is a ``unicom.runtime.precision`` name resolved for the CPU (``auto``: bf16 where
the CPU has native bf16, fp32 elsewhere); the GEMM accumulates in float32 either way.

* ``nearest`` (k-means, label assignment): the argmax of the GEMM's scores, with rows whose two
  best bf16 scores are nearly tied re-scored in float32; the similarities are recomputed in
  float32 for the chosen centroid, so objectives are float32 sums. A label can differ from
  float32's only where bf16's error exceeds the near-tie margin (none in the tests and
  benchmarks, tests/unicom/runtime/test_dense.py).
* ``topk`` is exact whatever the GEMM precision: the GEMM proposes ``k + margin`` candidates,
  each is re-scored in float64, and a row is accepted only when its k-th re-scored similarity
  beats the best possible true similarity of every item left out (the cut-off score plus a
  rigorous bound on the GEMM's error, ``gemm_error_bound``); other rows are searched again in
  float64 against the whole database. Scores are the float64 inner products rounded to
  float32, so fp32 and bf16 runs return the same arrays; ties rank the lower index first.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Tuple, Union

import numpy as np
import torch

from .precision import DEFAULT_PRECISION, resolve_precision

SCORE_BLOCK_BYTES = 8 << 20      # one block of float32 scores: fits the L2/L3 of a server core
RESCORE_BLOCK_BYTES = 32 << 20   # gathered float64 candidate rows re-scored at once
DB_BLOCK = 4096                  # database rows per GEMM block: with the query block, scores stay in cache
BF16_UNIT_ROUNDOFF = 2.0 ** -8   # bfloat16 keeps 8 significant bits
FP32_UNIT_ROUNDOFF = 2.0 ** -24


def gemm_dtype(precision: str = DEFAULT_PRECISION) -> torch.dtype:
    """The CPU GEMM dtype for ``precision``: bfloat16 or float32."""
    return torch.bfloat16 if resolve_precision(precision, "cpu") == "bf16" else torch.float32


def block_rows(n_cols: int, budget: int = SCORE_BLOCK_BYTES, minimum: int = 64) -> int:
    """Rows per block so that a [rows, n_cols] float32 score block stays within ``budget`` bytes."""
    return max(minimum, budget // (4 * max(1, n_cols)))


def _as_tensor(x: np.ndarray, dtype: torch.dtype) -> torch.Tensor:
    t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    return t if dtype == torch.float32 else t.to(dtype)


NEAR_TIE_RTOL = BF16_UNIT_ROUNDOFF  # nearest(): rows whose two best bf16 scores are this close are re-scored


@torch.inference_mode()
def nearest(x: np.ndarray, centroids: np.ndarray, precision: str = DEFAULT_PRECISION,
            block: Optional[int] = None) -> Tuple[np.ndarray, np.ndarray]:
    """Nearest centroid of each row of ``x`` [n, D] by inner product with ``centroids`` [K, D]:
    (similarities float32 [n], computed in float32 for the chosen centroid; labels int64 [n]).

    With a bf16 GEMM, a row whose two best scores are within ``NEAR_TIE_RTOL·‖x‖·max‖c‖``
    (2^-8: several times the largest bf16 error measured on unit vectors, 1.3e-3 at D=512) is
    re-scored against every centroid in float32, so the labels are float32's except where
    bf16's error exceeds that margin."""
    dtype = gemm_dtype(precision)
    c32 = _as_tensor(centroids, torch.float32)
    cg = c32 if dtype == torch.float32 else c32.to(dtype)
    c_norm = float(c32.norm(dim=1).max()) if len(c32) else 0.0
    n = len(x)
    sims, labels = np.empty(n, np.float32), np.empty(n, np.int64)
    step = block or block_rows(len(centroids))
    for i in range(0, n, step):
        xb = _as_tensor(x[i:i + step], torch.float32)
        if dtype == torch.float32 or len(c32) < 2:
            lab = torch.argmax(xb @ c32.T, dim=1)
        else:
            # topk on the bf16 block: torch's bf16 argmax is several times slower
            top = torch.topk(xb.to(dtype) @ cg.T, 2, dim=1)
            lab = top.indices[:, 0].clone()
            gap = (top.values[:, 0] - top.values[:, 1]).float()
            near = torch.nonzero(gap <= NEAR_TIE_RTOL * xb.norm(dim=1) * c_norm).flatten()
            if len(near):
                lab[near] = torch.argmax(xb[near] @ c32.T, dim=1)
        labels[i:i + len(xb)] = lab.numpy()
        sims[i:i + len(xb)] = torch.einsum("nd,nd->n", xb, c32[lab]).numpy()
    return sims, labels


@dataclass
class _DatabaseNorms:
    """Per-database constants of ``gemm_error_bound``: the largest ‖y‖, ‖ŷ‖ and ‖ŷ - y‖."""

    norm: float
    rounded_norm: float
    residual: float

    @classmethod
    def of(cls, db: torch.Tensor, dtype: torch.dtype) -> "_DatabaseNorms":
        # float32 norms with a 0.1% allowance: float32 rounding of a norm is far below that
        slack = 1.001
        norm = slack * float(db.norm(dim=1).max()) if len(db) else 0.0
        if dtype == torch.float32 or not len(db):
            return cls(norm, norm, 0.0)
        res, rn = 0.0, 0.0
        for j in range(0, len(db), 65536):  # blockwise: no second full copy of the database
            b = db[j:j + 65536]
            bh = b.to(dtype).float()
            res = max(res, float((bh - b).norm(dim=1).max()))
            rn = max(rn, float(bh.norm(dim=1).max()))
        return cls(norm, slack * rn, slack * res)


def gemm_error_bound(q: torch.Tensor, db: "_DatabaseNorms", dtype: torch.dtype) -> Tuple[torch.Tensor, float]:
    """A bound on |GEMM score - exact inner product| for each query row: (additive term [nq]
    float64, relative factor on |score|). For bf16, x = x̂ + δ gives
    |x̂·ŷ - x·y| ≤ ‖x̂‖‖ŷ - y‖ + ‖x̂ - x‖‖y‖ (Cauchy-Schwarz), plus float32 accumulation
    (γ_D ‖x̂‖‖ŷ‖) and the rounding of the output to bf16 (relative u); for float32 the
    accumulation term alone."""
    d = q.shape[1]
    gamma = d * FP32_UNIT_ROUNDOFF / (1 - d * FP32_UNIT_ROUNDOFF)
    q64 = q.double()
    if dtype == torch.float32:
        return gamma * q64.norm(dim=1) * db.norm, 0.0
    qh = q.to(dtype).double()
    qhn = qh.norm(dim=1)
    add = qhn * db.residual + (qh - q64).norm(dim=1) * db.norm + gamma * qhn * db.rounded_norm
    u = BF16_UNIT_ROUNDOFF
    return add, u / (1 - u)


@dataclass
class TopK:
    """``scores`` float32 [nq, k] (descending; ties by ascending id), ``ids`` int64 [nq, k], and
    how many rows the certificate sent to the float64 fallback."""

    scores: np.ndarray
    ids: np.ndarray
    fallback_rows: int = 0


def _order(scores: torch.Tensor, ids: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Sort each row by score descending, then id ascending (two stable sorts)."""
    by_id = torch.argsort(ids, dim=1, stable=True)
    s, i = scores.gather(1, by_id), ids.gather(1, by_id)
    by_score = torch.argsort(s, dim=1, descending=True, stable=True)
    return s.gather(1, by_score), i.gather(1, by_score)


def _candidates(q: torch.Tensor, db_g: torch.Tensor, c: int, db_block: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """The ``c`` best GEMM scores (float32 [nq, c]) and ids over the database in blocks."""
    best_s = torch.full((len(q), 0), -math.inf, dtype=torch.float64 if db_g.dtype == torch.float64 else torch.float32)
    best_i = torch.zeros((len(q), 0), dtype=torch.int64)
    qg = q.to(db_g.dtype)
    for j in range(0, len(db_g), db_block):
        s, i = torch.topk(qg @ db_g[j:j + db_block].T, min(c, len(db_g) - j, db_block), dim=1)
        s = s if s.dtype == torch.float64 else s.float()  # topk on bf16 first: the cast is then small
        best_s, pos = torch.topk(torch.cat([best_s, s], 1), min(c, best_s.shape[1] + s.shape[1]), dim=1)
        best_i = torch.cat([best_i, i + j], 1).gather(1, pos)
    return best_s, best_i


def _rescore(q64: torch.Tensor, db: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """Float64 inner products of each query with its candidate rows: [nq, c]."""
    out = torch.empty(ids.shape, dtype=torch.float64)
    per_row = ids.shape[1] * db.shape[1] * 8
    step = max(1, RESCORE_BLOCK_BYTES // max(per_row, 1))
    for r in range(0, len(ids), step):
        rows = db[ids[r:r + step]].double()                     # [b, c, D]
        out[r:r + step] = torch.bmm(rows, q64[r:r + step, :, None])[..., 0]
    return out


class _Database:
    """A database as float32 tensor, with its GEMM copies and norms made once per dtype."""

    def __init__(self, tensor: torch.Tensor):
        self.tensor = tensor
        self._by_dtype: dict = {}

    def __len__(self) -> int:
        return len(self.tensor)

    def get(self, dtype: torch.dtype) -> Tuple[torch.Tensor, _DatabaseNorms]:
        if dtype not in self._by_dtype:
            g = self.tensor if dtype == torch.float32 else self.tensor.to(dtype)
            self._by_dtype[dtype] = (g, _DatabaseNorms.of(self.tensor, dtype))
        return self._by_dtype[dtype]


def _exact_rows(q64: torch.Tensor, db: torch.Tensor, k: int, db_block: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """Float64 brute force for a few rows: the last fallback when no certificate holds."""
    best_s = torch.full((len(q64), 0), -math.inf, dtype=torch.float64)
    best_i = torch.zeros((len(q64), 0), dtype=torch.int64)
    for j in range(0, len(db), db_block):
        s = q64 @ db[j:j + db_block].double().T
        s, i = torch.topk(s, min(k, s.shape[1]), dim=1)
        best_s, pos = torch.topk(torch.cat([best_s, s], 1), min(k, best_s.shape[1] + s.shape[1]), dim=1)
        best_i = torch.cat([best_i, i + j], 1).gather(1, pos)
    return best_s, best_i


def _certified_rows(q: torch.Tensor, db: torch.Tensor, db_g: torch.Tensor, norms: Optional[_DatabaseNorms],
                    k: int, c: int, db_block: int) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """GEMM candidates, float64 re-scores in order, and the rows whose certificate failed."""
    g, ids = _candidates(q, db_g, c, db_block)
    s, i = _order(_rescore(q.double(), db, ids), ids)
    if norms is None:  # every item was a candidate
        return s, i, torch.zeros(0, dtype=torch.int64)
    # every item not proposed scored at most the c-th GEMM score, so its exact score is at most
    # that plus the GEMM's error bound; the row is exact when its k-th score is above that
    add, rel = gemm_error_bound(q, norms, db_g.dtype)
    cut = g[:, -1].double()
    best_left_out = cut + cut.abs() * rel + add
    return s, i, torch.nonzero(s[:, k - 1] <= best_left_out * (1 + 1e-6) + 1e-12).flatten()


@torch.inference_mode()
def topk(queries: np.ndarray, database: "Union[np.ndarray, _Database]", k: int, precision: str = DEFAULT_PRECISION,
         margin: Optional[int] = None, block: Optional[int] = None, db_block: int = DB_BLOCK) -> TopK:
    """Exact top-``k`` inner products of ``queries`` [nq, D] against ``database`` [N, D] (see
    the module docstring). ``margin`` extra candidates per row (default max(8, k // 4) with
    bf16); ``block`` queries per block (cache-sized by default). Rows whose bf16 certificate
    fails are searched again with float32 GEMMs (margin max(2, k // 8)), then in float64."""
    n = len(database)
    if not 1 <= k <= n:
        raise ValueError(f"k must be in [1, {n}] (the database size), got {k}")
    dtype = gemm_dtype(precision)
    db = database.tensor if isinstance(database, _Database) else _as_tensor(database, torch.float32)
    cache = database if isinstance(database, _Database) else _Database(db)
    db_block = min(db_block, n)
    # (GEMM dtype, candidates): bf16 where asked, then float32; float64 brute force last
    stages = [(torch.float32, min(n, k + max(2, k // 8)))]
    if dtype != torch.float32:
        stages.insert(0, (dtype, min(n, k + (max(8, k // 4) if margin is None else margin))))
    elif margin is not None:
        stages[0] = (torch.float32, min(n, k + margin))
    prepared = [(*cache.get(dt), c) for dt, c in stages]
    prepared = [(db_g, norms if c < n else None, c) for db_g, norms, c in prepared]
    step = block or block_rows(db_block, minimum=256)
    out_s = np.empty((len(queries), k), np.float32)
    out_i = np.empty((len(queries), k), np.int64)
    fallback = 0
    for r in range(0, len(queries), step):
        q = _as_tensor(queries[r:r + step], torch.float32)
        rows = torch.arange(len(q))
        s = torch.empty((len(q), k), dtype=torch.float64)
        i = torch.empty((len(q), k), dtype=torch.int64)
        for n_stage, (db_g, norms, c) in enumerate(prepared):
            if n_stage:
                fallback += len(rows)
            ss, ii, bad = _certified_rows(q[rows], db, db_g, norms, k, c, db_block)
            s[rows], i[rows] = ss[:, :k], ii[:, :k]
            rows = rows[bad]
            if not len(rows):
                break
        if len(rows):
            s[rows], i[rows] = _order(*_exact_rows(q[rows].double(), db, k, db_block))
        out_s[r:r + len(q)] = s.float().numpy()
        out_i[r:r + len(q)] = i.numpy()
    return TopK(out_s, out_i, fallback)


class FlatIP:
    """An exact inner-product index on the CPU with faiss's ``search`` contract, backed by
    ``topk``: ``FlatIP(vectors).search(xq, k) -> (scores float32 [nq, k], ids int64 [nq, k])``.
    For flat search where faiss's CPU BLAS would be slower (module docstring)."""

    def __init__(self, vectors: np.ndarray, precision: str = DEFAULT_PRECISION):
        self.vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        self.ntotal, self.d = self.vectors.shape
        self.precision = precision
        self._db = _Database(torch.from_numpy(self.vectors))  # bf16 copy and norms made once

    def search(self, xq: np.ndarray, k: int) -> Tuple[np.ndarray, np.ndarray]:
        """(scores, ids) [nq, k]; a query row with NaN/inf finds nothing (ids -1, scores -inf),
        as with faiss."""
        xq = np.asarray(xq, np.float32)
        ok = np.isfinite(xq).all(axis=1)
        if ok.all():
            r = topk(xq, self._db, int(k), self.precision)
            return r.scores, r.ids
        scores, ids = np.full((len(xq), k), -np.inf, np.float32), np.full((len(xq), k), -1, np.int64)
        if ok.any():
            r = topk(xq[ok], self._db, int(k), self.precision)
            scores[ok], ids[ok] = r.scores, r.ids
        return scores, ids


GENERIC_BLAS_CORES = ("prescott", "katmai", "coppermine", "northwood", "core2", "penryn", "dunnington",
                      "nehalem", "atom", "generic", "banias")
_blas_warned = False


def faiss_blas_core() -> Optional[str]:
    """The core type the OpenBLAS bundled with faiss reports (threadpoolctl), or None when faiss
    links no OpenBLAS of its own (or threadpoolctl is missing)."""
    try:
        import faiss  # noqa: F401  (its BLAS must be loaded to be seen)
        from threadpoolctl import threadpool_info
    except ImportError:
        return None
    for lib in threadpool_info():
        if lib.get("internal_api") == "openblas" and "faiss" in str(lib.get("filepath", "")):
            return str(lib.get("architecture") or "") or None
    return None


def warn_if_faiss_blas_generic(logger=None) -> bool:
    """Warn once per process when faiss's OpenBLAS runs generic (pre-AVX) kernels on this CPU,
    which makes faiss's CPU GEMMs several times slower than this CPU's floor; returns whether
    it is generic. ``OPENBLAS_CORETYPE`` (e.g. ``Haswell``, ``SkylakeX``) overrides the choice."""
    global _blas_warned
    core = faiss_blas_core()
    generic = core is not None and core.lower() in GENERIC_BLAS_CORES
    if generic and not _blas_warned:
        _blas_warned = True
        import logging

        (logger or logging.getLogger(__name__)).warning(
            "faiss's bundled OpenBLAS runs generic %s kernels on this CPU, so faiss's CPU GEMMs run far below "
            "its speed (unicom's exact CPU search and k-means use torch instead). OPENBLAS_CORETYPE=Haswell (or "
            "SkylakeX where the CPU has AVX-512) set before Python starts overrides it; it also applies to numpy's "
            "OpenBLAS, and a core type the CPU lacks crashes with an illegal instruction (docs/benchmarks.md)", core)
    return generic
