"""`unicom-cluster` end to end on the sample set: output formats, report, resume, errors."""
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from clustering.cli import main
from unicom.formats import features as ff


def _args(data, out, k, *extra):
    return ["--data", str(data), "--output", str(out), "--num-clusters", str(k), "--clip-model", "TinyCLIP-demo",
            "--clip-pretrained", "none", "--workers", "2", "--batch-size", "64", "--no-progress", *extra]


@pytest.fixture()
def out_with_features(extracted, tmp_path):
    src, shards, _ = extracted
    out = tmp_path / "run"
    shutil.copytree(src, out)
    return out, shards


@pytest.mark.parametrize("method", ["flat", "two-level", "hierarchical"])
def test_full_run_writes_the_design_formats(out_with_features, sample_set, method, capsys):
    out, shards = out_with_features
    root, manifest = sample_set
    assert main(_args(root / "shards", out, 12, "--method", method, "--iters", "10")) == 0
    printed = capsys.readouterr().out
    assert "purity" in printed and "NMI" in printed
    c = np.load(out / "centroids.npy")
    assert c.dtype == np.float32 and c.shape == (12, 64)
    km = json.loads((out / "kmeans.json").read_text())
    assert km["k"] == 12 and km["method"] == method and km["seed"] == 1234 and km["iterations"] == 10
    assert 0 < km["objective"] <= 1 and km["seconds"] >= 0
    sizes = np.load(out / "labels" / "class_sizes.npy")
    assert sizes.dtype == np.int64 and sizes.shape == (12,)
    n = 0
    for p in shards:
        name = Path(p).name[:-4]
        lab = np.load(out / "labels" / f"{name}.npy")
        keys = ff.read_shard_keys(ff.features_dir(str(out)), name)
        assert lab.dtype == np.int32 and len(lab) == len(keys) and lab.min() >= 0 and lab.max() < 12
        n += len(lab)
    assert sizes.sum() == n
    rep = json.loads((out / "report.json").read_text())
    assert rep["cluster_sizes"]["samples"] == n and rep["cluster_sizes"]["k"] == 12
    assert 0 < rep["ground_truth"]["purity"] <= 1 and 0 < rep["ground_truth"]["nmi"] <= 1
    assert rep["ground_truth"]["truth_classes"] == len(manifest["train_concepts"])
    assert rep["skipped"]["missing_caption"] == 1
    assert (out / "cluster_sizes.png").stat().st_size > 1000


def test_rerun_resumes_without_redoing_work(out_with_features, sample_set):
    out, shards = out_with_features
    root, _ = sample_set
    assert main(_args(root / "shards", out, 10, "--iters", "5")) == 0
    stamp = {p.name: p.stat().st_mtime_ns for p in (out / "labels").glob("0*.npy")}
    c_time = (out / "centroids.npy").stat().st_mtime_ns
    # a killed assignment: one label file lost, the rest kept
    victim = sorted(stamp)[0]
    (out / "labels" / victim).unlink()
    assert main(_args(root / "shards", out, 10, "--iters", "5")) == 0
    assert (out / "centroids.npy").stat().st_mtime_ns == c_time  # k-means reused
    for name, t in stamp.items():
        if name != victim:
            assert (out / "labels" / name).stat().st_mtime_ns == t
    assert (out / "labels" / victim).is_file()


def test_k_larger_than_the_data_is_a_clear_error(out_with_features, sample_set, capsys):
    out, _ = out_with_features
    root, _ = sample_set
    assert main(_args(root / "shards", out, 100000, "--stage", "kmeans")) == 2
    assert "larger than the number of samples" in capsys.readouterr().err


def test_assign_without_centroids_is_a_clear_error(out_with_features, sample_set, capsys):
    out, _ = out_with_features
    root, _ = sample_set
    assert main(_args(root / "shards", out, 8, "--stage", "assign")) == 2
    assert "run the k-means stage first" in capsys.readouterr().err


def test_killed_kmeans_resumes_from_its_last_saved_iteration(out_with_features, sample_set, monkeypatch, caplog):
    import clustering.pipeline as pipeline

    out, _ = out_with_features
    root, _ = sample_set
    args = _args(root / "shards", out, 16, "--iters", "8", "--checkpoint-every", "0", "--stage", "kmeans",
                 "--init", "random")
    real = pipeline._checkpointer

    def dying(out_, fp, every_s):
        save = real(out_, fp, every_s)

        def cb(state):
            save(state)
            if state.iteration == 3:
                raise KeyboardInterrupt  # killed after iteration 3 was saved
        return cb

    monkeypatch.setattr(pipeline, "_checkpointer", dying)
    with pytest.raises(KeyboardInterrupt):
        main(args)
    assert not (out / "centroids.npy").exists()
    assert json.loads((out / "kmeans_state" / "state.json").read_text())["iteration"] == 3
    monkeypatch.setattr(pipeline, "_checkpointer", real)
    with caplog.at_level("INFO", logger="clustering"):
        assert main(args) == 0
    assert "resuming after iteration 3" in caplog.text
    assert not (out / "kmeans_state").exists()
    resumed = np.load(out / "centroids.npy")
    assert main(args + ["--redo-kmeans"]) == 0
    np.testing.assert_allclose(np.load(out / "centroids.npy"), resumed, atol=1e-4)
