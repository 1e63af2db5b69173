"""Infer a Unicom ViT's architecture from the shapes of its state dict.

Everything but the number of attention heads is fixed by the shapes:
  patch size, width, input channels   ``patch_embed.proj.weight``  [width, C, p, p]
  image size                          ``pos_embed``  [1, grid², width] → grid · p
  depth                               the ``blocks.{i}.`` indices (0 … depth-1)
  MLP ratio                           ``blocks.0.mlp.fc1.weight``  [hidden, width]
  embed dim                           ``feature.3.weight`` (the last BatchNorm)
The heads come from the released (or small built-in) configuration with the same patch,
width, depth, MLP ratio and embed dim; failing that, from ``heads=`` if given, else one head
per 64 channels (the ViT convention), with a warning.
"""
from __future__ import annotations

import math
import re
import warnings
from typing import Dict, Optional

import torch

from ..models.vit import OFFICIAL_CONFIGS, SMALL_CONFIGS, ViTConfig

_BLOCK = re.compile(r"^blocks\.(\d+)\.")
REQUIRED = ("patch_embed.proj.weight", "pos_embed", "blocks.0.mlp.fc1.weight", "feature.0.weight", "feature.3.weight")


def infer_vit_config(state: Dict[str, torch.Tensor], heads: Optional[int] = None,
                     source: str = "checkpoint") -> ViTConfig:
    """Return the ``ViTConfig`` whose ``UnicomViT`` has the keys and shapes of ``state``."""
    absent = [k for k in REQUIRED if k not in state]
    if absent:
        raise ValueError(f"{source} does not look like a Unicom ViT state dict: it lacks {', '.join(absent)} "
                         f"(its first keys: {', '.join(list(state)[:5])})")
    pw = state["patch_embed.proj.weight"]
    if pw.ndim != 4 or pw.shape[2] != pw.shape[3]:
        raise ValueError(f"{source}: patch_embed.proj.weight has shape {list(pw.shape)}; expected [width, C, p, p]")
    width, in_ch, patch = int(pw.shape[0]), int(pw.shape[1]), int(pw.shape[2])
    pos = state["pos_embed"]
    if pos.ndim != 3 or pos.shape[0] != 1 or pos.shape[2] != width:
        raise ValueError(f"{source}: pos_embed has shape {list(pos.shape)}; expected [1, num_patches, {width}]")
    num_patches = int(pos.shape[1])
    grid = math.isqrt(num_patches)
    if grid * grid != num_patches:
        raise ValueError(f"{source}: pos_embed has {num_patches} positions, which is not a square grid")
    indices = sorted({int(m.group(1)) for k in state for m in [_BLOCK.match(k)] if m})
    depth = len(indices)
    if indices != list(range(depth)):
        raise ValueError(f"{source}: block indices are not 0..{depth - 1}: {indices[:10]}")
    hidden = int(state["blocks.0.mlp.fc1.weight"].shape[0])
    embed_dim = int(state["feature.3.weight"].shape[0])
    shape_of = dict(image_size=grid * patch, patch_size=patch, width=width, depth=depth,
                    embed_dim=embed_dim, mlp_ratio=hidden / width, in_channels=in_ch)
    return ViTConfig(heads=_heads(shape_of, heads, source), **shape_of)


def _heads(shape_of: dict, heads: Optional[int], source: str) -> int:
    if heads is not None:
        if shape_of["width"] % heads:
            raise ValueError(f"heads={heads} does not divide the width {shape_of['width']}")
        return int(heads)
    fields = ("patch_size", "width", "depth", "embed_dim", "mlp_ratio", "in_channels")
    for cfg in list(OFFICIAL_CONFIGS.values()) + list(SMALL_CONFIGS.values()):
        if all(getattr(cfg, f) == shape_of[f] for f in fields):
            return cfg.heads
    guess = max(1, shape_of["width"] // 64)
    while shape_of["width"] % guess:
        guess -= 1
    warnings.warn(f"{source}: the number of attention heads cannot be read from the weights and the shapes match "
                  f"no known configuration; assuming {guess} (width {shape_of['width']} / 64). Pass heads=N to "
                  "unicom.load if that is wrong: the outputs would be wrong without any error", stacklevel=2)
    return guess
