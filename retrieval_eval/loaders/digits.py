"""``digits``: scikit-learn's bundled handwritten digits (1,797 8×8 images, 10 classes),
upscaled to RGB images; every image a query against all the others. Offline (the data ships
with scikit-learn); ``--data-root`` is not used."""
from __future__ import annotations

import numpy as np

from unicom.datasets.registry import DATASETS

from .base import LABELLED, Benchmark, ImageSet

NAME = "digits"
SOURCE = "scikit-learn's load_digits() (bundled with scikit-learn, nothing to download)"
IMAGE_SIZE = 32


def load(data_root=None, image_size: int = IMAGE_SIZE, **_) -> Benchmark:
    from PIL import Image
    from sklearn.datasets import load_digits

    d = load_digits()
    pixels = np.clip(d.images * (255.0 / 16.0), 0, 255).astype(np.uint8)
    items = [Image.fromarray(255 - p).resize((image_size, image_size), Image.BILINEAR).convert("RGB")
             for p in pixels]
    keys = [f"digits/{i:04d}" for i in range(len(items))]
    return Benchmark(NAME, LABELLED, ImageSet(items, labels=d.target, keys=keys), ks=DATASETS[NAME].ks, source=SOURCE,
                     info={"image_size": image_size})
