"""The decode policy seen through an encoder: a tiny random ViT built here embeds real
photographs from ``skimage.data``; each case also shows the old opener (``convert("RGB")``)
failing it."""
from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from unicom.data.transforms import eval_transform
from unicom.models.encoders import module_encoder
from unicom.models.inference import embed_images, encode_batch
from unicom.models.vit import build_vit

from . import real_images as ri


def embed(tiny_vit_encoder, items) -> np.ndarray:
    res = embed_images(tiny_vit_encoder, list(items), batch_size=8, normalize=True)
    assert not res.skipped
    return res.embeddings


def embed_old(tiny_vit_encoder, path) -> np.ndarray:
    """The embedding of ``path`` opened the old way, ``convert("RGB")``, without the policy."""
    with Image.open(path) as f:
        f.load()
        img = f.convert("RGB")
    e = encode_batch(tiny_vit_encoder, torch.stack([tiny_vit_encoder.transform(img)]), "fp32")[0]
    return e / np.linalg.norm(e)


def cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_rgba_and_its_white_composited_jpeg_embed_within_jpeg_noise(tiny_vit_encoder, tmp_path):
    rgba, _ = ri.cutout("stripes")
    png = ri.save(rgba, tmp_path / "cutout.png", "PNG")
    white = ri.composite_white(rgba)
    jpeg = ri.save(white, tmp_path / "cutout.jpg", "JPEG", quality=95)       # what img2dataset writes
    jpeg85 = ri.save(white, tmp_path / "cutout85.jpg", "JPEG", quality=85)
    e_png, e_jpeg, e_jpeg85 = embed(tiny_vit_encoder, [png, jpeg, jpeg85])
    noise = 1 - cos(e_jpeg, e_jpeg85)                     # JPEG noise: the same picture at two qualities
    assert 1 - cos(e_png, e_jpeg) <= max(noise, 1e-6)
    e_old = embed_old(tiny_vit_encoder, png)                  # the old opener: stripes behind the horse
    assert 1 - cos(e_old, e_jpeg) > 20 * max(noise, 1e-6)


def test_exif6_file_and_its_physically_rotated_twin_embed_the_same(tiny_vit_encoder, tmp_path):
    upright = ri.chelsea()
    tagged = ri.with_orientation(upright, tmp_path / "exif6.jpg", "JPEG")
    with Image.open(tagged) as stored:
        twin = ri.save(stored.convert("RGB").transpose(Image.Transpose.ROTATE_270), tmp_path / "twin.png", "PNG")
    e_tagged, e_twin = embed(tiny_vit_encoder, [tagged, twin])
    assert np.array_equal(e_tagged, e_twin)
    e_old = embed_old(tiny_vit_encoder, tagged)
    assert 1 - cos(e_old, e_twin) > 1e-3


def test_sixteen_bit_copy_embeds_as_its_8_bit_original(tiny_vit_encoder, tmp_path):
    from skimage import data

    camera = data.camera()
    p16 = ri.sixteen_bit(camera, tmp_path / "camera16.png")
    p8 = ri.save(Image.fromarray(camera), tmp_path / "camera8.png", "PNG")
    e16, e8 = embed(tiny_vit_encoder, [p16, p8])
    assert np.array_equal(e16, e8)
    assert 1 - cos(embed_old(tiny_vit_encoder, p16), e8) > 1e-3


def test_in_memory_images_get_the_policy_too(tiny_vit_encoder):
    rgba, _ = ri.cutout("stripes")
    e_mem, e_white = embed(tiny_vit_encoder, [rgba, Image.open(io.BytesIO(ri.encoded(ri.composite_white(rgba), "PNG")))])
    assert np.array_equal(e_mem, e_white)
