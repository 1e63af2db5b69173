"""unicom-export: the folder it writes, parity, the compact heads, and an export as an encoder."""
from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from unicom.deploy.export import export_model
from unicom.deploy.parity import sample_images, transform_batch
from unicom.formats import deploy as fmt
from unicom.models.inference import encode_batch
from unicom.pretrained.load import LoadedEncoder, load_encoder

from .support import unit


def _raw_reference(encoder_dir, n: int = 24) -> "tuple[torch.Tensor, np.ndarray]":
    """A batch of drawn images and the PyTorch encoder's raw float32 embeddings of it."""
    enc = load_encoder(encoder_dir, device="cpu")
    x = transform_batch(sample_images(n, seed=3), enc.transform)
    with torch.inference_mode():
        return x, enc.model(x).numpy()


def test_onnx_folder_record_and_parity(demo_onnx, demo_encoder):
    d = demo_onnx.directory
    rec = json.loads((d / fmt.RECORD_FILE).read_text())
    assert rec["format"] == "unicom-deploy" and rec["graph_format"] == "onnx" and rec["opset"] == 18
    digest = hashlib.sha256((d / "model.onnx").read_bytes()).hexdigest()
    assert rec["sha256"] == digest and rec["files"] == {"model.onnx": digest}
    assert rec["input"]["shape"] == ["batch", 3, 64, 64] and rec["embed_dim"] == 128 and rec["normalized"]
    assert rec["encoder"]["weights_sha256"] == hashlib.sha256((demo_encoder / "model.safetensors").read_bytes()
                                                              ).hexdigest()
    pre = json.loads((d / fmt.PREPROCESS_FILE).read_text())
    assert pre["image_size"] == 64 and pre["resize"]["interpolation"] == "bicubic" and pre["crop"]["type"] == "center"
    assert pre["mean"] == rec["mean"] and len(pre["std"]) == 3 and pre["decode"]["mode"] == "RGB"
    par = json.loads((d / fmt.PARITY_FILE).read_text())
    assert par["passed"] and par["min_cosine"] >= 0.9999 and par["threshold"] == 0.9999 and par["n"] == 64
    assert par["top10_agreement"] == 1.0 and par["max_abs_diff"] < 1e-4
    assert fmt.read_record(d, verify=True)["sha256"] == digest


def test_onnx_graph_has_a_dynamic_batch_and_matches_pytorch(demo_onnx, demo_encoder):
    import onnx
    import onnxruntime as ort

    dims = onnx.load(str(demo_onnx.graph)).graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param and [d.dim_value for d in dims[1:]] == [3, 64, 64]
    x, raw = _raw_reference(demo_encoder, 7)
    sess = ort.InferenceSession(str(demo_onnx.graph), providers=["CPUExecutionProvider"])
    for b in (1, 7):  # neither is the batch of 2 the graph was traced with
        y = sess.run(None, {"images": x[:b].numpy()})[0]
        assert y.shape == (b, 128)
        assert np.abs(y - unit(raw[:b])).max() < 1e-5


def test_export_loads_as_an_encoder(demo_onnx, demo_encoder):
    enc = load_encoder(demo_onnx.directory)
    assert isinstance(enc, LoadedEncoder) and enc.kind == "onnx" and enc.device == torch.device("cpu")
    assert (enc.embed_dim, enc.image_size) == (128, 64) and enc.extra["sha256"] == demo_onnx.record["sha256"]
    assert enc.describe()["weights"] == str(demo_onnx.graph)
    x, raw = _raw_reference(demo_encoder, 9)
    got = encode_batch(enc, x, precision="fp32")
    assert isinstance(enc.embed(x), torch.Tensor) and got.shape == (9, 128)
    assert (unit(got) * unit(raw)).sum(1).min() >= 0.9999
    assert load_encoder(demo_onnx.graph).kind == "onnx"  # the graph file names its folder too
    with pytest.raises(ValueError, match=r"takes 64-px images .*--image-size 32"):
        load_encoder(demo_onnx.directory, image_size=32)


def test_torchscript_export_parity_and_encoder(demo_encoder, tmp_path):
    res = export_model(demo_encoder, tmp_path / "ts", "torchscript", parity_images=16, progress=False)
    assert res.graph.name == "model.torchscript.pt" and res.parity.min_cosine >= 0.9999 and res.record["opset"] is None
    enc = load_encoder(res.directory)
    assert enc.kind == "torchscript" and enc.embed_dim == 128
    x, raw = _raw_reference(demo_encoder, 5)
    assert (unit(encode_batch(enc, x, precision="fp32")) * unit(raw)).sum(1).min() >= 0.9999


