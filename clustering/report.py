"""The clustering report: cluster-size statistics, purity/NMI against ground truth when the
data carries it, a printed table, ``report.json`` and a PNG histogram of cluster sizes."""
from __future__ import annotations

from typing import Dict, Mapping, Optional

import numpy as np

from unicom.formats.atomic_io import atomic_write, write_json

from .config import DEFAULT_TINY
from .quality import agreement


def size_stats(sizes: np.ndarray, tiny: int = DEFAULT_TINY) -> Dict:
    """Statistics of the cluster sizes; ``tiny`` clusters hold 1..tiny-1 samples."""
    sizes = np.asarray(sizes, dtype=np.int64)
    n, k = int(sizes.sum()), int(len(sizes))
    nonempty = sizes[sizes > 0]
    return {
        "k": k,
        "samples": n,
        "empty_clusters": int((sizes == 0).sum()),
        "tiny_clusters": int(((sizes > 0) & (sizes < tiny)).sum()),
        "tiny_threshold": int(tiny),
        "min_size": int(sizes.min()) if k else 0,
        "max_size": int(sizes.max()) if k else 0,
        "mean_size": float(n / k) if k else 0.0,
        "median_size": float(np.median(sizes)) if k else 0.0,
        "p99_size": float(np.percentile(sizes, 99)) if k else 0.0,
        "nonempty_min_size": int(nonempty.min()) if len(nonempty) else 0,
        # faiss' imbalance factor: 1 when all clusters are equal, K when one holds everything
        "imbalance_factor": float(k * (sizes.astype(np.float64) ** 2).sum() / n ** 2) if n else float("nan"),
    }


def build_report(sizes: np.ndarray, contingency: Optional[Mapping] = None, truth_field: Optional[str] = None,
                 tiny: int = DEFAULT_TINY, extra: Optional[Dict] = None) -> Dict:
    rep = {"cluster_sizes": size_stats(sizes, tiny)}
    if contingency:
        rep["ground_truth"] = dict(agreement(contingency), field=truth_field)
    if extra:
        rep.update(extra)
    return rep


def format_table(rep: Dict) -> str:
    """A small aligned table of the report's headline numbers."""
    s = rep["cluster_sizes"]
    rows = [("clusters (K)", f"{s['k']:,}"), ("samples labelled", f"{s['samples']:,}"),
            ("empty clusters", f"{s['empty_clusters']:,}"),
            (f"tiny clusters (<{s['tiny_threshold']})", f"{s['tiny_clusters']:,}"),
            ("cluster size min / median / max", f"{s['min_size']} / {s['median_size']:g} / {s['max_size']}"),
            ("imbalance factor", f"{s['imbalance_factor']:.3f}")]
    if "objective" in rep:
        rows.append(("mean cosine to centroid", f"{rep['objective']:.4f}"))
    gt = rep.get("ground_truth")
    if gt:
        rows += [(f"purity (vs {gt.get('field')})", f"{gt['purity']:.4f}"),
                 (f"NMI (vs {gt.get('field')})", f"{gt['nmi']:.4f}"),
                 ("ground-truth classes", f"{gt['truth_classes']}")]
    sk = rep.get("skipped")
    if sk is not None:
        rows.append(("skipped samples", ", ".join(f"{k} {v}" for k, v in sorted(sk.items())) or "none"))
    for key, label in (("method", "method"), ("seconds", "seconds")):
        if key in rep:
            v = rep[key]
            rows.append((label, f"{v:.1f}" if isinstance(v, float) else str(v)))
    w = max(len(r[0]) for r in rows)
    line = "-" * (w + 3 + max(len(r[1]) for r in rows))
    return "\n".join(["clustering report", line] + [f"{a:<{w}}   {b}" for a, b in rows] + [line])


def plot_histogram(sizes: np.ndarray, path: str, tiny: int = DEFAULT_TINY, title: str = "") -> None:
    """Write a PNG histogram of cluster sizes (log count axis for large K), atomically."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    sizes = np.asarray(sizes, dtype=np.int64)
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    hi = max(int(sizes.max()) if len(sizes) else 1, 1)
    bins = min(60, hi + 1)
    counts, _, _ = ax.hist(sizes, bins=np.linspace(0, hi + 1, bins + 1), color="#3b75af", edgecolor="white",
                           linewidth=0.3)
    from matplotlib.ticker import MaxNLocator, NullFormatter, ScalarFormatter

    if counts.max() > 50:  # many clusters: a log axis keeps the tails visible
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(ScalarFormatter())
        ax.yaxis.set_minor_formatter(NullFormatter())  # no 2×10^k-style labels between the decades
    else:  # counts of clusters are whole numbers: no 0.5 ticks
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("cluster size (samples)")
    ax.set_ylabel("clusters")
    empty, small = int((sizes == 0).sum()), int(((sizes > 0) & (sizes < tiny)).sum())
    ax.set_title(title or f"K={len(sizes):,}: {empty} empty, {small} tiny (<{tiny}), "
                          f"median {np.median(sizes):g}, max {hi}")
    ax.axvline(tiny - 0.5, color="#c44", linestyle="--", linewidth=1)
    fig.tight_layout()
    with atomic_write(path, "wb") as f:
        fig.savefig(f, format="png")
    plt.close(fig)


def write_report(rep: Dict, sizes: np.ndarray, json_path: str, png_path: Optional[str],
                 tiny: int = DEFAULT_TINY) -> None:
    write_json(json_path, rep)  # non-finite values become null
    if png_path:
        plot_histogram(sizes, png_path, tiny)


