"""faiss in one place: the import, which GPUs it uses, and the inner-product indexes.

**Which GPUs** (``pick_gpus``) follows faiss ``contrib/exhaustive_search.py``'s ``ngpu``
convention: ``-1`` = every GPU faiss sees, ``0`` = the CPU, ``n > 0`` = the first n. The CLIs'
spellings map onto it: ``auto`` = -1, ``none``/``cpu`` = 0, and a list ``0,2`` names devices.
Under torchrun (``per_rank``) ``auto`` means the rank's own GPU, so ranks never share one.

**Indexes** (``build_index``): all over L2-normalised vectors, inner product = cosine.
  ``flat``  exact (``IndexFlatIP``), on the CPU, one GPU or sharded over several.
  ``hnsw``  ``IndexHNSWFlat`` (M=32, efConstruction=200, efSearch=128): no training, high recall.
  ``ivf``   ``IndexIVFFlat`` with nlist ≈ 4·√n spherical k-means cells, trained on ≤ 256 points
            per cell; nprobe = max(16, nlist/64) cells are searched.
``auto`` picks flat up to 100k vectors, hnsw up to 2M, ivf above.
"""
from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence, Tuple, Union

if TYPE_CHECKING:  # numpy is imported where it is used: the CLIs' --help imports this module
    import numpy as np

INDEX_TYPES = ("auto", "flat", "ivf", "hnsw", "none")
FLAT_MAX = 100_000
HNSW_MAX = 2_000_000
HNSW_M = 32
EF_CONSTRUCTION = 200
EF_SEARCH = 128
MIN_POINTS_PER_CELL = 39  # faiss warns below this many training points per centroid
MAX_POINTS_PER_CELL = 256


def import_faiss():
    """The faiss module (imported on first use: CLIs' ``--help`` and ``import unicom`` need none).

    faiss's loader logs at INFO each instruction set it tries ("Could not load library with
    AVX512 support …"): normal fallbacks, not errors, so that logger shows warnings only."""
    loader_log = logging.getLogger("faiss.loader")
    if loader_log.level == logging.NOTSET:
        loader_log.setLevel(logging.WARNING)
    import faiss

    return faiss


def faiss_gpu_count() -> int:
    """How many GPUs faiss can use (0 with a CPU-only faiss build)."""
    get = getattr(import_faiss(), "get_num_gpus", None)
    return int(get()) if get else 0


def pick_gpus(spec: Union[str, int, Sequence[int], None] = -1, local_rank: Optional[int] = None) -> List[int]:
    """The GPU ids faiss should use, ``[]`` for the CPU.

    ``spec``: an ``ngpu`` int (-1 all, 0 none, n the first n), ``None`` (= -1), a list of ids, or
    a string ``auto`` / ``none`` / ``cpu`` / ``"0,1"``. With ``local_rank`` given (one process of
    several on a node), ``auto`` / -1 takes only that rank's GPU. Asking for GPUs that faiss
    does not see is a ValueError naming the spec."""
    n = faiss_gpu_count()
    if spec is None:
        spec = -1
    if isinstance(spec, str):
        s = spec.strip().lower()
        if s in ("auto", ""):
            spec = -1
        elif s in ("none", "cpu"):
            spec = 0
        else:
            try:
                spec = [int(x) for x in s.split(",") if x.strip()]
            except ValueError:
                raise ValueError(f"GPU spec {spec!r}: use auto, none, or a list of device ids like 0,1") from None
    if isinstance(spec, int):
        if spec == -1:
            if n == 0:
                return []
            return [local_rank % n] if local_rank is not None else list(range(n))
        if spec > n:
            raise ValueError(f"asked faiss for {spec} GPU(s) but it sees {n}")
        return list(range(max(0, spec)))
    ids = [int(i) for i in spec]
    bad = [i for i in ids if not 0 <= i < n]
    if bad:
        raise ValueError(f"GPU ids {ids}: faiss sees only {n} GPU(s)" + (" (a CPU-only faiss build)" if not n else ""))
    return ids


_GPU_RESOURCES: Dict[int, Any] = {}


