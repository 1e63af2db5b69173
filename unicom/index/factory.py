"""Index specifications: the short names and any faiss ``index_factory`` string, over inner product.

A specification is what ``--index-type`` takes everywhere (``unicom-embed``, ``unicom-eval``):
  ``flat``  → ``Flat``            exact
  ``hnsw``  → ``HNSW32``          graph, no training
  ``ivf``   → ``IVF{nlist},Flat`` with nlist ≈ 4·√n cells (``unicom.runtime.faiss_utils.default_nlist``)
  ``auto``  → one of those by size (flat ≤ 100k, hnsw ≤ 2M, ivf above); under a memory budget
            ``unicom.index.memory.choose_auto`` picks instead (``unicom.index.build.plan_index``)
  anything else is handed to ``faiss.index_factory(d, spec, METRIC_INNER_PRODUCT)`` as written:
  ``IVF4096,PQ64``, ``OPQ64,IVF4096,PQ64``, ``IVF4096,SQ8``, ``IVF16384_HNSW32,PQ32x8``, …
An unknown string fails here, before any work, with faiss's reason and the spellings that work.
"""
from __future__ import annotations

import re
from typing import Any, Optional, Tuple

from ..runtime.faiss_utils import HNSW_M, choose_index_type, default_nlist, import_faiss

SHORT_NAMES = ("flat", "hnsw", "ivf", "auto")
EXAMPLES = "Flat, HNSW32, IVF4096,Flat, IVF4096,PQ64, OPQ64,IVF4096,PQ64, IVF4096,SQ8"


def factory_string(spec: str, n: Optional[int] = None, *, hnsw_m: Optional[int] = None,
                   nlist: Optional[int] = None) -> str:
    """The faiss factory string of ``spec`` (a short name or a factory string) for ``n`` vectors
    (``ivf`` needs ``n`` or ``nlist`` to size its cells; ``hnsw_m`` and ``nlist`` change the
    short names' graph degree and cells)."""
    s = spec.strip()
    low = s.lower()
    if low == "flat":
        return "Flat"
    if low == "hnsw":
        return f"HNSW{int(hnsw_m or HNSW_M)}"
    if low == "ivf":
        if nlist is None and n is None:
            raise ValueError("index type 'ivf' needs the collection size to choose its number of cells")
        cells = int(nlist) if nlist is not None else default_nlist(int(n))  # type: ignore[arg-type]
        if n is not None and not 1 <= cells <= n:
            raise ValueError(f"--nlist {cells} must lie in [1, {n}] (the collection's size)")
        return f"IVF{cells},Flat"
    if low == "auto":
        # without a memory budget: flat ≤ 100k vectors, hnsw ≤ 2M, ivf above (a budget: unicom.index.memory)
        if n is None:
            raise ValueError("index type 'auto' needs the collection size to choose an index")
        return factory_string(choose_index_type(int(n)), n, hnsw_m=hnsw_m, nlist=nlist)
    if low == "none":
        raise ValueError("--index-type none builds no index; give a short name (flat, hnsw, ivf, auto) "
                         "or a faiss factory string")
    return s


def make_index(spec: str, d: int, n: Optional[int] = None) -> Tuple[Any, str]:
    """An empty inner-product index of dimension ``d`` for ``spec``; returns (index, factory string).

    Raises ValueError naming ``spec`` when faiss cannot parse it or it does not fit ``d``."""
    faiss = import_faiss()
    factory = factory_string(spec, n)
    try:
        index = faiss.index_factory(int(d), factory, faiss.METRIC_INNER_PRODUCT)
    except RuntimeError as exn:
        # faiss prefixes its reason with the C++ function and source line: keep the reason alone
        reason = re.sub(r"^.*?:\d+: (Error: )?", "", str(exn).strip().splitlines()[-1]) if str(exn).strip() else ""
        raise ValueError(f"--index-type {spec!r} is not a faiss index_factory string for {d}-d vectors "
                         f"({reason or 'not understood'}); use a short name ({', '.join(SHORT_NAMES)}) "
                         f"or a factory string such as {EXAMPLES}") from None
    return index, factory


def check_spec(spec: str, d: int, n: Optional[int] = None) -> str:
    """Validate ``spec`` for ``d``-d vectors without building anything; returns its factory string."""
    return make_index(spec, d, n)[1]


def ivf_of(index) -> Optional[Any]:
    """The IVF layer of ``index`` (through an OPQ/PCA pre-transform), or None when it has none."""
    faiss = import_faiss()
    try:
        return faiss.extract_index_ivf(index)
    except RuntimeError:
        return None


def min_training_points(index) -> int:
    """The fewest training vectors ``index`` accepts without faiss degrading it: 39 per IVF cell
    (faiss's own warning threshold), 2^nbits per PQ sub-quantizer centroid set, and 256 for an
    OPQ rotation (faiss trains it with its own 8-bit product quantiser); 0 when it needs no
    training."""
    if index.is_trained:
        return 0
    faiss = import_faiss()
    ivf = ivf_of(index)
    need = 39 * int(ivf.nlist) if ivf is not None else 1
    base = faiss.downcast_index(ivf if ivf is not None else index)
    if isinstance(base, faiss.IndexPreTransform):  # OPQ/PCA in front of a PQ without IVF
        base = faiss.downcast_index(base.index)
    pq = getattr(base, "pq", None)
    if pq is not None:
        need = max(need, 1 << int(pq.nbits))
    if isinstance(index, faiss.IndexPreTransform):
        chain = [faiss.downcast_VectorTransform(index.chain.at(i)) for i in range(index.chain.size())]
        if any(isinstance(t, faiss.OPQMatrix) for t in chain):
            need = max(need, 256)
    return need
