"""The clustering's failure modes (docs/failure_modes.md): shards that were empty, truncated or
not a tar when extracted, NaN rows in feature files, duplicate keys, read-only outputs and two
runs into one folder."""
from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest

from clustering.assign import assign_array, centroid_index
from clustering.extract import ExtractConfig, extract_features
from clustering.pipeline import ClusterConfig, run_assign, run_kmeans
from tests.tar_files import write_tar
from unicom.formats import features as ff
from unicom.runtime.distributed import init_distributed

CFG = ExtractConfig(model="TinyCLIP-demo", pretrained="none", batch_size=32, workers=0)


def _members(sample_set, n):
    """The tar members of the first ``n`` samples of the sample set's first shard."""
    root, _ = sample_set
    with tarfile.open(root / "shards" / "00000.tar") as tar:
        out = []
        for m in tar.getmembers():
            out.append((m.name, tar.extractfile(m).read()))
    return out[:3 * n]


def _labelled(out: Path, names, k: int = 2) -> int:
    ctx = init_distributed("cpu")
    ccfg = ClusterConfig(k=k, niter=3, gpus="none")
    centroids = run_kmeans(str(out), names, ccfg, ctx)
    return run_assign(str(out), names, centroids, ccfg, ctx)["cluster_sizes"]["samples"]