def gpu_resources(dev: int):
    """One ``StandardGpuResources`` per device and process (they hold scratch memory)."""
    if dev not in _GPU_RESOURCES:
        _GPU_RESOURCES[dev] = import_faiss().StandardGpuResources()
    return _GPU_RESOURCES[dev]


def flat_ip_index(d: int, gpus: Sequence[int] = ()):
    """An empty exact inner-product index of dimension ``d``: CPU, one GPU, or sharded over several."""
    faiss = import_faiss()
    if not gpus:
        return faiss.IndexFlatIP(d)
    if len(gpus) == 1:
        cfg = faiss.GpuIndexFlatConfig()
        cfg.device = int(gpus[0])
        return faiss.GpuIndexFlatIP(gpu_resources(int(gpus[0])), d, cfg)
    co = faiss.GpuMultipleClonerOptions()
    co.shard = True
    return faiss.index_cpu_to_gpus_list(faiss.IndexFlatIP(d), co=co, gpus=[int(g) for g in gpus])


def choose_index_type(n: int) -> str:
    """The ``auto`` choice for a collection of ``n`` vectors."""
    if n <= FLAT_MAX:
        return "flat"
    if n <= HNSW_MAX:
        return "hnsw"
    return "ivf"


def default_nlist(n: int) -> int:
    """About 4·√n cells, but never fewer than 39 training points per cell."""
    return max(1, min(int(4 * math.sqrt(n)), n // MIN_POINTS_PER_CELL))


def default_nprobe(nlist: int) -> int:
    return min(nlist, max(16, nlist // 64))


def build_index(x: "np.ndarray", kind: str = "auto", nlist: Optional[int] = None, nprobe: Optional[int] = None,
                hnsw_m: int = HNSW_M, ef_construction: int = EF_CONSTRUCTION, ef_search: int = EF_SEARCH,
                seed: int = 0, gpus: Sequence[int] = ()) -> Tuple[Any, str, Dict[str, Any]]:
    """An inner-product index holding the rows of ``x`` (float32 [n, d], normalised); row i gets
    id i. Returns (index, type, params). ``gpus`` places a flat index on those GPUs (hnsw and
    ivf stay on the CPU here)."""
    import numpy as np

    faiss = import_faiss()
    x = np.ascontiguousarray(x, dtype=np.float32)
    if x.ndim != 2 or x.shape[0] == 0:
        raise ValueError(f"need a non-empty [n, d] array to index, got shape {x.shape}")
    n, d = x.shape
    kind = choose_index_type(n) if kind == "auto" else kind
    params: Dict[str, Any] = {}
    if kind == "flat":
        index = flat_ip_index(d, gpus)
    elif kind == "hnsw":
        index = faiss.IndexHNSWFlat(d, hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = ef_construction
        index.hnsw.efSearch = ef_search
        params = {"M": hnsw_m, "efConstruction": ef_construction, "efSearch": ef_search}
    elif kind == "ivf":
        nlist = default_nlist(n) if nlist is None else int(nlist)
        if not 1 <= nlist <= n:
            raise ValueError(f"nlist={nlist} must lie in [1, n={n}]")
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, nlist, faiss.METRIC_INNER_PRODUCT)
        index.cp.spherical = True
        index.cp.seed = seed
        m = min(n, nlist * MAX_POINTS_PER_CELL)
        train = x if m == n else x[np.sort(np.random.default_rng(seed).choice(n, m, replace=False))]
        index.train(train)
        index.nprobe = default_nprobe(nlist) if nprobe is None else min(int(nprobe), nlist)
        params = {"nlist": nlist, "nprobe": int(index.nprobe)}
    else:
        raise ValueError(f"unknown index type {kind!r}; choose from {', '.join(INDEX_TYPES)}")
    index.add(x)
    return index, kind, params


def write_index_file(index, path) -> None:
    """``faiss.write_index`` atomically, with the usual file mode (``unicom.formats.atomic_io.atomic_path``:
    a failed write leaves no temporary file and names ``path``); GPU indexes are copied to the
    CPU first."""
    from ..formats.atomic_io import atomic_path

    faiss = import_faiss()
    if hasattr(faiss, "index_gpu_to_cpu") and "Gpu" in type(index).__name__:
        index = faiss.index_gpu_to_cpu(index)
    with atomic_path(path) as tmp:
        faiss.write_index(index, str(tmp))
