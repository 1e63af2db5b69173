"""Fixtures of the unicom-export tests: a random encoder of the demo's architecture and its
ONNX export, made once per test session."""
from __future__ import annotations

import pytest
import torch

# the architecture of configs/demo.yaml (64 px, 16-px patches, width 192, 4 blocks, 3 heads, 128-d)
DEMO_VIT = {"image_size": 64, "patch_size": 16, "width": 192, "depth": 4, "heads": 3, "embed_dim": 128}


def save_random_vit(directory, config: dict, seed: int = 0):
    """A randomly initialised ``UnicomViT`` of ``config`` written as an ``export/`` folder."""
    from unicom.data.transforms import CLIP_MEAN, CLIP_STD
    from unicom.formats.export import save_export
    from unicom.models.vit import UnicomViT, ViTConfig

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = UnicomViT(ViTConfig(**config))
    save_export(model, directory, config["image_size"], CLIP_MEAN, CLIP_STD, config["embed_dim"])
    return directory


@pytest.fixture(scope="session")
def demo_encoder(tmp_path_factory):
    """A random encoder of the demo's architecture, as an ``export/`` folder."""
    return save_random_vit(tmp_path_factory.mktemp("demo_vit") / "export", DEMO_VIT)


@pytest.fixture(scope="session")
def demo_onnx(tmp_path_factory, demo_encoder):
    """``demo_encoder`` exported to ONNX (default settings): the ``ExportResult``."""
    from unicom.deploy.export import export_model

    return export_model(demo_encoder, tmp_path_factory.mktemp("demo_onnx") / "onnx", "onnx", progress=False)
