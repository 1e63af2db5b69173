"""CLIP weights rewritten at the same path (``unicom-cluster --clip-pretrained FILE`` after ``make clip``
ran again): the old features, k-means and labels are not reused (docs/failure_modes.md)."""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
import torch
from safetensors.torch import save

from clustering.extract import ExtractConfig, extract_features
from clustering.feature_store import check_meta
from clustering.pipeline import KMEANS_JSON, ClusterConfig, run_assign, run_kmeans
from unicom.data.shards import expand_shards
from unicom.formats import features as ff
from unicom.formats.fingerprint import file_sha256
from unicom.runtime.distributed import init_distributed


def _write_weights(path: Path, model, scale: float) -> None:
    """Write the model's weights (times ``scale``) into ``path`` in place, the way a retrained
    model overwrites its file; the mtime is moved on as a later write would."""
    state = {k: (v * scale if v.is_floating_point() else v).detach().contiguous() for k, v in
             model.state_dict().items()}
    existed = path.exists()
    old = path.stat().st_mtime_ns if existed else 0
    with open(path, "r+b" if existed else "wb") as f:  # same inode: only size, mtime and content tell
        f.truncate(0)
        f.write(save(state))
    if existed:
        os.utime(path, ns=(old + 10**9, old + 10**9))


def test_clip_weights_rewritten_in_place_are_extracted_and_clustered_again(sample_set, tiny_clip, tmp_path, caplog):
    root, _ = sample_set
    shards = expand_shards(str(root / "shards"))[:1]
    weights = tmp_path / "clip.safetensors"
    _write_weights(weights, tiny_clip[0], 1.0)
    cfg = ExtractConfig(model="TinyCLIP-demo", pretrained=str(weights), batch_size=64, workers=0, modality="image")
    ccfg = ClusterConfig(k=4, niter=3, gpus="none")
    out = str(tmp_path / "out")
    ctx = init_distributed("cpu")
    names = ["00000"]
    extract_features(shards, out, cfg, ctx)
    meta = ff.read_meta(ff.features_dir(out))
    assert meta["pretrained_sha256"] == file_sha256(weights)
    before = ff.read_features(ff.features_dir(out), "00000", mmap=False)
    run_assign(out, names, run_kmeans(out, names, ccfg, ctx), ccfg, ctx)
    fp_before = json.loads((Path(out) / KMEANS_JSON).read_text())["fingerprint"]
    labels_before = ff.read_labels(ff.labels_dir(out), "00000")

    _write_weights(weights, tiny_clip[0], 0.5)  # `make clip` again: new weights, same path and size
    res = extract_features(shards, out, cfg, ctx)
    assert res.written == names and res.already_done == 0
    assert "CLIP weights" in caplog.text and "changed since the features" in caplog.text
    assert ff.read_meta(ff.features_dir(out))["pretrained_sha256"] == file_sha256(weights)
    after = ff.read_features(ff.features_dir(out), "00000", mmap=False)
    assert after.shape == before.shape and not torch.equal(torch.from_numpy(after), torch.from_numpy(before))
    # the label files of the old features are gone before k-means runs; k-means does not reuse the old result
    assert not ff.label_path(ff.labels_dir(out), "00000").exists()
    caplog.clear()
    with caplog.at_level("INFO"):
        centroids = run_kmeans(out, names, ccfg, ctx)
    assert "reusing" not in caplog.text
    assert json.loads((Path(out) / KMEANS_JSON).read_text())["fingerprint"] != fp_before
    rep = run_assign(out, names, centroids, ccfg, ctx)
    assert rep["cluster_sizes"]["samples"] == len(labels_before)
    assert ff.label_path(ff.labels_dir(out), "00000").exists()
    # the same weights once more: all done, nothing read
    assert extract_features(shards, out, cfg, ctx).already_done == 1


def test_other_clip_weights_at_another_path_are_still_refused(tmp_path):
    old = {"model": "TinyCLIP-demo", "pretrained": "/a.safetensors", "pretrained_sha256": "1" * 64}
    new = dict(old, pretrained="/b.safetensors", pretrained_sha256="2" * 64)
    with pytest.raises(ValueError, match="pretrained") as info:
        check_meta(old, new, str(tmp_path))
    assert "--output" in str(info.value) and not re.search(r"--out\b", str(info.value))


def _two_rank_worker(rank, world, port, shards, out, weights, result_dir):
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(world),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    from unicom.models.clip_loader import create_clip
    from unicom.runtime.distributed import barrier, cleanup_distributed

    ctx = init_distributed("cpu")
    try:
        cfg = ExtractConfig(model="TinyCLIP-demo", pretrained=weights, batch_size=64, workers=0, modality="image")
        first = extract_features(shards, out, cfg, ctx)
        barrier()
        if ctx.is_main:  # the weights are rewritten between two runs
            _write_weights(Path(weights), create_clip("TinyCLIP-demo", "none")[0], 0.5)
        barrier()
        second = extract_features(shards, out, cfg, ctx)
        Path(result_dir, f"rank{rank}.json").write_text(json.dumps(
            {"first": first.written_by_rank, "second": second.written_by_rank}))
    finally:
        cleanup_distributed()


@pytest.mark.slow
def test_two_ranks_agree_on_rewritten_clip_weights(sample_set, tiny_clip, tmp_path):
    """Rank 0 decides and removes the stale shards; the other rank waits for it (no rank is left
    at a collective the other skipped) and every shard is extracted again exactly once."""
    import torch.multiprocessing as mp

    from tests.conftest import free_port

    root, _ = sample_set
    shards = expand_shards(str(root / "shards"))[:2]
    weights = tmp_path / "clip.safetensors"
    _write_weights(weights, tiny_clip[0], 1.0)
    mp.start_processes(_two_rank_worker, args=(2, free_port(), shards, str(tmp_path / "out"), str(weights),
                                               str(tmp_path)), nprocs=2, start_method="spawn", join=True)
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    for run in ("first", "second"):
        assert ranks[0][run] == ranks[1][run]
        assert sorted(sum(ranks[0][run], [])) == ["00000", "00001"]
    assert ff.read_meta(ff.features_dir(tmp_path / "out"))["pretrained_sha256"] == file_sha256(weights)
