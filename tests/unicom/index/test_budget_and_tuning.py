"""auto under a memory budget, the estimate against the measured size, tuning and the report."""
from __future__ import annotations

import json

import faiss
import numpy as np
import pytest

from unicom.embed.index import build_index_dir
from unicom.embed.search import Searcher
from unicom.formats import index as fi
from unicom.index.memory import auto_candidates, choose_auto, estimate, parse_memory
from unicom.index.source import array_source
from unicom.index.tune import exact_neighbours, recalls, tune

from .conftest import clustered


@pytest.mark.parametrize("text,n", [("4GB", 4 << 30), ("256MB", 256 << 20), ("1.5G", int(1.5 * (1 << 30))),
                                    ("4GiB", 4 << 30), ("1000", 1000), ("64kb", 64 << 10)])
def test_memory_sizes_parse_like_autofaiss(text, n):
    assert parse_memory(text) == n


def test_a_bad_size_is_one_line():
    with pytest.raises(ValueError, match=r"--max-index-memory '4 gigs' is not a size; write it like 256MB"):
        parse_memory("4 gigs")


def test_auto_takes_the_most_accurate_index_that_fits():
    n, d = 1_000_000, 512
    assert auto_candidates(n, d)[:3] == ["HNSW32", "IVF4096,Flat", "IVF4096,SQ8"]
    picks = {b: choose_auto(n, d, parse_memory(b)).factory for b in ("256MB", "1GB", "4GB")}
    # float32 is 2 GB at this size: 4 GB fits the graph, 1 GB one byte a dimension, 256 MB 128-byte PQ codes
    assert picks == {"256MB": "IVF4096,PQ128", "1GB": "IVF4096,SQ8", "4GB": "HNSW32"}
    # every pick fits, and the next more accurate candidate does not
    for b, f in picks.items():
        cands = auto_candidates(n, d)
        i = cands.index(f)
        assert estimate(f, n, d).bytes <= parse_memory(b)
        assert i == 0 or estimate(cands[i - 1], n, d).bytes > parse_memory(b)
    # beyond 2^16 cells the coarse quantizer is a graph
    assert choose_auto(400_000_000, 768, parse_memory("64GB")).factory.startswith("IVF65536_HNSW32,")


def test_auto_respects_the_query_time_limit():
    slow = choose_auto(100_000, 512, None)
    assert slow.factory == "Flat"
    fast = choose_auto(100_000, 512, None, max_query_ms=5.0)
    assert fast.factory == "HNSW32" and fast.estimate.query_ms <= 5.0 < slow.estimate.query_ms
    faster = choose_auto(100_000, 512, None, max_query_ms=1.0)
    assert faster.factory.startswith("IVF") and faster.estimate.query_ms <= 1.0


def test_a_budget_below_the_smallest_index_is_one_line_before_work(tmp_path):
    with pytest.raises(ValueError) as e:
        choose_auto(1_000_000, 512, parse_memory("10MB"))
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith("--max-index-memory 10.0 MB is smaller than the smallest index for "
                                              "1,000,000 × 512 vectors (IVF4096,PQ8: ")


def test_the_estimate_is_within_five_percent_of_the_file(tmp_path):
    x = clustered(2000, 16, seed=1)
    for spec in ("Flat", "HNSW8", "IVF16,Flat", "IVF16,SQ8", "PCA8,IVF16,Flat"):  # PQ: test_build.py
        out = build_index_dir(_features(tmp_path, x), tmp_path / spec.replace(",", "_"), spec, target_recall=None,
                              progress=False, echo=None)
        meta = json.loads((out / "index.json").read_text())
        est, real = meta["estimate"]["bytes"], meta["measured_bytes"]
        assert abs(est - real) / real < 0.05, (spec, est, real)


def _features(tmp_path, x):
    from .conftest import write_features

    root = tmp_path / "coll"
    if not (root / "features").is_dir():
        write_features(root, x, 2)
    return root


def test_auto_under_a_budget_builds_what_it_printed_and_records_it(tmp_path, capsys):
    x = clustered(6000, 32, seed=2)
    out = build_index_dir(_features(tmp_path, x), tmp_path / "index", "auto", max_index_memory="400KB",
                          progress=False)
    printed = capsys.readouterr().out
    meta = json.loads((out / "index.json").read_text())
    assert printed.startswith(f"auto: {meta['factory']} (estimated ") and "budget 400.0 KB" in printed
    assert meta["auto"]["budget"] == 400 << 10 and meta["measured_bytes"] <= 400 << 10
    assert meta["factory"] == choose_auto(6000, 32, 400 << 10).factory


def test_tuning_finds_the_smallest_nprobe_reaching_the_target():
    x = clustered(4000, 16, seed=3)
    index = faiss.index_factory(16, "IVF64,Flat", faiss.METRIC_INNER_PRODUCT)
    index.train(x)
    index.add(x)
    q = clustered(300, 16, seed=4)
    exact = np.argsort(-(q.astype(np.float64) @ x.astype(np.float64).T), axis=1)[:, :10]  # brute force
    assert np.array_equal(exact_neighbours(array_source(x), q, 10), exact)
    params, reached, curve = tune(index, q, exact, 0.9)
    assert reached and index.nprobe == params["nprobe"]

    def r10(nprobe):
        index.nprobe = nprobe
        return recalls(index.search(q, 10)[1], exact)["recall@10"]

    assert r10(params["nprobe"]) >= 0.9 and (params["nprobe"] == 1 or r10(params["nprobe"] - 1) < 0.9)
    assert recalls(exact, exact) == {"recall@1": 1.0, "recall@10": 1.0}


def test_the_report_and_the_searcher_use_the_tuned_value(tmp_path):
    x = clustered(5000, 16, seed=5)
    out = build_index_dir(_features(tmp_path, x), tmp_path / "index", "IVF64,Flat", target_recall=0.9,
                          progress=False, echo=None)
    meta = json.loads((out / "index.json").read_text())
    report = json.loads((out / "report.json").read_text())
    tuned = meta["search_params"]["nprobe"]
    assert report["search_params"] == {"nprobe": tuned} and report["reached"] and report["recall@10"] >= 0.9
    assert report["bytes_on_disk"] == meta["measured_bytes"] == (out / "index.faiss").stat().st_size
    assert report["bytes_per_vector"] == pytest.approx(meta["measured_bytes"] / 5000)
    for key in ("recall@1", "qps", "build_s", "estimate_bytes", "queries"):
        assert report[key] is not None
    s = Searcher(out, device="cpu", progress=False)
    assert faiss.extract_index_ivf(s.index.index).nprobe == tuned
    s2 = Searcher(out, device="cpu", progress=False, nprobe=3)
    assert faiss.extract_index_ivf(s2.index.index).nprobe == 3
    assert isinstance(fi.IndexDir(out).keys, fi.KeyColumn)