@pytest.mark.parametrize("broken", ["empty", "truncated", "not_a_tar"])
def test_a_shard_fixed_after_a_bad_read_is_extracted_again(sample_set, tiny_clip, tmp_path, broken):
    """A shard that was empty, truncated or not a tar when extracted used to count as done forever."""
    members = _members(sample_set, 20)
    good = tmp_path / "data" / "00000.tar"
    good.parent.mkdir()
    write_tar(good, members)
    full = good.read_bytes()
    other = tmp_path / "data" / "00001.tar"
    write_tar(other, [(f"b{name}", data) for name, data in members])
    bad = {"empty": b"", "truncated": full[: len(full) // 2], "not_a_tar": b"<html>404 not found</html>" * 40}[broken]
    good.write_bytes(bad)
    out = tmp_path / "out"
    shards = [str(good), str(other)]
    extract_features(shards, str(out), CFG, init_distributed("cpu"), model_bundle=tiny_clip)

    good.write_bytes(full)  # the file is fixed (re-downloaded)
    os.utime(good, ns=(time.time_ns(), time.time_ns() + 1_000_000))
    res = extract_features(shards, str(out), CFG, init_distributed("cpu"), model_bundle=tiny_clip)
    assert res.written == ["00000"] and res.already_done == 1
    rec = ff.read_record(ff.features_dir(out), "00000")
    assert rec["n"] == 20 and rec["samples_read"] == 20 and rec["input"]["size"] == len(full)
    assert _labelled(out, ["00000", "00001"]) == 40  # every sample labelled

    # done now: a third run reads nothing
    res = extract_features(shards, str(out), CFG, init_distributed("cpu"), model_bundle=tiny_clip)
    assert res.written == [] and res.already_done == 2


def test_a_shard_changed_since_extraction_is_extracted_again(sample_set, tiny_clip, tmp_path):
    members = _members(sample_set, 12)
    shard = tmp_path / "00000.tar"
    write_tar(shard, members[:3 * 6])
    out = tmp_path / "out"
    extract_features([str(shard)], str(out), CFG, init_distributed("cpu"), model_bundle=tiny_clip)
    assert ff.read_record(ff.features_dir(out), "00000")["n"] == 6
    write_tar(shard, members)  # the shard grew
    res = extract_features([str(shard)], str(out), CFG, init_distributed("cpu"), model_bundle=tiny_clip)
    assert res.written == ["00000"]
    assert len(ff.read_shard_keys(ff.features_dir(out), "00000")) == 12


def test_a_duplicate_key_is_embedded_once_and_counted(sample_set, tiny_clip, tmp_path):
    """A key occurring twice in a shard used to get two feature rows (so two labels)."""
    members = _members(sample_set, 8)
    shard = tmp_path / "00000.tar"
    write_tar(shard, members + members[:3])  # sample 0 again at the end
    out = tmp_path / "out"
    res = extract_features([str(shard)], str(out), CFG, init_distributed("cpu"), model_bundle=tiny_clip)
    keys = ff.read_shard_keys(ff.features_dir(out), "00000")
    assert len(keys) == 8 == len(set(keys))
    assert res.skipped.counts["duplicate_key"] == 1
    assert ff.read_record(ff.features_dir(out), "00000")["skipped"] == {"duplicate_key": 1}


def _features_with_nan(tmp_path: Path, row: int, value: float = np.nan) -> Path:
    rng = np.random.default_rng(0)
    out = tmp_path / "out"
    for name in ("00000", "00001"):
        x = rng.standard_normal((50, 8)).astype(np.float32)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        if name == "00001":
            x[row] = value
        ff.write_shard(ff.features_dir(out), name, x, [f"k{i}" for i in range(50)], {})
    return out


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_non_finite_rows_are_named_by_kmeans(tmp_path, value):
    out = _features_with_nan(tmp_path, 17, value)
    with pytest.raises(ff.NonFiniteFeaturesError, match=r"00001\.npy row 17 holds NaN/Inf"):
        run_kmeans(str(out), ["00000", "00001"], ClusterConfig(k=4, niter=2, gpus="none"), init_distributed("cpu"))


def test_non_finite_rows_outside_the_kmeans_sample_are_named_by_the_assignment(tmp_path):
    out = _features_with_nan(tmp_path, 33)
    ctx = init_distributed("cpu")
    centroids = np.eye(4, 8, dtype=np.float32)
    for approx in (False, True):
        with pytest.raises(ff.NonFiniteFeaturesError, match=r"00001\.npy row 33") as info:
            run_assign(str(out), ["00000", "00001"], centroids,
                       ClusterConfig(k=4, gpus="none", approx_assign=approx), ctx)
        assert "ef-search" not in str(info.value)


def test_the_ef_search_advice_is_for_approximate_search_only():
    x = np.full((3, 8), np.nan, np.float32)
    cents = np.eye(4, 8, dtype=np.float32)
    with pytest.raises(RuntimeError) as info:
        assign_array(centroid_index(cents, gpus=[]), x)
    assert "ef-search" not in str(info.value) and "not finite" in str(info.value)
    with pytest.raises(RuntimeError, match="raise --ef-search"):
        assign_array(centroid_index(cents, approx=True, gpus=[]), x, approx=True)


def _cli(data, out, *extra):
    return [sys.executable, "-m", "clustering.cli", "--data", str(data), "--output", str(out), "--num-clusters", "4",
            "--clip-model", "TinyCLIP-demo", "--clip-pretrained", "none", "--workers", "0", "--iters", "3", *extra]


def test_read_only_output_folder_is_one_line(sample_set, read_only_dir, capsys):
    from clustering.cli import main

    root, _ = sample_set
    assert main(_cli(root / "shards", read_only_dir / "run")[3:]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("unicom-cluster: error: cannot write ") and "\n" not in err
    assert str(read_only_dir / "run") in err


def test_a_run_into_a_folder_in_use_is_refused_at_once(sample_set, tmp_path, capsys):
    from clustering.cli import main
    from unicom.cli.run_lock import lock_output_dir

    root, _ = sample_set
    out = tmp_path / "run"
    with lock_output_dir(out, "unicom-cluster"):
        t0 = time.time()
        assert main(_cli(root / "shards", out)[3:]) == 2
        assert time.time() - t0 < 5
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith(f"unicom-cluster: error: {out} is in use by unicom-cluster (pid ")
    assert not (out / "features").exists()


@pytest.mark.slow  # two real runs, ~30 s on the shared 2-core machine (mostly importing torch twice)
def test_a_second_run_into_the_same_folder_is_refused(sample_set, tmp_path):
    """Two runs into one folder used to replace each other's results silently."""
    data = tmp_path / "data"
    data.mkdir()
    write_tar(data / "00000.tar", _members(sample_set, 20))
    out = tmp_path / "run"
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]), OMP_NUM_THREADS="1")
    first = subprocess.Popen(_cli(data, out), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
    try:
        deadline = time.time() + 120
        while not (out / ".lock.json").is_file():
            assert first.poll() is None, first.communicate()[1][-2000:]
            assert time.time() < deadline, "the first run never took the lock"
            time.sleep(0.1)
        t0 = time.time()
        second = subprocess.run(_cli(data, out), env=env, capture_output=True, text=True, timeout=120)
        took = time.time() - t0
        _, err1 = first.communicate(timeout=300)
    finally:
        if first.poll() is None:
            first.kill()
    print(f"second run refused after {took:.1f}s")
    assert second.returncode == 2 and took < 60  # bounded by the imports before main (torch)
    err = second.stderr.strip()
    assert "\n" not in err
    assert err.startswith(f"unicom-cluster: error: {out} is in use by unicom-cluster (pid {first.pid}")
    assert first.returncode == 0, err1[-2000:]
    assert (out / "labels" / "class_sizes.npy").is_file() and not (out / ".lock.json").exists()
