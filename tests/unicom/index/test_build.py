"""The streaming build: any factory string, columnar keys, old folders, and the errors before work."""
from __future__ import annotations

import json

import faiss
import numpy as np
import pytest

from unicom.embed.index import build_index_dir
from unicom.formats import index as fi
from unicom.index.build import BuildOptions, build_streaming, plan_index
from unicom.index.source import array_source, features_source

from .conftest import clustered


@pytest.mark.parametrize("spec,kind,factory", [("flat", "flat", "Flat"), ("hnsw", "hnsw", "HNSW32"),
                                               ("ivf", "ivf", "IVF76,Flat"), ("IVF32,SQ8", "ivf", "IVF32,SQ8")])
def test_every_spec_builds_a_folder_that_finds_its_rows(collection, tmp_path, spec, kind, factory):
    root, x, keys = collection
    out = build_index_dir(root, tmp_path / "index", spec, progress=False, echo=None)
    idx = fi.IndexDir(out)
    assert idx.kind == kind and idx.meta["factory"] == factory and len(idx) == 3000 and idx.dim == 16
    assert isinstance(idx.keys, fi.KeyColumn) and idx.keys == keys and not (out / "keys.txt").exists()
    e = idx.entry(1500)
    assert e.key == keys[1500] and e.shard == "s001"
    _, ids = idx.search(x[:50], 1)
    hit = np.mean(ids[:, 0] == np.arange(50))
    assert hit >= (1.0 if kind == "flat" else 0.9)


def test_a_pq_index_searches_exactly_its_decoded_vectors(collection, tmp_path):
    root, x, _ = collection
    idx = fi.IndexDir(build_index_dir(root, tmp_path / "index", "IVF16,PQ4", progress=False, echo=None))
    assert idx.meta["factory"] == "IVF16,PQ4" and idx.meta["measured_bytes"] < 64_000  # codes, ids, codebooks
    assert abs(idx.meta["estimate"]["bytes"] - idx.meta["measured_bytes"]) < 0.05 * idx.meta["measured_bytes"]
    ivf = faiss.extract_index_ivf(idx.index)
    ivf.nprobe = ivf.nlist  # every cell: the only error left is the code's
    ivf.make_direct_map()
    decoded = idx.index.reconstruct_n(0, len(idx)).astype(np.float64)
    q = clustered(30, 16, seed=7)
    scores, ids = idx.search(q, 3)
    exact = q.astype(np.float64) @ decoded.T
    assert np.allclose(scores, np.take_along_axis(exact, ids, axis=1), atol=1e-4)
    assert np.allclose(scores[:, 0], exact.max(axis=1), atol=1e-4)


def test_streaming_add_equals_one_add_of_the_whole_array(collection):
    root, x, _ = collection
    source, _, _ = features_source(root)
    plan = plan_index("IVF32,Flat", source.n, source.d)
    streamed, timings = build_streaming(source, plan, BuildOptions(chunk=257), progress=False)
    assert timings["build_s"] >= 0 and plan.train_points == 32 * 256 if source.n >= 32 * 256 else source.n
    whole = faiss.clone_index(streamed)
    whole.reset()
    whole.add(x)  # the same trained quantiser, every vector at once
    for index in (streamed, whole):
        faiss.extract_index_ivf(index).nprobe = 8
    d1, i1 = streamed.search(x[:200], 10)
    d2, i2 = whole.search(x[:200], 10)
    assert np.array_equal(i1, i2) and np.allclose(d1, d2)


def test_flat_streaming_build_matches_brute_force_in_float64(collection):
    root, x, _ = collection
    source, _, _ = features_source(root)
    index, _ = build_streaming(source, plan_index("flat", source.n, source.d), BuildOptions(chunk=100),
                               progress=False)
    q = clustered(20, 16, seed=5)
    scores, ids = index.search(q, 5)
    exact = q.astype(np.float64) @ x.astype(np.float64).T
    want = np.argsort(-exact, axis=1)[:, :5]
    assert np.array_equal(ids, want)
    assert np.allclose(scores, np.take_along_axis(exact, want, axis=1), atol=1e-5)


