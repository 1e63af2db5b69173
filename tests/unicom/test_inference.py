"""The one encoder type and the one ``embed_images`` shared by eval, embed and search."""
from __future__ import annotations

import numpy as np
import torch
from PIL import Image

import unicom.embed
from unicom.models.encoders import as_encoder, open_clip_encoder
from unicom.models.inference import embed_images, encode_batch
from unicom.pretrained.load import LoadedEncoder


def _images(tmp_path, n=5):
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        p = tmp_path / f"{i}.png"
        Image.fromarray(rng.integers(0, 255, (40, 36, 3), dtype=np.uint8)).save(p)
        paths.append(str(p))
    return paths


def test_embed_and_search_share_the_one_function():
    assert unicom.embed.embed_images is embed_images and unicom.embed.encode_batch is encode_batch


def test_embed_images_matches_a_direct_forward_and_skips_bad_files(tiny_vit_encoder, tmp_path):
    paths = _images(tmp_path)
    (tmp_path / "bad.png").write_bytes(b"not an image")
    items = paths[:2] + [str(tmp_path / "bad.png"), str(tmp_path / "gone.png")] + paths[2:]
    res = embed_images(tiny_vit_encoder, items, batch_size=2, workers=0, precision="fp32")  # bit-level check: float32
    assert res.skipped == {2: "bad_image", 3: "missing_image"}
    assert np.isnan(res.embeddings[[2, 3]]).all() and res.ok.tolist() == [True, True, False, False, True, True, True]
    with torch.no_grad():
        batch = torch.stack([tiny_vit_encoder.transform(Image.open(p).convert("RGB")) for p in paths])
        direct = tiny_vit_encoder.model(batch)
    np.testing.assert_allclose(res.embeddings[res.ok], direct.double().numpy(), rtol=1e-5, atol=1e-5)
    unit = embed_images(tiny_vit_encoder, paths, workers=0, normalize=True).embeddings
    np.testing.assert_allclose(np.linalg.norm(unit, axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(unit, encode_batch(tiny_vit_encoder.model, torch.stack(
        [tiny_vit_encoder.transform(Image.open(p).convert("RGB")) for p in paths])), rtol=1e-5, atol=1e-6)


def test_boxes_crop_before_the_transform(tiny_vit_encoder, tmp_path):
    paths = _images(tmp_path, 1)
    box = (2.0, 3.0, 20.0, 30.0)
    res = embed_images(tiny_vit_encoder, paths, boxes=[box], workers=0, precision="fp32")
    crop = Image.open(paths[0]).convert("RGB").crop((2, 3, 20, 30))
    with torch.no_grad():
        direct = tiny_vit_encoder.model(tiny_vit_encoder.transform(crop)[None])
    np.testing.assert_allclose(res.embeddings, direct.numpy(), rtol=1e-5, atol=1e-5)


def test_every_encoder_is_a_loaded_encoder(tiny_export):
    enc = as_encoder(str(tiny_export), "cpu")
    assert isinstance(enc, LoadedEncoder) and enc.kind == "export" and enc.device.type == "cpu"
    clip = open_clip_encoder("TinyCLIP-demo", "none", "cpu")
    assert isinstance(clip, LoadedEncoder) and clip.kind == "open_clip"
    x = torch.zeros(2, 3, clip.image_size, clip.image_size)
    with torch.no_grad():
        assert torch.equal(clip.embed(x), clip.model.encode_image(x))
    assert clip.embed(x).shape == (2, clip.embed_dim)
