"""Fixtures for the clustering tests: planted clusters on the sphere, and the sample set's
features extracted once per session with the tiny random-init open_clip model."""
from __future__ import annotations

import numpy as np
import pytest


def planted_blobs(n: int, k: int, d: int, noise: float, seed: int = 0):
    """``n`` unit vectors around ``k`` random unit centres (Gaussian noise of ``noise`` per
    unit norm, then renormalised); returns (x float32 [n, d], true labels [n])."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((k, d))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    labels = rng.integers(0, k, n)
    x = centres[labels] + noise * rng.standard_normal((n, d)) / np.sqrt(d)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x.astype(np.float32), labels


@pytest.fixture(scope="session")
def tiny_clip():
    from unicom.models.clip_loader import create_clip

    return create_clip("TinyCLIP-demo", "none")


@pytest.fixture(scope="session")
def extracted(sample_set, tiny_clip, tmp_path_factory):
    """(out dir, shard paths, ExtractResult) of one extraction of the sample set."""
    from clustering.extract import ExtractConfig, extract_features
    from unicom.data.shards import expand_shards
    from unicom.runtime.distributed import init_distributed

    root, _ = sample_set
    shards = expand_shards(str(root / "shards"))
    out = tmp_path_factory.mktemp("cluster")
    cfg = ExtractConfig(model="TinyCLIP-demo", pretrained="none", batch_size=64, workers=2)
    res = extract_features(shards, str(out), cfg, init_distributed("cpu"), model_bundle=tiny_clip)
    return str(out), shards, res
