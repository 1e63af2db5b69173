"""Fuse a sample's image and caption embeddings into one unit vector.

``fused = normalise(w_img · normalise(img) + w_txt · normalise(txt))``: each modality is put on
the unit sphere first, so the weights (equal by default) say how much each one counts whatever
the towers' output scales are. A weight of 0 drops a modality (image-only, text-only).
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch
import torch.nn.functional as F

from .config import MODALITIES


def modality_weights(modality: str, image_weight: float = 1.0, text_weight: float = 1.0) -> Tuple[float, float]:
    """The (image, text) weights for ``modality``: ``both`` keeps the given ones, ``image``/``text``
    zero the other modality. Raises ValueError for a negative weight or nothing left to fuse."""
    if modality not in MODALITIES:
        raise ValueError(f"unknown modality {modality!r}; use one of {', '.join(MODALITIES)}")
    if image_weight < 0 or text_weight < 0:
        raise ValueError(f"fusion weights must be >= 0, got image {image_weight}, text {text_weight}")
    wi = image_weight if modality in ("both", "image") else 0.0
    wt = text_weight if modality in ("both", "text") else 0.0
    if wi == 0 and wt == 0:
        raise ValueError(f"modality {modality!r} with image weight {image_weight} and text weight "
                         f"{text_weight} leaves nothing to embed")
    return float(wi), float(wt)


def fuse(image: Optional[torch.Tensor], text: Optional[torch.Tensor], image_weight: float = 1.0,
         text_weight: float = 1.0) -> torch.Tensor:
    """Return L2-normalised fused features [n, D] in float32.

    ``image``/``text`` are [n, D] embeddings (either may be None when its weight is 0)."""
    parts = []
    if image_weight > 0:
        if image is None:
            raise ValueError("image weight > 0 but no image embeddings were given")
        parts.append(image_weight * F.normalize(image.float(), dim=-1))
    if text_weight > 0:
        if text is None:
            raise ValueError("text weight > 0 but no text embeddings were given")
        parts.append(text_weight * F.normalize(text.float(), dim=-1))
    if not parts:
        raise ValueError("both fusion weights are 0: nothing to fuse")
    if len(parts) == 2 and parts[0].shape != parts[1].shape:
        raise ValueError(f"image and text embeddings differ in shape: {tuple(parts[0].shape)} vs "
                         f"{tuple(parts[1].shape)}")
    return F.normalize(sum(parts), dim=-1)
