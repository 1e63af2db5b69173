"""Fixtures of the unicom-serve tests: an index of the sample shards embedded by a tiny random
ViT (``unicom-embed``), a cluster output of the same features (faiss k-means, with the shards'
concepts as ground truth), and the service over both."""
from __future__ import annotations

import json

import numpy as np
import pytest

from unicom.formats import features as ff


@pytest.fixture(scope="session")
def serve_index(sample_set, tiny_export, tmp_path_factory):
    """unicom-embed's OUTPUT for the sample shards (flat index, captions in the tars)."""
    from unicom.embed.cli import main as embed_main

    root, _ = sample_set
    out = tmp_path_factory.mktemp("serve_index")
    rc = embed_main(["--model", str(tiny_export), "--data", str(root / "shards"), "--output", str(out),
                     "--workers", "0", "--batch-size", "64", "--index-type", "flat", "--no-progress",
                     "--log-level", "WARNING"])
    assert rc == 0
    return out


def shard_concepts(tar_path):
    """key → the sample json's ``concept`` of one shard."""
    from unicom.data.wds_reader import Skipped, iter_raw

    return {raw["__key__"]: json.loads(raw["json"])["concept"] for raw in iter_raw([str(tar_path)])
            if not isinstance(raw, Skipped) and "json" in raw}


@pytest.fixture(scope="session")
def serve_clusters(serve_index, tmp_path_factory):
    """A cluster output (features, records with ground truth, labels, class sizes) of 8 k-means
    classes over the index's features."""
    from unicom.runtime.faiss_utils import import_faiss

    faiss = import_faiss()
    src = ff.features_dir(serve_index)
    out = tmp_path_factory.mktemp("serve_clusters")
    names = ff.shard_names(src)
    feats = {n: ff.read_shard(src, n) for n in names}
    x = np.concatenate([np.asarray(f, np.float32) for f, _ in feats.values() if len(f)])
    km = faiss.Kmeans(x.shape[1], 8, niter=10, seed=0, spherical=True)
    km.train(x)
    sizes = np.zeros(8, np.int64)
    for n, (f, keys) in feats.items():
        rec = ff.read_record(src, n)
        concepts = shard_concepts(rec["input"]["path"])
        labels = km.index.search(np.asarray(f, np.float32), 1)[1][:, 0] if len(f) else np.zeros(0, np.int64)
        ff.write_shard(ff.features_dir(out), n, np.asarray(f), keys, {
            "input": rec["input"], "ground_truth": {"field": "concept", "values": [concepts.get(k) for k in keys]}})
        ff.write_labels(ff.labels_dir(out), n, labels.astype(np.int32))
        np.add.at(sizes, labels.astype(np.int64), 1)
    ff.write_class_sizes(ff.labels_dir(out), sizes)
    return out


@pytest.fixture(scope="module")
def service(serve_index, serve_clusters):
    """The service over both, on the CPU, with a small upload limit (1 MB)."""
    from unicom.serve.config import ServeConfig
    from unicom.serve.service import Service

    svc = Service.load(ServeConfig(index=str(serve_index), clusters=str(serve_clusters), device="cpu",
                                   max_upload_mb=1.0, no_progress=True))
    yield svc
    svc.close()


@pytest.fixture(scope="module")
def client(service):
    """Starlette's test client (httpx) on the app, its lifespan run."""
    from fastapi.testclient import TestClient

    from unicom.serve.app import create_app

    with TestClient(create_app(service=service)) as c:
        yield c
