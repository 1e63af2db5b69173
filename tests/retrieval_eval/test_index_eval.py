"""``--index-type``: every metric through a faiss index equals a brute-force computation on the
vectors the index holds (PQ codes decoded with ``sa_decode``), and its recall against exact
search equals one counted by numpy."""
from __future__ import annotations

import numpy as np
import pytest

from retrieval_eval.loaders.base import LABELLED, Benchmark, ImageSet
from retrieval_eval.options import EvalOptions
from retrieval_eval.pipeline import labels_benchmark, run_evaluation
from unicom.index.factory import make_index

from . import reference as ref

FAST = dict(device="cpu", workers=0, progress=False)


def clustered(n: int, dim: int = 32, classes: int = 12, seed: int = 0, noise: float = 0.9):
    """Continuous clustered embeddings (no exact ties) and their labels."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(classes, dim))
    labels = rng.integers(0, classes, n)
    return (centres[labels] + noise * rng.normal(size=(n, dim))).astype(np.float32), labels


def decoded_database(x: np.ndarray, spec: str) -> np.ndarray:
    """Train and fill the index independently, then decode what it stores, in float64."""
    xn = np.ascontiguousarray(ref.unit(x), dtype=np.float32)
    index, _ = make_index(spec, x.shape[1], len(x))
    index.train(xn)
    index.add(xn)
    return index.sa_decode(index.sa_encode(xn)).astype(np.float64)


def brute_force_metrics(q: np.ndarray, db: np.ndarray, ql, gl, all_vs_all: bool, ks=(1, 2, 4, 8)):
    """Recall@K, MAP@R and RP of float64 queries against float64 database rows (self left out)."""
    qn = ref.unit(q)
    scores = qn @ db.T
    order = []
    for i in range(len(qn)):
        cands = [j for j in range(len(db)) if not (all_vs_all and j == i)]
        order.append(sorted(cands, key=lambda j: (-scores[i, j], j)))
    out = {f"R@{k}": ref.recall(order, ql, gl, k) for k in ks}
    out["MAP@R"], out["RP"] = ref.map_at_r(order, ql, gl, all_vs_all)
    return out


def _close(measured, expected, n):
    # float32 lookup-table sums (faiss) against float64 products: a near-tie may swap, one query's worth at most
    for key, value in expected.items():
        assert measured[key] == pytest.approx(value, abs=1.0 / n + 1e-9), key


@pytest.mark.parametrize("spec", ["IVF4,PQ8x4", "OPQ4,IVF4,PQ4x4", "IVF4,SQ8"])
def test_self_retrieval_through_a_compressed_index_matches_brute_force_on_decoded_vectors(spec):
    x, labels = clustered(300)
    opts = EvalOptions(index_type=spec, index_params="nprobe=4", **FAST)
    ev = run_evaluation(None, None, embeddings=x, labels=labels, options=opts)
    rec = ev.results["index"]
    assert rec["factory"] == spec and rec["search_params"] == "nprobe=4" and rec["ntotal"] == 300
    db = decoded_database(x, spec)
    expected = brute_force_metrics(x, db, labels, labels, all_vs_all=True)
    _close(rec["metrics"], expected, len(x))
    # the compressed vectors are not the originals: the exact figures beside them differ
    exact = brute_force_metrics(x, ref.unit(x), labels, labels, all_vs_all=True)
    _close(ev.results["metrics"], exact, len(x))


def test_query_gallery_benchmark_through_ivf_pq_matches_brute_force():
    q, ql = clustered(80, seed=1)
    g, gl = clustered(200, seed=2)
    bench = labels_benchmark(ql, gl)
    ev = run_evaluation(benchmark=bench, embeddings=np.concatenate([q, g]),
                        options=EvalOptions(index_type="IVF2,PQ16x4", index_params="nprobe=2", **FAST))
    expected = brute_force_metrics(q, decoded_database(g, "IVF2,PQ16x4"), ql, gl, all_vs_all=False)
    _close(ev.results["index"]["metrics"], expected, len(q))


def test_recall_against_exact_is_counted_like_numpy():
    x, labels = clustered(320, dim=16, seed=3, noise=1.5)
    spec = "IVF8,Flat"
    opts = EvalOptions(index_type=spec, index_params="nprobe=1", **FAST)
    ev = run_evaluation(None, None, embeddings=x, labels=labels, options=opts)
    rec = ev.results["index"]["recall_vs_exact"]
    # independent: the same (deterministically trained) index searched by hand, self removed
    xn = np.ascontiguousarray(ref.unit(x), dtype=np.float32)
    index, _ = make_index(spec, 16, len(x))
    index.train(xn)
    index.add(xn)
    index.nprobe = 1
    _, ids = index.search(xn, 11)
    exact = ref.unit(x) @ ref.unit(x).T
    np.fill_diagonal(exact, -np.inf)
    for k in (1, 10):
        kth = -np.sort(-exact, axis=1)[:, k - 1]
        hits = []
        for i in range(len(x)):
            row = [j for j in ids[i] if j != i and j >= 0][:k]
            hits.append(sum(exact[i, j] >= kth[i] - 1e-5 for j in row) / k)
        assert rec[f"recall@{k}"] == pytest.approx(np.mean(hits), abs=1e-12)
    assert rec["recall@1"] < 1.0  # one cell of eight is searched: the index misses some neighbours


def test_a_flat_index_reproduces_the_exact_figures_and_full_recall():
    x, labels = clustered(150, dim=8, seed=4)
    ev = run_evaluation(None, None, embeddings=x, labels=labels, options=EvalOptions(index_type="flat", **FAST))
    rec = ev.results["index"]
    assert rec["factory"] == "Flat" and rec["code_bytes_per_vector"] == 32
    assert rec["recall_vs_exact"] == {"recall@1": 1.0, "recall@10": 1.0}
    for key in ("R@1", "R@8", "MAP@R", "RP"):
        assert rec["metrics"][key] == pytest.approx(ev.results["metrics"][key], abs=1e-12)


def test_the_index_holds_the_distractors_too(tmp_path):
    q, ql = clustered(60, dim=16, seed=5)
    g, gl = clustered(100, dim=16, seed=6)
    d, _ = clustered(90, dim=16, seed=7)
    np.save(tmp_path / "distractors.npy", d)
    bench = labels_benchmark(ql, gl)
    ev = run_evaluation(benchmark=bench, embeddings=np.concatenate([q, g]),
                        distractors=str(tmp_path / "distractors.npy"),
                        options=EvalOptions(index_type="IVF2,PQ8x4", index_params="nprobe=2", **FAST))
    rec = ev.results["index_with_distractors"]
    assert rec["ntotal"] == 190
    db = decoded_database(np.concatenate([g, d]), "IVF2,PQ8x4")
    gl_all = np.concatenate([gl, np.full(len(d), -99)])
    _close(rec["metrics"], brute_force_metrics(q, db, ql, gl_all, all_vs_all=False), len(q))


def test_ids_the_index_could_not_fill_count_as_misses():
    # two classes of ~60 and cells of ~40 searched one at a time: faiss pads the results with id -1,
    # which must count as non-relevant (not as the last gallery item)
    x, labels = clustered(120, dim=8, classes=2, seed=8, noise=2.0)
    bench = Benchmark("t", LABELLED, ImageSet([None] * len(x), labels=labels))
    ev = run_evaluation(benchmark=bench, embeddings=x, options=EvalOptions(index_type="IVF3,Flat",
                                                                           index_params="nprobe=1", **FAST))
    xn = np.ascontiguousarray(ref.unit(x), dtype=np.float32)
    index, _ = make_index("IVF3,Flat", 8, len(x))
    index.train(xn)
    index.add(xn)
    index.nprobe = 1
    _, ids = index.search(xn, len(x))
    assert (ids == -1).any()
    gl = np.append(labels, -99)  # -1 reads this label
    order = [[int(j) for j in row if j != i] for i, row in enumerate(ids)]
    expected = {f"R@{k}": ref.recall(order, labels, gl, k) for k in (1, 2, 4, 8)}
    expected["MAP@R"], expected["RP"] = ref.map_at_r(order, labels, gl, True)
    for key, value in expected.items():
        assert ev.results["index"]["metrics"][key] == pytest.approx(value, abs=1e-12), key


def test_unknown_spec_too_few_vectors_and_bad_params_fail_in_one_line_before_any_work():
    from retrieval_eval.options import BadRequestError

    x, labels = clustered(100, dim=16)
    with pytest.raises(BadRequestError, match=r"'IVF4,Bogus' is not a faiss index_factory string"):
        run_evaluation(None, None, embeddings=x, labels=labels, options=EvalOptions(index_type="IVF4,Bogus", **FAST))
    with pytest.raises(BadRequestError, match=r"needs at least 9984 training vectors .* has 100; use at most IVF2 "):
        run_evaluation(None, None, embeddings=x, labels=labels, options=EvalOptions(index_type="IVF256,Flat", **FAST))
    with pytest.raises(BadRequestError, match=r"--index-params 'efSearch=4' does not apply"):
        run_evaluation(None, None, embeddings=x, labels=labels, options=EvalOptions(index_type="IVF2,Flat",
                                                                        index_params="efSearch=4", **FAST))


def test_the_index_size_is_what_faiss_writes(tmp_path):
    import faiss

    from retrieval_eval.index_eval import index_file_bytes

    x, _ = clustered(400, dim=16, seed=9)
    index, _ = make_index("IVF4,PQ4x4", 16, len(x))
    index.train(ref.unit(x).astype(np.float32))
    index.add(ref.unit(x).astype(np.float32))
    faiss.write_index(index, str(tmp_path / "i.faiss"))
    on_disk = (tmp_path / "i.faiss").stat().st_size
    assert index_file_bytes(index) == on_disk == index_file_bytes(index, in_memory_limit=0)
