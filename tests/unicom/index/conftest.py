"""Clustered, L2-normalised vectors written as feature shards (what unicom-embed writes)."""
from __future__ import annotations

import numpy as np
import pytest

from unicom.formats import features as ff


def clustered(n: int, d: int, seed: int = 0, centres: int = 24, spread: float = 0.35) -> np.ndarray:
    """float32 [n, d]: unit vectors around ``centres`` random directions."""
    rng = np.random.default_rng(seed)
    c = rng.standard_normal((centres, d))
    x = c[rng.integers(0, centres, n)] + spread * rng.standard_normal((n, d))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def write_features(root, x: np.ndarray, shards: int, prefix: str = "s", meta=None):
    """Split ``x`` into ``shards`` feature shards under ``root/features``; returns the keys in row order."""
    fdir = root / "features"
    keys = []
    for i, block in enumerate(np.array_split(x, shards)):
        k = [f"{prefix}{i}/img_{j:05d}.jpg" for j in range(len(block))]
        ff.write_shard(fdir, f"{prefix}{i:03d}", block, k, {}, dtype="float32")
        keys += k
    ff.write_meta(fdir, meta or {"model": "test-encoder", "image_size": 32, "embed_dim": x.shape[1]})
    return keys


@pytest.fixture(scope="module")
def collection(tmp_path_factory):
    """(folder, vectors float32 [3000, 16], keys): three shards of clustered vectors."""
    root = tmp_path_factory.mktemp("collection")
    x = clustered(3000, 16)
    keys = write_features(root, x, 3)
    return root, x, keys
