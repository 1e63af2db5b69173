"""Extraction of the sample set with the tiny random-init open_clip model; resume; bad input."""
import os
import shutil

import numpy as np
import pytest

from clustering import feature_store as fs
from clustering.extract import ExtractConfig, extract_features
from unicom.data.shards import shard_name
from unicom.formats import features as ff
from unicom.runtime.distributed import init_distributed


def test_extraction_writes_every_good_sample(extracted, sample_set):
    out, shards, res = extracted
    _, manifest = sample_set
    names = [shard_name(p) for p in shards]
    assert sorted(res.written) == sorted(names)
    bad = manifest["bad_samples"]
    # every bad sample is skipped and counted by reason; everything else has a feature
    assert res.skipped.counts["bad_image"] == sum(r == "bad_image" for r in bad.values())
    assert res.skipped.counts["missing_caption"] == 1 and res.skipped.counts["missing_image"] == 1
    assert res.skipped.counts["truncated_tar"] == 1
    meta = ff.read_meta(ff.features_dir(out))
    assert meta["model"] == "TinyCLIP-demo" and meta["dim"] == 64 and meta["pretrained"] == "none"
    total = 0
    for name in names:
        x = ff.read_features(ff.features_dir(out), name, mmap=False)
        keys = ff.read_shard_keys(ff.features_dir(out), name)
        info = ff.read_record(ff.features_dir(out), name)
        assert x.dtype == np.float16 and x.shape == (len(keys), 64)
        np.testing.assert_allclose(np.linalg.norm(x.astype(np.float32), axis=1), 1.0, atol=2e-3)
        assert len(set(keys)) == len(keys) and not set(keys) & set(bad)
        truth = info["ground_truth"]
        assert truth["field"] == "concept" and len(truth["values"]) == len(keys)
        total += len(keys)
    # the bad shard also holds a few good samples besides its bad ones
    assert total == res.samples > manifest["num_train_samples"]


def test_resume_recomputes_only_the_deleted_shard(extracted, tiny_clip, tmp_path):
    src, shards, _ = extracted
    out = tmp_path / "out"
    shutil.copytree(src, out)
    victim = shard_name(shards[1])
    before = {n: os.stat(ff.shard_paths(ff.features_dir(str(out)), n)[0]).st_mtime_ns for n in map(shard_name, shards)}
    old = ff.read_features(ff.features_dir(str(out)), victim, mmap=False)
    ff.remove_shard(ff.features_dir(str(out)), victim)
    cfg = ExtractConfig(model="TinyCLIP-demo", pretrained="none", batch_size=64, workers=2)
    res = extract_features(shards, str(out), cfg, init_distributed("cpu"), model_bundle=tiny_clip)
    # the truncated shard of the sample set is recorded truncated and unchanged since: it is read once
    assert res.written == [victim] and res.already_done == len(shards) - 1
    for n, t in before.items():
        if n != victim:
            assert os.stat(ff.shard_paths(ff.features_dir(str(out)), n)[0]).st_mtime_ns == t
    np.testing.assert_allclose(ff.read_features(ff.features_dir(str(out)), victim, mmap=False).astype(np.float32),
                               old.astype(np.float32), atol=2e-3)
    # a half-written file (a .tmp left by a kill) never counts as done
    ff.remove_shard(ff.features_dir(str(out)), victim)
    (ff.features_dir(str(out)) / f"{victim}.npy.tmp").write_bytes(b"partial")
    assert not ff.shard_complete(ff.features_dir(str(out)), victim)


def test_other_settings_in_the_same_out_are_refused(extracted, tiny_clip, tmp_path):
    src, shards, _ = extracted
    out = tmp_path / "out"
    shutil.copytree(src, out)
    cfg = ExtractConfig(model="TinyCLIP-demo", pretrained="none", modality="image", workers=0)
    with pytest.raises(ValueError, match="other settings"):
        extract_features(shards, str(out), cfg, init_distributed("cpu"), model_bundle=tiny_clip)


def test_image_only_needs_no_caption(sample_set, tiny_clip, tmp_path):
    root, _ = sample_set
    bad_shard = str(sorted((root / "shards").glob("*.tar"))[-1])
    cfg = ExtractConfig(model="TinyCLIP-demo", pretrained="none", modality="image", workers=0)
    res = extract_features([bad_shard], str(tmp_path), cfg, init_distributed("cpu"), model_bundle=tiny_clip)
    assert "missing_caption" not in res.skipped.counts and res.skipped.counts["bad_image"] >= 1


def test_mixed_feature_dims_are_a_clear_error(tmp_path):
    ff.write_shard(ff.features_dir(str(tmp_path)), "a", np.ones((3, 8), np.float16), ["1", "2", "3"], {})
    ff.write_shard(ff.features_dir(str(tmp_path)), "b", np.ones((2, 16), np.float16), ["1", "2"], {})
    with pytest.raises(ValueError, match="different dimensions"):
        fs.scan_shards(str(tmp_path), ["a", "b"])
