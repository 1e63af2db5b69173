"""A PNG of search results: one row per query, the query first, then its top-k with scores."""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

from ..formats.atomic_io import atomic_write


def render_results(queries: Sequence, results: Sequence[Sequence], out_png, query_names: Optional[Sequence[str]] = None,
                   thumb: float = 1.6) -> Path:
    """Draw ``queries`` (PIL images) against ``results`` (per query, a list of
    ``(image or None, score, label)``) into ``out_png``. A missing image is drawn as a grey
    tile with its label."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    rows = len(queries)
    cols = 1 + max((len(r) for r in results), default=0)
    fig, axes = plt.subplots(rows, cols, figsize=(thumb * cols, thumb * 1.25 * rows), squeeze=False)
    for r, (q, hits) in enumerate(zip(queries, results)):
        _tile(axes[r][0], q, "query" if not query_names else f"query\n{_short(query_names[r])}", "#1f77b4")
        for c in range(1, cols):
            if c - 1 < len(hits):
                img, score, label = hits[c - 1]
                _tile(axes[r][c], img, f"{c}. {score:.3f}\n{_short(label)}", "#444444")
            else:
                axes[r][c].axis("off")
    fig.tight_layout()
    out_png = Path(out_png)
    with atomic_write(out_png, "wb") as f:
        fig.savefig(f, format="png", dpi=100)
    plt.close(fig)
    return out_png


def _tile(ax, img, title: str, colour: str) -> None:
    if img is not None:
        ax.imshow(img)
    else:
        ax.set_facecolor("#dddddd")
        ax.text(0.5, 0.5, "no image", ha="center", va="center", fontsize=7, transform=ax.transAxes)
    ax.set_title(title, fontsize=7, color=colour)
    ax.set_xticks([])
    ax.set_yticks([])


def _short(text: str, n: int = 26) -> str:
    text = str(text)
    return text if len(text) <= n else "…" + text[-(n - 1):]
