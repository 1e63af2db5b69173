"""The training transform, chosen by ``data.transform``; every kind maps ``(PIL image, numpy
Generator) -> tensor [3, S, S]`` and draws its randomness from that generator, so a sample's
augmentation is a function of its position in the data order (exact resume).

* ``crop_flip`` (default): random resized crop + horizontal flip (``data.SeededAugment``).
* ``origin_clip``: CLIP's own preprocessing (bicubic resize of the short side, centre crop,
  normalise), no random augmentation; the official fine-tuning recipes for SOP use it
  (``retrieval.py --transform origin_clip``).
* ``timm``: ``timm.data.create_transform(is_training=True)`` with RandAugment
  ``data.auto_augment`` (``rand-m9-mstd0.5-inc1``), colour jitter ``data.color_jitter`` (0.4;
  timm ignores it when RandAugment is on) and random erasing ``data.re_prob`` (0.25): the
  official recipes for In-Shop and iNaturalist (``--transform timm``). timm draws from Python's
  ``random``, numpy's and torch's global generators; they are seeded from the sample's
  generator for the call and restored afterwards, so the caller's random state is untouched.
"""
from __future__ import annotations

import random
from typing import Callable, Sequence

import numpy as np
import torch
from PIL import Image

from ..data.transforms import to_rgb
from .config import TRANSFORMS

Augment = Callable[[Image.Image, np.random.Generator], torch.Tensor]


class Deterministic:
    """A fixed transform (no randomness) under the ``(image, rng)`` signature."""

    def __init__(self, transform: Callable[[Image.Image], torch.Tensor]):
        self.transform = transform

    def __call__(self, image: Image.Image, rng: np.random.Generator) -> torch.Tensor:
        return self.transform(image)


class SeededGlobal:
    """Run a transform that uses the global RNGs (Python, numpy, torch) with all three seeded
    from ``rng`` for the call, then put the caller's states back."""

    def __init__(self, transform: Callable[[Image.Image], torch.Tensor]):
        self.transform = transform

    def __call__(self, image: Image.Image, rng: np.random.Generator) -> torch.Tensor:
        seed = int(rng.integers(0, 2 ** 31 - 1))
        py_state, np_state = random.getstate(), np.random.get_state()
        with torch.random.fork_rng(devices=[]):
            random.seed(seed)
            np.random.seed(seed)
            torch.manual_seed(seed)
            try:
                return self.transform(to_rgb(image))  # a no-op on the readers' RGB images
            finally:
                random.setstate(py_state)
                np.random.set_state(np_state)


def _posterize_any_bits(img: Image.Image, bits: int, **_) -> Image.Image:
    """timm's posterize, accepting 0 bits (a black image) as Pillow < 11 did."""
    from PIL import ImageOps

    if bits >= 8:
        return img
    if bits <= 0:
        return Image.new(img.mode, img.size)
    return ImageOps.posterize(img, bits)


def _guard_posterize(transform) -> None:
    """timm's ``PosterizeIncreasing`` reaches 0 bits at magnitude 10 (``mstd0.5`` draws above 9
    often), which Pillow ≥ 11 rejects with a ValueError. Swap in the old behaviour (keep 0 bits
    = black) rather than clamp the policy's magnitude."""
    for t in getattr(transform, "transforms", []):
        for op in getattr(t, "ops", []):
            if "Posterize" in getattr(op, "name", ""):
                op.aug_fn = _posterize_any_bits


def build_augment(data_cfg, image_size: int, mean: Sequence[float], std: Sequence[float]) -> Augment:
    """The training transform that ``data_cfg.transform`` names, at ``image_size`` px."""
    kind = data_cfg.transform
    if kind == "crop_flip":
        from .data import SeededAugment

        return SeededAugment(image_size, mean, std, data_cfg.crop_scale, data_cfg.crop_ratio, data_cfg.hflip)
    if kind == "origin_clip":
        from ..data.transforms import eval_transform

        return Deterministic(eval_transform(image_size, mean, std))
    if kind == "timm":
        from timm.data import create_transform

        tf = create_transform(input_size=image_size, is_training=True, scale=tuple(data_cfg.crop_scale),
                              ratio=tuple(data_cfg.crop_ratio), hflip=float(data_cfg.hflip),
                              color_jitter=float(data_cfg.color_jitter), auto_augment=data_cfg.auto_augment,
                              interpolation="bicubic", re_prob=float(data_cfg.re_prob), re_mode="pixel",
                              re_count=1, mean=tuple(mean), std=tuple(std))
        _guard_posterize(tf)
        return SeededGlobal(tf)
    raise ValueError(f"data.transform must be one of {', '.join(TRANSFORMS)}, got {kind!r}")
