"""The plain onnxruntime + numpy + Pillow client of docs/deploy.md, run as written, against the
toolkit's own embedding of the same images (PyTorch transform, PyTorch encoder)."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from unicom.data.images import open_image
from unicom.deploy.parity import sample_images
from unicom.models.inference import embed_images
from unicom.pretrained.load import load_encoder

from .support import unit

DOC = Path(__file__).resolve().parents[3] / "docs" / "deploy.md"


def _client_source() -> str:
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    code = next(b for b in blocks if "preprocess.json" in b and "InferenceSession" in b)
    return code.split("\nvectors = ")[0]  # the example call at the end names files of the reader's own


def test_docs_client_matches_the_toolkit(demo_onnx, demo_encoder, tmp_path):
    paths = []
    for i, img in enumerate(sample_images(6, size=96, seed=7)):
        # odd shapes (portrait, landscape, square, smaller than the input) exercise the resize and the crop
        w, h = [(96, 71), (57, 96), (96, 96), (40, 33), (95, 64), (64, 95)][i]
        p = tmp_path / f"{i}.png"
        img.crop((0, 0, w, h)).save(p)
        paths.append(str(p))
    env: dict = {}
    exec(compile(_client_source().replace('"runs/b32-onnx"', repr(str(demo_onnx.directory))), str(DOC), "exec"), env)
    got = env["embed"](paths)
    enc = load_encoder(demo_encoder, device="cpu")
    want = embed_images(enc, paths, precision="fp32", normalize=True).embeddings
    assert got.shape == (6, 128) and got.dtype == np.float32
    assert (unit(got) * unit(want)).sum(1).min() >= 0.9999
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    # the client's input is the toolkit's transform, value for value, for every shape
    for p in paths:
        want_x = enc.transform(open_image(p)).numpy()
        assert np.abs(env["preprocess"](p) - want_x).max() < 1e-5, p
