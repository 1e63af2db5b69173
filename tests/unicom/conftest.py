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
