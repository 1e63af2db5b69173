"""Fixtures shared by the unicom-embed tests."""
from __future__ import annotations

import pytest
import torch

from unicom.data.transforms import CLIP_MEAN, CLIP_STD
from unicom.formats.export import save_export
from unicom.models.vit import build_vit


@pytest.fixture(scope="module")
def encoder(tmp_path_factory):
    """A random ViT-Tiny/8@32 export (seed 0), once per test module."""
    torch.manual_seed(0)
    d = tmp_path_factory.mktemp("enc") / "export"
    save_export(build_vit("ViT-Tiny/8@32").eval(), d, 32, CLIP_MEAN, CLIP_STD, 32)
    return d
