"""Fixtures for the retrieval_eval tests: exactly representable embeddings with ties."""
from __future__ import annotations

import numpy as np
import pytest


def tie_embeddings(n: int, dim: int = 16, seed: int = 0, duplicates: int = 20) -> np.ndarray:
    """Rows with ±1 on exactly four coordinates: after L2 normalisation every entry is ±0.5 and
    every inner product a multiple of 0.25, exact in float32 and float64 alike, so faiss and a
    float64 reference see the same scores and plenty of ties. Some rows are exact duplicates."""
    rng = np.random.default_rng(seed)
    x = np.zeros((n, dim), np.float32)
    for i in range(n):
        x[i, rng.choice(dim, 4, replace=False)] = rng.choice([-1.0, 1.0], 4)
    src = rng.choice(n, duplicates, replace=False)
    dst = rng.choice(n, duplicates, replace=False)
    x[dst] = x[src]
    return x


@pytest.fixture
def tie_data():
    rng = np.random.default_rng(1)
    x = tie_embeddings(300, seed=1)
    labels = rng.integers(0, 25, size=len(x))
    labels[:3] = [900, 901, 902]  # singletons: no positives anywhere
    return x, labels


@pytest.fixture(scope="session")
def tiny_encoder():
    """(model, transform) of a random ViT-Tiny/8@32 in eval mode."""
    import torch

    from unicom.data.transforms import eval_transform
    from unicom.models.vit import build_vit

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = build_vit("ViT-Tiny/8@32").eval()
    return model, eval_transform(32)
