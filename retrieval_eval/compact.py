"""Compact embeddings measured (``unicom-eval --dims 32 64 128 256 [--pca-fit SOURCE]``): every
metric with the embedding reduced to d dimensions, against d and against bytes per vector.

Reductions, each followed by L2 re-normalisation (the search is cosine):
* ``truncate``: the first d coordinates. Meaningful only for an encoder trained so that its
  leading coordinates carry the most (Unicom's feature-dimension sampling, Matryoshka-style
  training); for any other encoder the first d coordinates are an arbitrary subset.
* ``pca``: projection on the top d principal components of the L2-normalised embeddings of a
  *fit set* (``--pca-fit``), centred on the fit set's mean. Never the test set
  (``pca_fit.resolve_fit_source`` refuses it): a PCA fitted on the test images would adapt
  the reduction to them.

Each reduction is reported stored as float32 (4·d bytes per vector) and as float16 (2·d
bytes: the embedding rounded to half precision before the search); the full embedding and,
with ``--index-type``, the index's codes (its bytes per vector, ``code_bytes_per_vector``)
join the same table and the plot of the headline metric (R@1 for labelled benchmarks) against
dimension and against bytes per vector.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from . import knn
from .loaders.base import GLDV2, LABELLED, REVISITOP

HEADLINE = {LABELLED: "R@1", REVISITOP: "mAP_M", GLDV2: "mAP@100"}
DTYPE_BYTES = {"float32": 4, "float16": 2}


def headline_metric(protocol: str) -> str:
    """The metric plotted for a protocol (R@1 for labelled benchmarks)."""
    return HEADLINE[protocol]


def check_dims(dims: Sequence[int], embed_dim: int, fit_rows: Optional[int] = None) -> List[int]:
    """Sorted unique ``dims`` after checking each lies in [1, embed_dim] (and ≤ the fit set's
    size for PCA); raises a one-line ValueError naming the value."""
    out = sorted({int(d) for d in dims})
    bad = [d for d in out if not 1 <= d <= embed_dim]
    if bad:
        raise ValueError(f"--dims {' '.join(map(str, bad))}: the embedding has {embed_dim} dimensions; give "
                         f"values between 1 and {embed_dim}")
    if fit_rows is not None and out[-1] > fit_rows:
        raise ValueError(f"--pca-fit has {fit_rows} vectors, fewer than --dims {out[-1]}: PCA to d dimensions "
                         f"needs at least d fit vectors; name a larger fit set or smaller --dims")
    return out


def truncate(x: np.ndarray, d: int) -> np.ndarray:
    """The first ``d`` coordinates of ``x`` [n, D], re-normalised: float32 [n, d]."""
    return knn.l2_normalize(np.asarray(x, np.float32)[:, :d])


def as_float16(x: np.ndarray) -> np.ndarray:
    """``x`` stored as float16 and read back as float32 (what a half-precision store searches)."""
    return np.asarray(x, np.float32).astype(np.float16).astype(np.float32)


@dataclass
class PCA:
    """Principal axes fitted on a fit set: ``mean`` [D] and ``components`` [d_max, D] (rows in
    decreasing explained variance), ``explained`` [d_max] variance ratios."""

    mean: np.ndarray
    components: np.ndarray
    explained: np.ndarray
    fit_rows: int

    @classmethod
    def fit(cls, fit_emb: np.ndarray, d_max: int, seed: int = 0) -> "PCA":
        """Fit on the L2-normalised rows of ``fit_emb`` [m, D] (sklearn's exact SVD solver)."""
        from sklearn.decomposition import PCA as SkPCA

        x = knn.l2_normalize(fit_emb)
        check_dims([d_max], x.shape[1], len(x))
        pca = SkPCA(n_components=int(d_max), svd_solver="full", random_state=seed).fit(x.astype(np.float64))
        return cls(pca.mean_.astype(np.float32), pca.components_.astype(np.float32),
                   pca.explained_variance_ratio_.astype(np.float64), len(x))

    def project(self, x: np.ndarray, d: int) -> np.ndarray:
        """``x`` [n, D] (normalised first) on the top ``d`` axes, re-normalised: float32 [n, d]."""
        if d > len(self.components):
            raise ValueError(f"this PCA has {len(self.components)} components, not {d}")
        z = (knn.l2_normalize(x) - self.mean) @ self.components[:d].T
        return knn.l2_normalize(z)


@dataclass
class CompactRow:
    """One line of the table: a reduction, its size and the metrics through it."""

    method: str                     # full, truncate, pca or index
    dims: int
    dtype: str                      # float32, float16, or "code" for an index's codes
    bytes_per_vector: Optional[float]
    metrics: Dict[str, Any] = field(default_factory=dict)

    def record(self) -> Dict[str, Any]:
        return {"method": self.method, "dims": self.dims, "dtype": self.dtype,
                "bytes_per_vector": self.bytes_per_vector, "metrics": self.metrics}


def compact_rows(q_emb: np.ndarray, g_emb: Optional[np.ndarray], dims: Sequence[int], score_fn,
                 full_metrics: Dict[str, Any], pca: Optional[PCA] = None,
                 index_record: Optional[Dict[str, Any]] = None, progress: bool = False) -> List[CompactRow]:
    """The table's rows: the full embedding (float32, and float16), then for each d in ``dims``
    truncation and (with ``pca``) PCA, each as float32 and float16, then the index (if given).
    ``score_fn(q, g)`` returns the metrics dict of reduced queries and gallery (``g`` None for
    self-retrieval); ``full_metrics`` are the exact figures already computed."""
    from unicom.cli.progress import progress_bar

    D = int(q_emb.shape[1])
    rows = [CompactRow("full", D, "float32", 4.0 * D, full_metrics)]
    jobs = [("full", D, "float16")]
    for d in dims:
        jobs += [("truncate", d, "float32"), ("truncate", d, "float16")]
        if pca is not None:
            jobs += [("pca", d, "float32"), ("pca", d, "float16")]
    bar = progress_bar(progress, total=len(jobs), desc="compact", unit="table")
    for method, d, dtype in jobs:
        if method == "pca":
            assert pca is not None
            q, g = pca.project(q_emb, d), (None if g_emb is None else pca.project(g_emb, d))
        else:
            q, g = truncate(q_emb, d), (None if g_emb is None else truncate(g_emb, d))
        if dtype == "float16":
            q, g = as_float16(q), (None if g is None else as_float16(g))
        rows.append(CompactRow(method, d, dtype, float(DTYPE_BYTES[dtype] * d), score_fn(q, g)))
        bar.update(1)
    bar.close()
    if index_record is not None:
        rows.append(CompactRow("index", D, "code", index_record.get("code_bytes_per_vector"),
                               index_record["metrics"]))
        rows[-1].method = f"index {index_record['factory']}"
    return rows


def format_compact(rows: Sequence[Dict[str, Any]], metric_names: Sequence[str]) -> str:
    """The printed table: one line per reduction, metrics in percent."""
    names = [m for m in metric_names if any(isinstance(r["metrics"].get(m), float) for r in rows)]
    width = max([len(r["method"]) for r in rows] + [6])
    header = f"{'method':<{width}}  {'dims':>5}  {'dtype':>7}  {'bytes/vec':>9}  " + "  ".join(
        f"{m:>8}" for m in names)
    lines = [header, "-" * len(header)]
    for r in rows:
        b = r["bytes_per_vector"]
        cells = []
        for m in names:
            v = r["metrics"].get(m)
            cells.append(f"{100.0 * v:8.2f}" if isinstance(v, float) and v == v else f"{'n/a':>8}")
        lines.append(f"{r['method']:<{width}}  {r['dims']:>5}  {r['dtype']:>7}  "
                     f"{('n/a' if b is None else f'{b:g}'):>9}  " + "  ".join(cells))
    return "\n".join(lines)


def plot_compact(rows: Sequence[Dict[str, Any]], metric: str, path, title: str = "") -> Path:
    """A PNG with two panels: ``metric`` against dimension (float32 truncation and PCA, the full
    embedding) and against bytes per vector (every row, log2 axis). Written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from unicom.formats.atomic_io import atomic_write

    def pct(r):
        v = r["metrics"].get(metric)
        return None if v is None or v != v else 100.0 * v

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4))
    styles = {"truncate": ("C0", "o"), "pca": ("C1", "s"), "full": ("C2", "*")}
    for method in ("truncate", "pca"):
        pts = sorted((r["dims"], pct(r)) for r in rows if r["method"] == method and r["dtype"] == "float32"
                     and pct(r) is not None)
        if pts:
            a1.plot(*zip(*pts), marker=styles[method][1], color=styles[method][0], label=method)
    for r in rows:
        y = pct(r)
        if y is None or r["bytes_per_vector"] is None:
            continue
        method = r["method"] if r["method"] in styles else "index"
        color, marker = styles.get(method, ("C3", "D"))
        filled = r["dtype"] != "float16"
        a2.scatter(r["bytes_per_vector"], y, marker=marker, color=color if filled else "none", edgecolors=color,
                   s=60 if method != "full" else 120)
        if method == "full":
            a1.scatter(r["dims"], y, marker="*", color=color, s=120, label=f"full ({r['dtype']})" if filled else None)
        if method == "index":
            a2.annotate(r["method"].replace("index ", ""), (r["bytes_per_vector"], y), fontsize=7,
                        xytext=(4, -10), textcoords="offset points")
    a1.set_xscale("log", base=2)
    a1.set_xlabel("dimensions")
    a1.set_ylabel(f"{metric} (%)")
    a1.legend(fontsize=8)
    a2.set_xscale("log", base=2)
    a2.set_xlabel("bytes per vector (filled: float32 / codes, hollow: float16)")
    a2.set_ylabel(f"{metric} (%)")
    from matplotlib.lines import Line2D

    a2.legend(handles=[Line2D([], [], color=c, marker=m, linestyle="", label=k)
                       for k, (c, m) in {**styles, "index": ("C3", "D")}.items()], fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    with atomic_write(path) as f:
        fig.savefig(f, format="png", dpi=110)
    plt.close(fig)
    return Path(path)
