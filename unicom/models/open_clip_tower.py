"""An open_clip visual tower with an embedding head, so that a CLIP image encoder can be
fine-tuned into a Unicom-style encoder.

``build_open_clip_tower(model_name, embed_dim, pretrained)`` creates the open_clip model with
``unicom.models.clip_loader.create_clip``, keeping ``model.visual``. Local weights files only.
``pretrained="none"`` (or None, as ``unicom.models.arch.build_from_arch`` passes when it is about to
load trained weights) gives a random tower. The text tower is dropped. The head turns the tower's
output (CLIP's projected embedding, ``visual.output_dim`` wide) into the Unicom embedding:

* ``head="linear_bn"`` (default): Linear(output_dim → embed_dim, no bias) → BatchNorm1d(eps=2e-5),
  like the last two layers of Unicom's ``feature`` head;
* ``head="bn"``: BatchNorm1d(output_dim) on CLIP's projection (``embed_dim`` must equal it).

The output is not normalised, as with the Unicom ViT. ``export_arch()`` returns the kwargs that
rebuild the module (see ``unicom.models.arch``). State-dict keys are ``visual.*`` and ``head.*``.
"""
from __future__ import annotations

import logging
from typing import Any, Dict, Optional, Tuple

import torch
import torch.nn as nn

from ..data.transforms import CLIP_MEAN, CLIP_STD

HEADS = ("linear_bn", "bn")


class OpenCLIPTower(nn.Module):
    """open_clip ``visual`` module + embedding head: images [B, 3, S, S] → [B, embed_dim]."""

    def __init__(self, visual: nn.Module, model_name: str, embed_dim: Optional[int] = None, head: str = "linear_bn"):
        super().__init__()
        if head not in HEADS:
            raise ValueError(f"unknown open_clip tower head {head!r}; use one of {', '.join(HEADS)}")
        self.visual = visual
        self.model_name = model_name
        self.head_type = head
        out_dim = _output_dim(visual)
        embed_dim = int(embed_dim or out_dim)
        if head == "bn":
            if embed_dim != out_dim:
                raise ValueError(f"head='bn' keeps CLIP's projection ({out_dim} dims) but embed_dim={embed_dim}; "
                                 "use head='linear_bn' to change the dimension")
            self.head = nn.Sequential(nn.BatchNorm1d(out_dim, eps=2e-5))
        else:
            linear = nn.Linear(out_dim, embed_dim, bias=False)
            nn.init.trunc_normal_(linear.weight, std=out_dim ** -0.5)
            self.head = nn.Sequential(linear, nn.BatchNorm1d(embed_dim, eps=2e-5))
        self._embed_dim = embed_dim
        cfg = getattr(visual, "preprocess_cfg", None) or {}
        self.mean: Tuple[float, ...] = tuple(cfg.get("mean", CLIP_MEAN))
        self.std: Tuple[float, ...] = tuple(cfg.get("std", CLIP_STD))

    @property
    def embed_dim(self) -> int:
        return self._embed_dim

    @property
    def image_size(self) -> int:
        size = getattr(self.visual, "image_size", 224)
        return int(size[0] if isinstance(size, (tuple, list)) else size)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        if hasattr(self.visual, "set_grad_checkpointing"):
            self.visual.set_grad_checkpointing(enable)

    def export_arch(self) -> Dict[str, Any]:
        """Keyword arguments of ``build_open_clip_tower`` that rebuild this module."""
        return {"model_name": self.model_name, "embed_dim": self.embed_dim, "head": self.head_type}

    def arch_record(self) -> Dict[str, Any]:
        """The ``arch`` record of an export's config.json (``unicom.models.arch.build_from_arch``)."""
        return {"type": "open_clip_tower", **self.export_arch()}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = self.visual(x)
        if isinstance(feats, (tuple, list)):  # towers that also return tokens
            feats = feats[0]
        return self.head(feats.float())


def _output_dim(visual: nn.Module) -> int:
    dim = getattr(visual, "output_dim", None)
    if dim is None:
        raise ValueError(f"cannot tell the output dimension of the open_clip tower {type(visual).__name__}")
    return int(dim)


def build_open_clip_tower(model_name: str, embed_dim: Optional[int] = None, pretrained: Optional[str] = None,
                          head: str = "linear_bn", grad_checkpointing: bool = False) -> OpenCLIPTower:
    """Build an open_clip visual tower (local weights file, or ``"none"``/None for random init)
    with an embedding head of ``embed_dim`` (default: CLIP's projection width)."""
    from .clip_loader import create_clip

    random_init = pretrained is None or str(pretrained).strip().lower() in ("", "none")
    logger = logging.getLogger("unicom.models.clip_loader")
    level = logger.level
    if pretrained is None:  # weights follow from an export: the random-init warning would mislead
        logger.setLevel(logging.ERROR)
    try:
        model, _, _ = create_clip(model_name, "none" if random_init else pretrained, device="cpu")
    finally:
        logger.setLevel(level)
    visual = model.visual
    del model
    tower = OpenCLIPTower(visual, model_name, embed_dim, head)
    if grad_checkpointing:
        tower.set_grad_checkpointing(True)
    return tower.train()
