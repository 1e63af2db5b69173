"""Fixtures shared by the tests of several ``unicom`` subpackages (the trainer and the model towers)."""
from __future__ import annotations

import pytest

from tests.unicom.train.support import write_concept_labels


@pytest.fixture(scope="session")
def toy_labels(sample_set, tmp_path_factory):
    """(shards dir, labels dir) for the sample set with ground-truth labels."""
    root, _ = sample_set
    out = tmp_path_factory.mktemp("toy_cluster")
    return root / "shards", write_concept_labels(root / "shards", out)


@pytest.fixture(scope="module")
def tiny_vit_encoder():
    """A ``LoadedEncoder`` of a random ViT-Tiny/8@32 (seed 0) on the CPU, with the eval transform."""
    import torch

    from unicom.data.transforms import eval_transform
    from unicom.models.encoders import module_encoder
    from unicom.models.vit import build_vit

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = build_vit("ViT-Tiny/8@32")
    return module_encoder(model, eval_transform(32), device="cpu")
