"""Two gloo processes: extraction writes every shard exactly once; hierarchical k-means across
the ranks comes close to flat k-means; the labels and class sizes cover every sample once."""
import json
import os

import numpy as np
import pytest
import torch.multiprocessing as mp

from ..conftest import free_port


def _worker(rank, world, port, shards, out, result_dir):
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(world),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    import torch

    torch.set_num_threads(1)
    from clustering.extract import ExtractConfig, extract_features
    from clustering.pipeline import ClusterConfig, run_assign, run_kmeans
    from unicom.data.shards import shard_name
    from unicom.runtime.distributed import cleanup_distributed, init_distributed

    ctx = init_distributed("cpu")
    try:
        cfg = ExtractConfig(model="TinyCLIP-demo", pretrained="none", batch_size=64, workers=0)
        res = extract_features(shards, out, cfg, ctx)
        names = [shard_name(p) for p in shards]
        ccfg = ClusterConfig(k=12, method="hierarchical", niter=10, gpus="none")
        centroids = run_kmeans(out, names, ccfg, ctx)
        run_assign(out, names, centroids, ccfg, ctx)
        with open(os.path.join(result_dir, f"rank{rank}.json"), "w") as f:
            json.dump({"written": res.written, "by_rank": res.written_by_rank, "samples_total": res.samples_total,
                       "skipped": res.skipped.as_dict()}, f)
    finally:
        cleanup_distributed()


@pytest.fixture(scope="module")
def two_rank_run(sample_set, tmp_path_factory):
    from unicom.data.shards import expand_shards

    root, _ = sample_set
    shards = expand_shards(str(root / "shards"))
    out = tmp_path_factory.mktemp("dist_out")
    results = tmp_path_factory.mktemp("dist_results")
    mp.start_processes(_worker, args=(2, free_port(), shards, str(out), str(results)), nprocs=2,
                       start_method="spawn", join=True)
    ranks = [json.loads((results / f"rank{r}.json").read_text()) for r in range(2)]
    return shards, out, ranks


def test_every_shard_written_exactly_once(two_rank_run):
    from unicom.data.shards import shard_name

    shards, out, ranks = two_rank_run
    written = ranks[0]["written"] + ranks[1]["written"]
    assert sorted(written) == sorted(shard_name(p) for p in shards)  # all, and no shard twice
    assert ranks[0]["written"] and ranks[1]["written"]                # both ranks worked
    assert ranks[0]["by_rank"] == ranks[1]["by_rank"] == [ranks[0]["written"], ranks[1]["written"]]
    assert ranks[0]["skipped"] == ranks[1]["skipped"] and ranks[0]["skipped"]["missing_caption"] == 1
    assert not list((out / "features").glob("*.tmp"))


def test_hierarchical_across_ranks_is_close_to_flat(two_rank_run):
    from clustering.kmeans import mean_cosine, spherical_kmeans
    from unicom.data.shards import shard_name
    from unicom.formats import features as ff

    shards, out, ranks = two_rank_run
    km = json.loads((out / "kmeans.json").read_text())
    assert km["method"] == "hierarchical" and km["world_size"] == 2 and km["extra"]["workers"] == 2
    fdir = ff.features_dir(str(out))
    x = np.concatenate([ff.read_features(fdir, shard_name(p), mmap=False) for p in shards]).astype(np.float32)
    hier = mean_cosine(x, np.load(out / "centroids.npy"))
    assert hier == pytest.approx(km["objective"], abs=1e-4)
    flat = spherical_kmeans(x, 12, niter=10, seed=1234).objective
    assert hier >= 0.97 * flat and (1 - hier) <= 1.15 * (1 - flat)
    sizes = np.load(out / "labels" / "class_sizes.npy")
    assert sizes.sum() == ranks[0]["samples_total"] == len(x)
