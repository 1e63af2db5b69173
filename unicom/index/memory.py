"""How much memory an index takes, and ``auto``: the most accurate index that fits a budget.

**Estimate** (``estimate``): any factory string, from the empty faiss index itself, as
``fixed + n · per_vector`` bytes:
  * per vector: the code (``Flat``: 4·d, ``SQ8``: d, ``PQm``: m bytes), plus 8 bytes of id in an
    IVF inverted list, plus HNSW's links (2·M int32 at level 0, M more on the 1/M of the
    vectors that reach level 1, a level count and an offset: ≈ 4·(2M + M/(M-1)) + 12 bytes);
  * fixed: the IVF centroids (nlist·d float32, HNSW links of an HNSW quantizer included), an
    OPQ/PCA matrix (d_in·d_out float32), and the PQ codebooks (256 · d float32 per PQ).
The measured size on disk is saved beside it in ``index.json`` (``estimate``, ``measured_bytes``).

**Auto** (``choose_auto``), the rule of autofaiss: candidates are tried from the most to the
least accurate, and the first whose estimate fits ``max_bytes`` at the collection's size wins:
  ``Flat`` (up to ``FLAT_MAX`` vectors; above that an exact scan is slow),
  ``HNSW32`` (up to ``HNSW_MAX``; its build time grows fastest),
  ``IVF{nlist},Flat``, ``IVF{nlist},SQ8``, then ``IVF{nlist},PQ{m}`` for code sizes
  m = d/2, d/4, … down to 8 bytes (m divides d). (An OPQ rotation, ``OPQ{m},IVF…,PQ{m}``, gains
  some recall at the same size but its training costs minutes per million on a few cores; give
  it as a factory string where that is worth it.)
nlist is the power of two nearest 4·√n (≥ 39 training points per cell); from 2^16 cells on the
coarse quantizer is an HNSW graph (``IVF{nlist}_HNSW32``) so that finding the cells stays fast.
``max_query_ms`` also drops candidates whose estimated query time (``query_ms``, a
memory-bandwidth model, see its docstring) exceeds it. A budget below the smallest candidate is a
one-line error naming the smallest index and its size.
"""
from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass
from typing import Any, Dict, List, Optional

from ..runtime.faiss_utils import FLAT_MAX, HNSW_MAX, MIN_POINTS_PER_CELL, import_faiss
from .factory import ivf_of, make_index

