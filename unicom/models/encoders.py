"""Every kind of image encoder as one type, ``unicom.pretrained.load.LoadedEncoder``: what
``unicom.load`` builds, what ``unicom-embed`` stores and what ``unicom-eval`` runs.

* ``load_encoder(name_or_path)`` (``unicom.pretrained``): official names, ``.pt`` /
  ``.safetensors`` files, ``export/`` folders, training checkpoints.
* ``open_clip_encoder(name, pretrained)``: an open_clip model, embedded with ``encode_image``.
* ``module_encoder(model, transform)``: any ``nn.Module`` with its eval transform.
* ``as_encoder(obj)``: any of the above from a name/path, a ``(model, transform)`` pair or an
  encoder.
"""
from __future__ import annotations

from typing import Any, Callable, Optional, Union

import torch
import torch.nn as nn

from ..pretrained.load import LoadedEncoder, load_encoder
from ..runtime.device import resolve_device

DeviceLike = Union[str, torch.device, None]


def _image_size(size: Any) -> Optional[int]:
    if isinstance(size, (tuple, list)):
        return int(size[0]) if size else None
    return None if size is None else int(size)


def open_clip_encoder(model_name: str, pretrained: Optional[str], device: DeviceLike = "auto") -> LoadedEncoder:
    """An open_clip image tower (``unicom.models.clip_loader.create_clip``), in eval mode on ``device``."""
    from .clip_loader import create_clip

    dev = resolve_device(device)
    model, preprocess, _ = create_clip(model_name, pretrained, dev)
    visual = model.visual
    return LoadedEncoder(model=model.eval(), transform=preprocess, image_size=_image_size(visual.image_size),
                         mean=tuple(getattr(visual, "image_mean", None) or ()),
                         std=tuple(getattr(visual, "image_std", None) or ()),
                         embed_dim=int(visual.output_dim), kind="open_clip", source=f"open_clip:{model_name}",
                         weights=str(pretrained), extra={"model": model_name, "pretrained": str(pretrained)},
                         encode=model.encode_image)


def module_encoder(model: nn.Module, transform: Callable, device: DeviceLike = "auto",
                   name: Optional[str] = None) -> LoadedEncoder:
    """Any module mapping transformed images [B, 3, S, S] to [B, D], moved to ``device`` in eval mode.
    ``embed_dim`` is the model's ``embed_dim`` attribute when it has one (else 0: unknown)."""
    dev = resolve_device(device)
    model = model.to(dev).eval()
    return LoadedEncoder(model=model, transform=transform, image_size=getattr(model, "image_size", None),
                         mean=(), std=(), embed_dim=int(getattr(model, "embed_dim", 0) or 0), kind="module",
                         source=name or type(model).__name__, weights="(in memory)")


def as_encoder(obj: Any, device: DeviceLike = "auto") -> LoadedEncoder:
    """A ``LoadedEncoder`` from an encoder, a ``unicom.load`` name or path, or a ``(model, transform)`` pair."""
    if isinstance(obj, LoadedEncoder):
        return obj
    if isinstance(obj, str) or hasattr(obj, "__fspath__"):
        return load_encoder(obj, device=resolve_device(device))
    if isinstance(obj, (tuple, list)) and len(obj) == 2 and isinstance(obj[0], nn.Module):
        return module_encoder(obj[0], obj[1], device)
    raise TypeError(f"cannot use {type(obj).__name__} as an encoder: pass a unicom.load name or path, "
                    "a (model, transform) pair or a unicom LoadedEncoder")


def parameter_count(encoder: LoadedEncoder) -> int:
    """Number of parameters of the encoder's model."""
    return int(sum(p.numel() for p in encoder.model.parameters()))
