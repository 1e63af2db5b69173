"""Helpers of the unicom-export tests (not fixtures)."""
from __future__ import annotations

from pathlib import Path
from typing import List

import numpy as np


def heldout_images(sample_root: Path) -> List[str]:
    """The held-out query images of a sample set, sorted."""
    return sorted(str(p) for p in (Path(sample_root) / "heldout").rglob("*.jpg"))


def unit(a: np.ndarray) -> np.ndarray:
    """Rows L2-normalised, in float64."""
    a = np.asarray(a, np.float64)
    return a / np.linalg.norm(a, axis=1, keepdims=True)


def embed_and_index(model, data, out, *extra: str) -> Path:
    """``unicom-embed --model MODEL --data DATA --output OUT`` in float32, flat index; returns OUT."""
    from unicom.embed.cli import main

    rc = main(["--model", str(model), "--data", str(data), "--output", str(out), "--precision", "fp32",
               "--workers", "0", "--index-type", "flat", "--no-progress", "--log-level", "WARNING", *extra])
    assert rc == 0
    return Path(out)


def top10_keys(index_dir, queries: List[str]) -> List[List[str]]:
    """The keys of the 10 nearest indexed images of each query, via ``Searcher`` (float32)."""
    from unicom.embed.search import Searcher

    hits = Searcher(index_dir, precision="fp32", progress=False).search_images(queries, k=10)
    return [[h.key for h in row] for row in hits]
