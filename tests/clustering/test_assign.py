"""Assignment equals a brute-force argmax; labels are aligned, stamped and resumable."""
import numpy as np
import pytest

from clustering import feature_store as fs
from clustering.assign import assign_array, assign_shards, centroid_index, label_path, labels_dir
from unicom.formats import features as ff
from unicom.runtime.distributed import init_distributed

from .conftest import planted_blobs


def _unit(rng, n, d):
    x = rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_exact_assignment_equals_brute_force_argmax():
    rng = np.random.default_rng(0)
    x, c = _unit(rng, 3000, 24), _unit(rng, 57, 24)
    labels, sims = assign_array(centroid_index(c, gpus=[]), x, chunk=700)  # chunks of uneven size
    sim = x @ c.T
    np.testing.assert_array_equal(labels, sim.argmax(1))
    np.testing.assert_allclose(sims, sim.max(1), atol=1e-5)


def test_approximate_assignment_mostly_agrees():
    # centroids that live where the data lives (as k-means centroids do)
    x, _ = planted_blobs(6000, 300, 32, noise=0.6, seed=2)
    c = x[np.random.default_rng(0).choice(len(x), 2000, replace=False)]
    sim = x @ c.T
    approx, sims = assign_array(centroid_index(c, approx=True, gpus=[], ef_search=64), x)
    assert (approx == sim.argmax(1)).mean() > 0.97
    assert (sim.max(1) - sims).mean() < 1e-3


def _write_fake_shards(out, sizes, d, seed=0):
    rng = np.random.default_rng(seed)
    names = []
    for i, n in enumerate(sizes):
        name = f"{i:05d}"
        ff.write_shard(ff.features_dir(str(out)), name, _unit(rng, n, d), [f"{name}_{j}" for j in range(n)],
                       {"skipped": {}, "ground_truth": {"field": "concept", "values": [str(j % 3) for j in range(n)]}})
        names.append(name)
    return names


def test_assign_shards_writes_aligned_labels_and_sizes(tmp_path):
    names = _write_fake_shards(tmp_path, [50, 0, 31], 16)
    shards, missing = fs.scan_shards(str(tmp_path), names)
    assert not missing
    c = _unit(np.random.default_rng(9), 7, 16)
    res = assign_shards(str(tmp_path), shards, c, init_distributed("cpu"), gpus=[])
    total = np.zeros(7, np.int64)
    for s in shards:
        lab = np.load(label_path(str(tmp_path), s.name))
        assert lab.dtype == np.int32 and lab.shape == (s.n,)
        assert len(ff.read_shard_keys(ff.features_dir(str(tmp_path)), s.name)) == s.n
        x = ff.read_features(ff.features_dir(str(tmp_path)), s.name).astype(np.float32)
        if s.n:
            np.testing.assert_array_equal(lab, (x @ c.T).argmax(1))
        total += np.bincount(lab, minlength=7)
    sizes = ff.read_class_sizes(labels_dir(str(tmp_path)))
    assert sizes.dtype == np.int64 and sizes.tolist() == total.tolist() == res.class_sizes.tolist()
    assert res.n == 81 and sum(res.contingency.values()) == 81
    assert sorted(res.written) == names

    # same centroids again: nothing rewritten; new centroids: every label file is redone
    res2 = assign_shards(str(tmp_path), shards, c, init_distributed("cpu"), gpus=[])
    assert res2.written == [] and sorted(res2.reused) == names
    assert res2.mean_cosine == pytest.approx(res.mean_cosine, abs=1e-4)
    res3 = assign_shards(str(tmp_path), shards, c[::-1].copy(), init_distributed("cpu"), gpus=[])
    assert sorted(res3.written) == names


def test_centroid_dimension_mismatch_is_a_clear_error(tmp_path):
    names = _write_fake_shards(tmp_path, [10], 16)
    shards, _ = fs.scan_shards(str(tmp_path), names)
    with pytest.raises(ValueError, match="D=16"):
        assign_shards(str(tmp_path), shards, np.ones((3, 8), np.float32), init_distributed("cpu"), gpus=[])
