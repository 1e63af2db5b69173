"""GPU paths (skipped without CUDA / a GPU build of faiss): AMP extraction and faiss GPU k-means."""
import numpy as np
import pytest
import torch

from clustering.kmeans import mean_cosine, nearest, spherical_kmeans
from unicom.runtime.faiss_utils import faiss_gpu_count

from .conftest import planted_blobs

needs_gpu = pytest.mark.skipif(not torch.cuda.is_available() or faiss_gpu_count() == 0,
                               reason="needs a CUDA device and a GPU build of faiss")


@pytest.mark.cuda
@needs_gpu
def test_gpu_kmeans_matches_cpu_quality():
    x, _ = planted_blobs(20000, 50, 64, noise=0.5)
    gpu = spherical_kmeans(x, 50, niter=15, gpus=[0])
    cpu = spherical_kmeans(x, 50, niter=15, gpus=[])
    assert gpu.objective == pytest.approx(cpu.objective, abs=0.01)
    _, lab = nearest(x, gpu.centroids, gpus=[0])
    np.testing.assert_array_equal(lab, nearest(x, gpu.centroids, gpus=[])[1])
    assert mean_cosine(x, gpu.centroids, gpus=[0]) == pytest.approx(gpu.objective, abs=1e-4)


@pytest.mark.cuda
@needs_gpu
def test_cuda_extraction_with_autocast(sample_set, tmp_path):
    from clustering.extract import ExtractConfig, extract_features
    from unicom.data.shards import expand_shards
    from unicom.formats import features as ff
    from unicom.runtime.distributed import init_distributed

    root, _ = sample_set
    shards = expand_shards(str(root / "shards"))
    cfg = ExtractConfig(model="TinyCLIP-demo", pretrained="none", batch_size=64, workers=2, precision="bf16")
    res = extract_features(shards, str(tmp_path), cfg, init_distributed("cuda"))
    assert res.samples > 0 and len(res.written) == len(shards)
    x = ff.read_features(ff.features_dir(str(tmp_path)), res.written[0], mmap=False).astype(np.float32)
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, atol=5e-3)
