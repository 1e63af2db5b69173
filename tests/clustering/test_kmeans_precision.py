"""CPU k-means on torch GEMMs: the same Lloyd iterations as faiss's, and bf16 assignment within
the stated tolerance of float32 (objective within ``BF16_OBJECTIVE_RTOL``)."""
from __future__ import annotations

import numpy as np
import pytest

from clustering.kmeans import BF16_OBJECTIVE_RTOL, _split_empty, mean_cosine, nearest, spherical_kmeans

from .conftest import planted_blobs


def test_float32_lloyd_equals_faiss_kmeans_from_the_same_start():
    import faiss

    x, _ = planted_blobs(3000, 25, 32, noise=1.2, seed=3)
    init = x[:25].copy()
    ours = spherical_kmeans(x, 25, niter=8, init_centroids=init, max_points_per_centroid=10 ** 6,
                            precision="fp32", evaluate=True)
    ref = faiss.Kmeans(32, 25, niter=8, spherical=True, max_points_per_centroid=10 ** 6, min_points_per_centroid=1)
    ref.train(x, init_centroids=init)
    np.testing.assert_allclose(ours.centroids, ref.centroids / np.linalg.norm(ref.centroids, axis=1, keepdims=True),
                               atol=2e-5)
    # faiss logs the sum of similarities per iteration
    np.testing.assert_allclose(np.array(ours.objective_per_iter) * len(x), ref.obj[:len(ours.objective_per_iter)],
                               rtol=1e-5)
    assert ours.extra["assignment"] == "torch float32"


def test_bf16_objective_within_the_stated_tolerance():
    x, _ = planted_blobs(8000, 60, 64, noise=1.5, seed=4)
    f32 = spherical_kmeans(x, 60, niter=10, seed=1, precision="fp32")
    b16 = spherical_kmeans(x, 60, niter=10, seed=1, precision="bf16")
    assert b16.extra["assignment"] == "torch bfloat16"
    assert abs(b16.objective - f32.objective) <= BF16_OBJECTIVE_RTOL * f32.objective
    # the objective is a float32 sum for the chosen centroids, whatever the GEMM precision
    exact = mean_cosine(x, b16.centroids, precision="fp32")
    assert b16.objective == pytest.approx(exact, abs=2e-3 * BF16_OBJECTIVE_RTOL)
    _, l32 = nearest(x, f32.centroids, precision="fp32")
    _, lbf = nearest(x, f32.centroids, precision="bf16")
    assert (l32 == lbf).mean() >= 0.99  # assignments against the same centroids


def test_empty_clusters_are_split():
    x, _ = planted_blobs(2000, 10, 16, noise=0.3, seed=5)
    init = np.repeat(x[:1], 10, axis=0)  # nine copies of one start: nine empty clusters
    r = spherical_kmeans(x, 10, niter=5, init_centroids=init, precision="fp32")
    assert sum(it["nsplit"] for it in r.iteration_stats) >= 9
    _, lab = nearest(x, r.centroids, precision="fp32")
    assert len(np.unique(lab)) == 10


def test_split_is_faiss_rule():
    cents = np.ones((3, 4), np.float32)
    hist = np.array([0.0, 10.0, 0.0])
    assert _split_empty(cents, hist, np.random.default_rng(0)) == 2
    assert hist.sum() == 10 and (hist > 0).all()
    assert not np.allclose(cents[0], cents[1])  # nudged apart


def test_bf16_runs_are_bit_identical():
    x, _ = planted_blobs(3000, 20, 32, noise=1.0, seed=6)
    a = spherical_kmeans(x, 20, niter=4, seed=2, precision="bf16")
    b = spherical_kmeans(x, 20, niter=4, seed=2, precision="bf16")
    np.testing.assert_array_equal(a.centroids, b.centroids)
    assert a.objective_per_iter == b.objective_per_iter
