"""Exact evaluation stays exact under ``--precision auto``: with bf16 GEMMs on the CPU the kNN
results and every metric equal float32 on the metric fixtures (and a float64 brute force)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from retrieval_eval import knn
from retrieval_eval.pipeline import evaluate_embeddings

from . import reference as ref
from .conftest import tie_embeddings


def _features(n, d=32, classes=12, seed=0):
    """Class-clustered float embeddings (not exactly representable in bf16)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, n)
    x = rng.standard_normal((classes, d))[labels] + 1.6 * rng.standard_normal((n, d))
    return x.astype(np.float32), labels


@pytest.mark.parametrize("k", [1, 10, 60])
def test_bf16_search_equals_float64_brute_force(k):
    x, _ = _features(400, seed=1)
    for precision in ("bf16", "fp32"):
        _, ids = knn.search(x, None, k, exclude_self=True, device="cpu", chunk_size=64, precision=precision)
        want = ref.rankings(x)
        assert all(ids[i].tolist() == want[i][:k] for i in range(len(x))), precision


@pytest.mark.parametrize("k", [1, 10, 100])
def test_bf16_search_on_the_tie_fixture(k):
    x = tie_embeddings(300, seed=4, duplicates=60)
    q, g = x[:50], x[50:]
    scores, ids = knn.search(q, g, k, device="cpu", chunk_size=16, precision="bf16")
    want = ref.rankings(q, g)
    assert all(ids[i].tolist() == want[i][:k] for i in range(len(q)))
    s32, i32 = knn.search(q, g, k, device="cpu", chunk_size=16, precision="fp32")
    np.testing.assert_array_equal(ids, i32)
    np.testing.assert_array_equal(scores, s32)


@pytest.mark.parametrize("fixture", ["ties", "features"])
def test_metrics_identical_to_a_cpu_without_bf16(monkeypatch, fixture, tie_data):
    x, labels = tie_data if fixture == "ties" else _features(500, seed=3)
    auto = evaluate_embeddings(x, labels, ks=(1, 2, 4, 8), device="cpu")
    # the same evaluation where torch reports no native bf16: auto runs float32 GEMMs
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False, raising=False)
    fp32 = evaluate_embeddings(x, labels, ks=(1, 2, 4, 8), device="cpu")
    assert auto == fp32
    assert 0 < auto["MAP@R"] < 1 and 0 < auto["R@1"] < 1  # a fixture with errors to get wrong
