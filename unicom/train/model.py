"""Build the backbone the config asks for, and describe it for exports and checkpoints."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Tuple

import torch.nn as nn

from ..transforms import CLIP_MEAN, CLIP_STD
from .config import Config

log = logging.getLogger(__name__)


def build_backbone(cfg: Config) -> nn.Module:
    """The Unicom ViT (``model.type: unicom_vit``) or an open_clip tower (``open_clip``)."""
    m = cfg.model
    if m.type == "unicom_vit":
        from ..models.vit import build_vit

        overrides = {"embed_dim": m.embed_dim} if m.embed_dim else {}
        model = build_vit(m.name, drop_path_rate=m.drop_path, grad_checkpointing=m.grad_checkpointing, **overrides)
        if m.init_from:
            load_initial_weights(model, m.init_from)
        return model
    if m.type == "open_clip":
        from ..models.open_clip_tower import build_open_clip_tower

        if m.pretrained is None:
            raise ValueError("model.pretrained must name a local open_clip weights file, or 'none' for a random "
                             "tower (this toolkit never downloads weights)")
        return build_open_clip_tower(str(m.name), m.embed_dim, pretrained=str(m.pretrained), head=m.head,
                                     grad_checkpointing=m.grad_checkpointing)
    raise ValueError(f"unknown model.type {m.type!r}; use unicom_vit or open_clip")


def load_initial_weights(model: nn.Module, source: str) -> None:
    """Initialise from an export dir, a checkpoint step dir, or a state-dict file
    (``.safetensors``, or ``.pt``/``.pth`` read with ``weights_only=True``)."""
    from safetensors.torch import load_file

    from ..formats.checkpoint import BACKBONE_FILE, load_tensors_pt
    from ..formats.export import MODEL_FILE

    path = Path(source)
    if path.is_dir():
        for name in (MODEL_FILE, BACKBONE_FILE):
            if (path / name).is_file():
                state = load_file(str(path / name))
                break
        else:
            raise FileNotFoundError(f"{path} holds neither {MODEL_FILE} (an export) nor {BACKBONE_FILE} "
                                    "(a checkpoint step)")
    elif path.suffix == ".safetensors":
        state = load_file(str(path))
    elif path.is_file():
        state = load_tensors_pt(path, map_location="cpu")
        if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
            state = state["state_dict"]
    else:
        raise FileNotFoundError(f"model.init_from: {path} not found")
    state = {k[len("module."):] if k.startswith("module.") else k: v for k, v in state.items()}
    own = model.state_dict()
    state = {k: v.to(own[k].dtype) if k in own and v.is_floating_point() else v for k, v in state.items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected or missing:
        raise ValueError(f"model.init_from {path}: weights do not fit the model (missing {list(missing)[:4]}, "
                         f"unexpected {list(unexpected)[:4]})")
    log.info("initialised the backbone from %s", path)


def model_image_size(model: nn.Module) -> int:
    return int(getattr(model, "image_size"))


def model_embed_dim(model: nn.Module) -> int:
    return int(getattr(model, "embed_dim"))


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
