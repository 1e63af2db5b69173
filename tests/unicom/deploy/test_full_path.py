"""The deployment path end to end: export, embed the sample set through onnxruntime with
unicom-embed, search the held-out queries, and find the same top-10 neighbours as PyTorch."""
from __future__ import annotations

import json

import numpy as np
import pytest

from unicom.deploy.export import export_model
from unicom.embed.search import Searcher

from .conftest import save_random_vit
from .support import embed_and_index, heldout_images, top10_keys


def test_onnx_export_embeds_and_searches_like_pytorch(sample_set, demo_encoder, demo_onnx, tmp_path):
    root = sample_set[0]
    shards, queries = root / "shards", heldout_images(root)
    torch_out = embed_and_index(demo_encoder, shards, tmp_path / "torch")
    onnx_out = embed_and_index(demo_onnx.directory, shards, tmp_path / "onnx")
    meta = json.loads((onnx_out / "index" / "index.json").read_text())
    assert meta["kind"] == "onnx" and meta["weights"] == str(demo_onnx.graph) and meta["embed_dim"] == 128
    assert meta["model"] == str(demo_onnx.directory.resolve())
    want, got = top10_keys(torch_out / "index", queries), top10_keys(onnx_out / "index", queries)
    assert len(got) == len(queries) >= 50 and all(len(row) == 10 for row in got)
    assert [set(r) for r in got] == [set(r) for r in want]
    # naming the export again is accepted; the PyTorch encoder it came from is another model
    assert Searcher(onnx_out, model=str(demo_onnx.directory), progress=False).encoder.kind == "onnx"
    with pytest.raises(ValueError, match="another encoder"):
        _ = Searcher(onnx_out, model=str(demo_encoder), progress=False).encoder


def test_compact_export_index_refuses_full_size_queries(sample_set, demo_encoder, tmp_path):
    res = export_model(demo_encoder, tmp_path / "d32", "onnx", dims=32, parity_images=16, progress=False)
    out = embed_and_index(res.directory, sample_set[0] / "heldout", tmp_path / "emb")
    searcher = Searcher(out, progress=False)
    assert searcher.index.dim == 32
    hits = searcher.search_images(heldout_images(sample_set[0])[:3], k=3)
    assert all(row[0].score > 0.999 for row in hits)  # each query finds itself
    with pytest.raises(ValueError, match="do not fit an index of dimension 32"):
        searcher.search_vectors(np.ones((1, 128), np.float32), k=3)
    with pytest.raises(ValueError, match="another encoder"):
        _ = Searcher(out, model=str(demo_encoder), progress=False).encoder


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_b32_sized_random_encoder(sample_set, tmp_path):
    """ViT-B/32's released architecture (88M parameters, 224 px), random weights, to ONNX and
    TorchScript: parity, then the sample set embedded through each, searched like PyTorch."""
    from unicom.models.vit import OFFICIAL_CONFIGS

    enc = save_random_vit(tmp_path / "b32", OFFICIAL_CONFIGS["ViT-B/32"].to_dict())
    root = sample_set[0]
    queries = heldout_images(root)
    want = top10_keys(embed_and_index(enc, root / "shards", tmp_path / "torch") / "index", queries)
    for graph_format in ("onnx", "torchscript"):
        res = export_model(enc, tmp_path / graph_format, graph_format, parity_images=32, progress=False)
        assert res.parity.min_cosine >= 0.9999 and res.parity.top10_agreement == 1.0
        out = embed_and_index(res.directory, root / "shards", tmp_path / f"{graph_format}_index")
        got = top10_keys(out / "index", queries)
        assert [set(r) for r in got] == [set(r) for r in want], graph_format