def test_float16_and_float32_shards_mix_and_sample_is_uniform(tmp_path):
    x = clustered(500, 8)
    src = array_source(x)
    ids, rows = src.sample(100, seed=3)
    assert len(set(ids.tolist())) == 100 and np.array_equal(rows, x[ids])
    ids2, _ = src.sample(100, seed=3)
    assert np.array_equal(ids, ids2)


def test_columnar_keys_round_trip_unicode_and_empty(tmp_path):
    keys = ["a", "", "été/ü.jpg", "x" * 300, "日本"]
    fi.write_keys(tmp_path, iter([keys[:2], keys[2:]]), len(keys))
    col = fi.KeyColumn.open(tmp_path)
    assert len(col) == 5 and list(col) == keys and col[-1] == "日本" and col[1:3] == keys[1:3]
    assert col == keys and col != keys[:4]
    with pytest.raises(ValueError, match="3 keys for an index of 5"):
        fi.write_keys(tmp_path / "b", [["a", "b", "c"]], 5)


def test_an_old_folder_with_keys_txt_still_opens(collection, tmp_path):
    root, x, keys = collection
    index = faiss.IndexFlatIP(16)
    index.add(x)
    out = tmp_path / "old"
    out.mkdir()
    faiss.write_index(index, str(out / "index.faiss"))
    (out / "keys.txt").write_text("".join(k + "\n" for k in keys))
    (out / "index.json").write_text(json.dumps({
        "format": "unicom-index", "type": "flat", "n": 3000, "dim": 16, "params": {}, "metric": "inner_product",
        "model": "m", "shards": [{"name": f"s{i:03d}", "kind": "unknown", "source": None, "count": 1000}
                                 for i in range(3)]}))
    idx = fi.IndexDir(out)
    assert idx.keys == keys and idx.entry(2999).key == keys[2999] and idx.entry(2999).shard == "s002"
    assert idx.search(x[:3], 1)[1][:, 0].tolist() == [0, 1, 2]


@pytest.mark.parametrize("spec,match", [
    ("IVF64,PQ7", r"--index-type 'IVF64,PQ7' is not a faiss index_factory string"),
    ("IVF4096,Flat", r"4096 cells need 159,744 training vectors \(39 per cell\) but the collection holds 3,000; "
                     r"use IVF76 or fewer cells"),
    ("Nonsense", r"--index-type 'Nonsense' is not a faiss index_factory string"),
])
def test_bad_specs_fail_in_one_line_before_any_work(collection, tmp_path, spec, match):
    root, _, _ = collection
    with pytest.raises(ValueError, match=match) as e:
        build_index_dir(root, tmp_path / "index", spec, progress=False, echo=None)
    assert "\n" not in str(e.value) and not (tmp_path / "index").exists()


def test_a_spec_over_the_budget_is_refused(collection, tmp_path):
    root, _, _ = collection
    with pytest.raises(ValueError, match=r"--index-type 'flat' needs about 187\.5 KB .* more than --max-index-memory "
                                         r"100\.0 KB; use --index-type auto"):
        build_index_dir(root, tmp_path / "index", "flat", max_index_memory="100KB", progress=False, echo=None)


def test_on_disk_ivf_is_searched_memory_mapped_and_moves_with_its_folder(collection, tmp_path):
    root, x, _ = collection
    out = build_index_dir(root, tmp_path / "a" / "index", "IVF32,Flat", on_disk=True, chunk=500, progress=False,
                          echo=None)
    assert (out / "index.ivfdata").is_file() and json.loads((out / "index.json").read_text())["on_disk"]
    in_memory = build_index_dir(root, tmp_path / "b", "IVF32,Flat", progress=False, echo=None)
    moved = tmp_path / "moved"
    (tmp_path / "a").rename(moved)
    a, b = fi.IndexDir(moved / "index"), fi.IndexDir(in_memory)
    for idx in (a, b):
        faiss.extract_index_ivf(idx.index).nprobe = 32
    assert np.array_equal(a.search(x[:100], 5)[1], b.search(x[:100], 5)[1])
    assert a.meta["measured_bytes"] >= 3000 * (16 * 4 + 8)