# 1 GB = 2^30 bytes, as autofaiss counts (``--max-index-memory 4GB``)
_UNITS = {"": 1, "B": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
# the memory bandwidth (bytes/s) and per-cell cost the query-time model assumes for one query
SCAN_BYTES_PER_S = 5e9
IVF_QUANTIZER_HNSW_FROM = 1 << 16
PQ_MIN_BYTES = 8


def parse_memory(text: str) -> int:
    """Bytes in ``text``: ``4GB``, ``256MB``, ``1.5G``, ``4GiB``, ``1000000`` (units are powers of
    1024, as autofaiss reads them). A ValueError names the text and the spellings that work."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([kKmMgGtT]?)(i?[bB])?\s*", str(text))
    if not m:
        raise ValueError(f"--max-index-memory {text!r} is not a size; write it like 256MB, 4GB or 1.5G")
    return int(float(m.group(1)) * _UNITS[m.group(2).upper()])


def format_bytes(n: float) -> str:
    """``1.5 GB``-style text (powers of 1024, as ``parse_memory`` reads them)."""
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"


@dataclass
class Estimate:
    """An index's memory, ``fixed + n · per_vector`` bytes, and one query's estimated time."""

    factory: str
    n: int
    d: int
    per_vector: float
    fixed: int
    query_ms: float

    @property
    def bytes(self) -> int:
        return int(self.fixed + self.n * self.per_vector)

    def at(self, n: int) -> "Estimate":
        """The same index at ``n`` vectors (query time scaled with the scanned part)."""
        return Estimate(self.factory, n, self.d, self.per_vector, self.fixed, self.query_ms * (n / max(1, self.n)))

    def to_dict(self) -> Dict[str, Any]:
        return dict(asdict(self), bytes=self.bytes)


def _hnsw_link_bytes(m: int) -> float:
    return 4 * (2 * m + m / max(1, m - 1)) + 12


def _parts(index) -> Dict[str, Any]:
    """The layers of a (possibly pre-transformed) index: vt (list of transforms), base."""
    faiss = import_faiss()
    index = faiss.downcast_index(index)
    vts = []
    if isinstance(index, faiss.IndexPreTransform):
        vts = [faiss.downcast_VectorTransform(index.chain.at(i)) for i in range(index.chain.size())]
        index = faiss.downcast_index(index.index)
    return {"vt": vts, "base": index}


def estimate(spec: str, n: int, d: int) -> Estimate:
    """The memory of ``spec`` (short name or factory string) holding ``n`` ``d``-d vectors."""
    index, factory = make_index(spec, d, n)
    faiss = import_faiss()
    parts = _parts(index)
    base = parts["base"]
    fixed = sum(4 * int(vt.d_in) * int(vt.d_out) for vt in parts["vt"])
    ivf = ivf_of(index)
    if ivf is not None:
        quant = faiss.downcast_index(ivf.quantizer)
        per = float(ivf.code_size) + 8
        cells = int(ivf.nlist)
        fixed += 4 * cells * int(ivf.d)
        if isinstance(quant, faiss.IndexHNSW):
            fixed += int(cells * _hnsw_link_bytes(int(quant.hnsw.nb_neighbors(1))))
        pq = getattr(faiss.downcast_index(ivf), "pq", None)
        if pq is not None:
            fixed += 4 * int(pq.ksub) * int(ivf.d)
        # find the cells (nlist dot products, or ~log of them through HNSW), then scan ≈ nprobe
        # of them; nprobe ≈ nlist/64 reaches the usual recall (the old fixed formula)
        probe_frac = max(16, cells // 64) / cells if cells else 1.0
        quant_bytes = 4 * int(ivf.d) * (min(cells, 2048) if isinstance(quant, faiss.IndexHNSW) else cells)
        scan = quant_bytes + probe_frac * n * per
    elif isinstance(base, faiss.IndexHNSW):
        storage = faiss.downcast_index(base.storage)
        per = float(storage.sa_code_size()) + _hnsw_link_bytes(int(base.hnsw.nb_neighbors(1)))
        scan = 4096 * per  # a few thousand distance computations, whatever n
    else:
        per = float(base.sa_code_size())
        pq = getattr(base, "pq", None)
        if pq is not None:
            fixed += 4 * int(pq.ksub) * int(base.d)
        scan = n * per
    return Estimate(factory, int(n), int(d), per, int(fixed), 1000.0 * scan / SCAN_BYTES_PER_S)


def auto_nlist(n: int) -> int:
    """Cells of an ``auto`` IVF: the power of two nearest 4·√n, with ≥ 39 training points per cell."""
    target = 4 * math.sqrt(max(1, n))
    nlist = 1 << max(0, round(math.log2(target)))
    while nlist > 1 and nlist * MIN_POINTS_PER_CELL > n:
        nlist //= 2
    return nlist


def auto_candidates(n: int, d: int) -> List[str]:
    """The factory strings ``auto`` tries for ``n`` ``d``-d vectors, most accurate first."""
    out = []
    if n <= FLAT_MAX:
        out.append("Flat")
    if n <= HNSW_MAX:
        out.append("HNSW32")
    nlist = auto_nlist(n)
    ivf = f"IVF{nlist}_HNSW32" if nlist >= IVF_QUANTIZER_HNSW_FROM else f"IVF{nlist}"
    out += [f"{ivf},Flat", f"{ivf},SQ8"]
    m = d // 2
    while m >= PQ_MIN_BYTES:
        if d % m == 0:
            out.append(f"{ivf},PQ{m}")
        m //= 2
    return out


@dataclass
class AutoChoice:
    """What ``auto`` picked, why, and what it tried."""

    factory: str
    estimate: Estimate
    budget: Optional[int]
    max_query_ms: Optional[float]
    tried: List[Dict[str, Any]]

    def describe(self) -> str:
        """One line for the console: the choice, its estimate and the budget."""
        why = f"budget {format_bytes(self.budget)}" if self.budget else "no memory budget"
        if self.max_query_ms:
            why += f", ≤ {self.max_query_ms:g} ms per query"
        return (f"auto: {self.factory} (estimated {format_bytes(self.estimate.bytes)}, "
                f"{self.estimate.per_vector:.0f} B/vector, ~{self.estimate.query_ms:.2f} ms/query; {why}, "
                f"{self.estimate.n:,} × {self.estimate.d} vectors)")

    def to_dict(self) -> Dict[str, Any]:
        return {"factory": self.factory, "estimate": self.estimate.to_dict(), "budget": self.budget,
                "max_query_ms": self.max_query_ms, "tried": self.tried}


def choose_auto(n: int, d: int, max_bytes: Optional[int] = None, max_query_ms: Optional[float] = None) -> AutoChoice:
    """The most accurate candidate (``auto_candidates``) that fits ``max_bytes`` and
    ``max_query_ms`` at ``n`` vectors. Raises a one-line ValueError when none fits, naming the
    smallest (or fastest) candidate and what it needs."""
    if n <= 0:
        raise ValueError("nothing to index: the collection is empty")
    tried: List[Dict[str, Any]] = []
    ests = [estimate(f, n, d) for f in auto_candidates(n, d)]
    for est in ests:
        fits_mem = max_bytes is None or est.bytes <= max_bytes
        fits_time = max_query_ms is None or est.query_ms <= max_query_ms
        tried.append({"factory": est.factory, "bytes": est.bytes, "query_ms": est.query_ms,
                      "fits": bool(fits_mem and fits_time)})
        if fits_mem and fits_time:
            return AutoChoice(est.factory, est, max_bytes, max_query_ms, tried)
    smallest = min(ests, key=lambda e: e.bytes)
    if max_bytes is not None and smallest.bytes > max_bytes:
        raise ValueError(f"--max-index-memory {format_bytes(max_bytes)} is smaller than the smallest index for "
                         f"{n:,} × {d} vectors ({smallest.factory}: {format_bytes(smallest.bytes)}); give at least "
                         f"{format_bytes(smallest.bytes * 1.01)}")
    fastest = min((e for e in ests if max_bytes is None or e.bytes <= max_bytes), key=lambda e: e.query_ms)
    within = format_bytes(max_bytes) if max_bytes else "any memory"
    raise ValueError(f"--max-query-ms {max_query_ms:g}: no index within {within} is estimated that fast for {n:,} "
                     f"vectors (fastest: {fastest.factory}, ~{fastest.query_ms:.2f} ms); raise --max-query-ms or "
                     "--max-index-memory")
