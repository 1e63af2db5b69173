"""``unicom-index add``: new shards into a trained index, equal to a rebuild on the same quantiser."""
from __future__ import annotations

import json

import faiss
import numpy as np
import pytest

from unicom.formats import features as ff
from unicom.formats import index as fi
from unicom.index.cli import main as index_main

from .conftest import clustered, write_features


@pytest.fixture()
def built(tmp_path):
    """An IVF index over two shards of a features folder, with a third shard embedded later."""
    x = clustered(4500, 16, seed=11)
    keys = write_features(tmp_path, x[:3000], 2, prefix="a")
    assert index_main(["build", "--features", str(tmp_path), "--output", str(tmp_path / "index"),
                       "--index-type", "IVF32,Flat", "--target-recall", "0.9", "--no-progress"]) == 0
    return tmp_path, x, keys


def test_append_finds_the_new_items_and_equals_a_rebuild_on_the_same_quantiser(built, capsys):
    root, x, keys = built
    before = faiss.read_index(str(root / "index" / "index.faiss"))
    new_keys = [f"b/{i}" for i in range(1500)]
    ff.write_shard(root / "features", "b000", x[3000:], new_keys, {}, dtype="float32")
    assert index_main(["add", "--index", str(root / "index"), "--no-progress"]) == 0
    assert "added 1,500 vectors from 1 shard(s) (b000); the index holds 4,500" in capsys.readouterr().out
    idx = fi.IndexDir(root / "index")
    assert len(idx) == 4500 and idx.keys == keys + new_keys
    assert idx.entry(4000).key == "b/1000" and idx.entry(4000).shard == "b000"
    assert idx.meta["n"] == 4500 and idx.meta["appended"][0]["shards"] == ["b000"]
    # the new items are found: each is its own nearest neighbour
    ivf = faiss.extract_index_ivf(idx.index)
    ivf.nprobe = ivf.nlist
    assert idx.search(x[3000:3100], 1)[1][:, 0].tolist() == list(range(3000, 3100))
    # a full rebuild with the same trained quantiser: the same inverted lists, the same answers
    rebuilt = faiss.clone_index(before)
    rebuilt.reset()
    rebuilt.add(x)
    faiss.extract_index_ivf(rebuilt).nprobe = ivf.nlist
    assert np.array_equal(faiss.serialize_index(rebuilt), faiss.serialize_index(idx.index))
    # the quantiser was not retrained
    assert np.array_equal(faiss.extract_index_ivf(before).quantizer.reconstruct_n(0, 32),
                          ivf.quantizer.reconstruct_n(0, 32))
    # a second add finds nothing new
    assert index_main(["add", "--index", str(root / "index"), "--no-progress"]) == 0
    assert "nothing to add" in capsys.readouterr().out


def test_features_of_another_dimension_or_encoder_are_refused_before_work(built, tmp_path, capsys):
    root, _, _ = built
    other = tmp_path / "other"
    write_features(other, clustered(100, 8), 1, prefix="c")
    size = (root / "index" / "index.faiss").stat().st_size
    assert index_main(["add", "--index", str(root / "index"), "--features", str(other), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "holds 8-d features but the index holds 16-d vectors" in err
    enc = tmp_path / "enc"
    write_features(enc, clustered(100, 16), 1, prefix="d", meta={"model": "another", "image_size": 32,
                                                                  "embed_dim": 16})
    assert index_main(["add", "--index", str(root / "index"), "--features", str(enc), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "features of another encoder (model: 'another', the index: 'test-encoder')" in err
    assert (root / "index" / "index.faiss").stat().st_size == size
    assert json.loads((root / "index" / "index.json").read_text())["n"] == 3000
