"""The decode policy leaves plain RGB JPEGs untouched: every image of the demo's sample set
(shard members and held-out files) decodes to exactly the pixels of the old opener,
``Image.open(...).convert("RGB")``, so re-embedding the sample set gives bit-identical
features and the demo's numbers do not move."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from unicom.data.images import open_image
from unicom.data.transforms import eval_transform
from unicom.data.wds_reader import Sample, iter_raw, iter_samples
from unicom.models.encoders import module_encoder
from unicom.models.inference import embed_images
from unicom.models.vit import build_vit


def old_open(source) -> np.ndarray:
    with Image.open(source) as f:
        f.load()
        return np.asarray(f.convert("RGB"))


def test_sample_set_pixels_are_bit_identical(sample_set):
    root, _ = sample_set
    shards = sorted(str(p) for p in (Path(root) / "shards").glob("*.tar"))
    raw_jpegs = {}
    for raw in iter_raw(shards):
        if isinstance(raw, dict) and "jpg" in raw:
            raw_jpegs[(raw["__url__"], raw["__key__"])] = raw["jpg"]
    compared = 0
    for s in iter_samples(shards):
        if isinstance(s, Sample):
            data = next(v for (url, key), v in raw_jpegs.items() if key == s.key and url.endswith(f"{s.shard}.tar"))
            assert np.array_equal(np.asarray(s.image), old_open(io.BytesIO(data))), s.key
            compared += 1
    heldout = sorted((Path(root) / "heldout").glob("*/*.jpg"))
    for p in heldout:
        assert np.array_equal(np.asarray(open_image(p)), old_open(p)), p
    assert compared > 100 and len(heldout) > 50


def test_sample_set_embeddings_are_bit_identical(sample_set):
    root, _ = sample_set
    paths = sorted((Path(root) / "heldout").glob("*/*.jpg"))[:40]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        enc = module_encoder(build_vit("ViT-Tiny/8@32"), eval_transform(32), device="cpu")
    new = embed_images(enc, paths, batch_size=8, normalize=True).embeddings
    # the same pipeline fed the old opener's pixels (in-memory RGB images pass the policy unchanged)
    old = embed_images(enc, [Image.fromarray(old_open(p)) for p in paths], batch_size=8, normalize=True).embeddings
    assert np.array_equal(new, old)
