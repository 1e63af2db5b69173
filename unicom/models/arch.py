"""Build an untrained encoder from the ``arch`` record of an export's ``config.json``.

The record is written by ``unicom.formats.export`` (each model's ``arch_record()``); building
lives here, with the models, so that the format module imports no model code.
"""
from __future__ import annotations

from typing import Any, Dict

import torch.nn as nn


def build_from_arch(arch: Dict[str, Any]) -> nn.Module:
    """Build an untrained encoder from an ``arch`` record of an export's config.json."""
    kind = arch.get("type")
    if kind == "unicom_vit":
        from .vit import UnicomViT, ViTConfig

        return UnicomViT(ViTConfig(**arch["config"]))
    if kind == "open_clip_tower":
        from .open_clip_tower import build_open_clip_tower

        kwargs = {k: v for k, v in arch.items() if k != "type"}
        return build_open_clip_tower(**kwargs, pretrained=None)
    raise ValueError(f"unknown encoder arch type {kind!r} in export config; expected 'unicom_vit' or 'open_clip_tower'")
