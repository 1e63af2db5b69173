"""Blocked torch top-k on the CPU: exact against float64 brute force whatever the GEMM precision,
the certificate's fallback, nearest-centroid agreement, and the faiss BLAS check."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from unicom.runtime import dense


def _unit(x):
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _clustered(n, d, centres, seed, noise=0.6):
    """Unit rows around random centres: neighbours at realistic cosine gaps."""
    rng = np.random.default_rng(seed)
    c = rng.standard_normal((centres, d))
    return _unit(c[rng.integers(0, centres, n)] + noise * rng.standard_normal((n, d)) / np.sqrt(d) * 4)


def _reference(q, db, k):
    """float64 brute force with the tie rule (score descending, then index ascending)."""
    s = q.astype(np.float64) @ db.astype(np.float64).T
    ids = np.lexsort((np.broadcast_to(np.arange(len(db)), s.shape), -s), axis=1)[:, :k]
    return np.take_along_axis(s, ids, 1), ids


@pytest.mark.parametrize("k", [1, 5, 40])
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_topk_equals_float64_brute_force(k, precision):
    db = _clustered(3000, 64, 40, seed=1)
    q = _clustered(300, 64, 40, seed=2)
    want_s, want_i = _reference(q, db, k)
    r = dense.topk(q, db, k, precision=precision, block=128, db_block=1000)  # several blocks each way
    np.testing.assert_array_equal(r.ids, want_i)
    np.testing.assert_array_equal(r.scores, want_s.astype(np.float32))  # float64 re-scores, rounded


def test_bf16_and_fp32_runs_return_the_same_arrays():
    db = _clustered(2000, 48, 30, seed=3)
    a = dense.topk(db[:200], db, 10, precision="bf16")
    b = dense.topk(db[:200], db, 10, precision="fp32")
    np.testing.assert_array_equal(a.ids, b.ids)
    np.testing.assert_array_equal(a.scores, b.scores)


def test_certificate_failures_fall_back_and_stay_exact():
    # near-duplicates closer than bf16's rounding: the bf16 candidates cannot be trusted
    rng = np.random.default_rng(4)
    base = _unit(rng.standard_normal((50, 32)))
    db = _unit(np.repeat(base, 20, axis=0) + 1e-4 * rng.standard_normal((1000, 32)))
    want_s, want_i = _reference(base, db, 25)
    r = dense.topk(base, db, 25, precision="bf16", margin=1)
    assert r.fallback_rows > 0
    np.testing.assert_array_equal(r.ids, want_i)


def test_error_bound_holds():
    rng = np.random.default_rng(5)
    q = torch.from_numpy(rng.standard_normal((64, 96)).astype(np.float32))
    db = torch.from_numpy(rng.standard_normal((500, 96)).astype(np.float32))
    exact = q.double() @ db.double().T
    for dtype in (torch.bfloat16, torch.float32):
        got = (q.to(dtype) @ db.to(dtype).T).double()
        add, rel = dense.gemm_error_bound(q, dense._DatabaseNorms.of(db, dtype), dtype)
        assert ((got - exact).abs() <= add[:, None] + rel * got.abs() + 1e-12).all()


def test_nearest_agrees_with_float32_and_scores_in_float32():
    x = _clustered(4000, 64, 50, seed=6)
    c = _clustered(50, 64, 50, seed=7)
    s32, l32 = dense.nearest(x, c, "fp32")
    sbf, lbf = dense.nearest(x, c, "bf16", block=512)
    full = x @ c.T
    np.testing.assert_array_equal(l32, full.argmax(1))
    np.testing.assert_allclose(sbf, full[np.arange(len(x)), lbf], rtol=0, atol=1e-6)  # float32 similarities
    assert (lbf == l32).mean() >= 0.99
    # a different label only where the two centroids are within bf16's rounding
    gap = full[np.arange(len(x)), l32] - full[np.arange(len(x)), lbf]
    assert gap.max() <= 2 * dense.BF16_UNIT_ROUNDOFF


def test_flat_ip_has_faiss_search_contract():
    import faiss

    db = _clustered(1000, 32, 10, seed=8)
    idx = dense.FlatIP(db)
    ref = faiss.IndexFlatIP(32)
    ref.add(db)
    s, i = idx.search(db[:64], 7)
    rs, ri = ref.search(db[:64], 7)
    assert s.shape == (64, 7) and s.dtype == np.float32 and i.dtype == np.int64
    np.testing.assert_allclose(s, rs, atol=1e-5)
    assert (i == ri).mean() > 0.99  # faiss's order among float32 near-ties is its own


def test_bad_k_is_a_clear_error():
    with pytest.raises(ValueError, match=r"k must be in \[1, 10\]"):
        dense.topk(np.zeros((1, 4), np.float32), np.ones((10, 4), np.float32), 11)


def test_faiss_blas_check_names_the_override(monkeypatch, caplog):
    monkeypatch.setattr(dense, "faiss_blas_core", lambda: "Prescott")
    monkeypatch.setattr(dense, "_blas_warned", False)
    assert dense.warn_if_faiss_blas_generic()
    assert dense.warn_if_faiss_blas_generic()  # still generic, but warned once
    assert sum("OPENBLAS_CORETYPE" in r.message for r in caplog.records) == 1
    monkeypatch.setattr(dense, "faiss_blas_core", lambda: "SkylakeX")
    assert not dense.warn_if_faiss_blas_generic()


def test_flat_ip_non_finite_queries_find_nothing():
    db = _clustered(100, 8, 4, seed=9)
    q = db[:3].copy()
    q[1, 2] = np.nan
    s, i = dense.FlatIP(db).search(q, 2)
    assert i[1].tolist() == [-1, -1] and np.isneginf(s[1]).all()
    assert i[0, 0] == 0 and i[2, 0] == 2
