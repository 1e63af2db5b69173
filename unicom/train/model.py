"""Build the backbone the config asks for, and describe it for exports and checkpoints."""
from __future__ import annotations

import logging
from typing import Tuple

import torch.nn as nn

from ..data.transforms import CLIP_MEAN, CLIP_STD
from .config import Config

log = logging.getLogger(__name__)


def build_backbone(cfg: Config) -> nn.Module:
    """The Unicom ViT (``model.type: unicom_vit``) or an open_clip tower (``open_clip``)."""
    m = cfg.model
    if m.type == "unicom_vit":
        from ..models.vit import build_vit

        overrides = {"embed_dim": m.embed_dim} if m.embed_dim else {}
        name, loaded = m.name, None
        if name in (None, "auto"):  # the architecture of the encoder to start from
            if not m.init_from:
                raise ValueError("model.name is null: give model.init_from (--model) to take the architecture from")
            from .init_from import read_source, source_vit_config

            loaded = read_source(m.init_from)  # read once: its architecture here, its weights below
            name = source_vit_config(m.init_from, loaded)
        model = build_vit(name, drop_path_rate=m.drop_path, grad_checkpointing=m.grad_checkpointing,
                          **overrides)
        if m.init_from:
            from .init_from import init_unicom_vit

            init_unicom_vit(model, m.init_from, m.name, loaded)
        return model
    if m.type == "open_clip":
        from ..models.open_clip_tower import build_open_clip_tower
        from .init_from import init_open_clip_tower, is_open_clip_weights

        pretrained = m.pretrained
        if m.init_from and is_open_clip_weights(m.init_from):
            pretrained = m.init_from  # an open_clip weights file: the tower's own pretrained weights
        if pretrained is None:
            raise ValueError("model.pretrained must name a local open_clip weights file, or 'none' for a random "
                             "tower (this toolkit never downloads weights)")
        tower = build_open_clip_tower(str(m.name), m.embed_dim, pretrained=str(pretrained), head=m.head,
                                      grad_checkpointing=m.grad_checkpointing)
        if m.init_from and not is_open_clip_weights(m.init_from):
            init_open_clip_tower(tower, m.init_from, m.name)
        return tower
    raise ValueError(f"unknown model.type {m.type!r}; use unicom_vit or open_clip")


def model_image_size(model: nn.Module) -> int:
    return int(model.image_size)


def model_embed_dim(model: nn.Module) -> int:
    return int(model.embed_dim)


def model_norm(model: nn.Module) -> Tuple[Tuple[float, ...], Tuple[float, ...]]:
    """The input normalisation the encoder expects (CLIP's unless the tower says otherwise)."""
    return tuple(getattr(model, "mean", CLIP_MEAN)), tuple(getattr(model, "std", CLIP_STD))


def unwrap(model: nn.Module) -> nn.Module:
    """The plain module inside DDP (or ``torch.compile``)."""
    while True:
        inner = getattr(model, "module", None) or getattr(model, "_orig_mod", None)
        if inner is None or not isinstance(inner, nn.Module):
            return model
        model = inner