def test_no_normalize_keeps_the_raw_head(demo_encoder, tmp_path):
    res = export_model(demo_encoder, tmp_path / "raw", "torchscript", normalize=False, parity_images=16,
                       progress=False)
    assert res.record["normalized"] is False
    x, raw = _raw_reference(demo_encoder, 6)
    got = load_encoder(res.directory).embed(x).numpy()
    assert np.abs(got - raw).max() <= 1e-4 * np.abs(raw).max()
    assert not np.allclose(np.linalg.norm(got, axis=1), 1.0)


def test_first_dims_cut(demo_encoder, tmp_path):
    res = export_model(demo_encoder, tmp_path / "d16", "torchscript", dims=16, parity_images=16, progress=False)
    assert res.record["dims"] == {"method": "first", "dims": 16, "full_dim": 128} and res.record["embed_dim"] == 16
    x, raw = _raw_reference(demo_encoder, 6)
    got = load_encoder(res.directory).embed(x).numpy()
    assert np.abs(got - unit(raw[:, :16])).max() < 1e-5


def test_pca_head_matches_an_independent_fit(demo_encoder, sample_set, tmp_path):
    from sklearn.decomposition import PCA

    from unicom.models.inference import embed_images

    heldout = sample_set[0] / "heldout"
    res = export_model(demo_encoder, tmp_path / "pca", "torchscript", dims=8, pca_fit=str(heldout),
                       parity_images=16, progress=False)
    dims = res.record["dims"]
    files = sorted(heldout.rglob("*.jpg"))
    assert dims["method"] == "pca" and dims["n"] == len(files) and 0 < dims["variance_kept"] <= 1
    # the reference: the float32 embeddings of the same set, a float64 PCA of them
    enc = load_encoder(demo_encoder, device="cpu")
    feats = embed_images(enc, files, precision="fp32", normalize=True).embeddings.astype(np.float64)
    pca = PCA(n_components=8).fit(feats)
    x, raw = _raw_reference(demo_encoder, 12)
    want = unit((unit(raw) - pca.mean_) @ pca.components_.T)
    got = load_encoder(res.directory).embed(x).numpy()
    # components are defined up to sign: compare the similarities between images
    assert np.abs(got @ got.T - want @ want.T).max() < 0.02


def test_fp16_graph_within_its_threshold(demo_encoder, tmp_path):
    res = export_model(demo_encoder, tmp_path / "h", "onnx", fp16=True, parity_images=16, progress=False)
    assert res.record["dtype"] == "float16" and res.parity.threshold == 0.999 and res.parity.passed
    import onnx

    inits = onnx.load(str(res.graph)).graph.initializer
    assert any(t.data_type == onnx.TensorProto.FLOAT16 for t in inits)
    assert load_encoder(res.directory).embed(torch.zeros(2, 3, 64, 64)).dtype == torch.float32


def test_image_size_resizes_like_unicom_load(demo_encoder, tmp_path):
    res = export_model(demo_encoder, tmp_path / "s96", "torchscript", image_size=96, parity_images=16,
                       progress=False)
    assert res.record["image_size"] == 96 and res.record["input"]["shape"] == ["batch", 3, 96, 96]
    ref = load_encoder(demo_encoder, device="cpu", image_size=96)
    x = transform_batch(sample_images(4, seed=5), ref.transform)
    got = load_encoder(res.directory).embed(x)
    assert (F.normalize(ref.model(x), dim=1) * got).sum(1).min() >= 0.9999


def test_open_clip_tower_exports_to_onnx(tmp_path):
    from unicom.formats.export import save_export
    from unicom.models.open_clip_tower import build_open_clip_tower

    torch.manual_seed(0)
    tower = build_open_clip_tower("TinyCLIP-demo", embed_dim=48, pretrained="none").eval()
    save_export(tower, tmp_path / "tower", tower.image_size, tower.mean, tower.std, tower.embed_dim)
    res = export_model(tmp_path / "tower", tmp_path / "onnx", "onnx", parity_images=16, progress=False)
    assert res.parity.min_cosine >= 0.9999 and res.record["embed_dim"] == 48
    assert res.record["encoder"]["kind"] == "export" and load_encoder(res.directory).kind == "onnx"


def test_an_export_is_no_training_start(demo_onnx):
    from unicom.train.init_from import read_source

    with pytest.raises(ValueError, match="holds no PyTorch weights"):
        read_source(str(demo_onnx.directory))
