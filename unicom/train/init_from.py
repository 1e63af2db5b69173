"""Start training from a pretrained encoder (``model.init_from``, ``unicom-train --model X``).

``model.init_from`` may be

* a released name (``ViT-B/32``, ``ViT-B/16``, ``ViT-L/14``, ``ViT-L/14@336px``): the official
  file, fetched and checked by ``unicom.pretrained`` (as ``unicom.load`` does);
* an official ``.pt`` / ``.pth`` (read with ``weights_only=True``) or a ``.safetensors`` file;
* an ``export/`` directory, a training run, its ``checkpoints/`` or a ``step_N`` directory;
* for ``model.type: open_clip``: an open_clip weights file (then it is the tower's
  ``model.pretrained``), or an export of an open_clip tower.

The source's architecture is compared with the model the config builds before any weight is
copied: a different architecture or embedding size is an error naming both sides. A Unicom
ViT that differs only in its input size is resized (position embedding and head,
``unicom.pretrained.resize_vit_state``), the way ``unicom.load(image_size=…)`` does.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import torch
import torch.nn as nn

log = logging.getLogger(__name__)


def _source_label(source: str, kind: str) -> str:
    return f"model.init_from {source!r} ({kind})"


Loaded = Tuple[str, Dict[str, torch.Tensor], Optional[Dict[str, Any]]]  # (kind, state dict, arch record)


def read_source(source: str) -> Loaded:
    """Resolve ``source`` as ``unicom.load`` does; return (kind, cleaned state dict, the arch
    record of an export / checkpoint or None for a bare weights file)."""
    from ..pretrained.load import read_dir_record, resolve_source
    from ..pretrained.state_dict import check_finite_state, clean_state_dict, read_state_dict

    kind, path = resolve_source(source)
    record, weights = (None, path) if kind in ("official", "weights") else read_dir_record(kind, path)
    state = clean_state_dict(read_state_dict(weights))
    # unicom.load's check: NaN/Inf starting weights would train NaN steps and blame the LR
    check_finite_state(state, f"model.init_from {source!r} ({weights})")
    return kind, state, record


def _describe_vit(cfg) -> str:
    return (f"ViT {cfg.image_size}px, patch {cfg.patch_size}, width {cfg.width}, depth {cfg.depth}, "
            f"heads {cfg.heads}, embed {cfg.embed_dim}")


def source_vit_config(source: str, loaded: Optional[Loaded] = None):
    """The ``ViTConfig`` of the encoder at ``source`` (for ``model.name: null``: the
    architecture is taken from ``model.init_from``); ``loaded``: ``read_source(source)`` if
    the caller already has it."""
    from ..models.vit import ViTConfig
    from ..pretrained.arch import infer_vit_config

    kind, state, record = loaded if loaded is not None else read_source(source)
    if record is not None:
        arch = record.get("arch", {})
        if arch.get("type") != "unicom_vit":
            raise ValueError(f"{_source_label(source, kind)} is an encoder of type {arch.get('type')!r}, not a "
                             "Unicom ViT")
        return ViTConfig(**arch["config"])
    return infer_vit_config(state, source=source)


def init_unicom_vit(model: nn.Module, source: str, model_name: Any = None, loaded: Optional[Loaded] = None) -> None:
    """Copy the weights of ``source`` into the Unicom ViT ``model`` (see the module docstring);
    ``loaded``: ``read_source(source)`` if the caller already has it."""
    from ..models.vit import ViTConfig
    from ..pretrained.arch import infer_vit_config
    from ..pretrained.resize import resize_vit_state
    from ..pretrained.state_dict import load_into

    kind, state, record = loaded if loaded is not None else read_source(source)
    label = _source_label(source, kind)
    if record is not None:
        arch = record.get("arch", {})
        if arch.get("type") != "unicom_vit":
            raise ValueError(f"{label} is an encoder of type {arch.get('type')!r}, but model.type is unicom_vit "
                             f"(model.name {model_name!r}); set model.type to match")
        src_cfg = ViTConfig(**arch["config"])
    else:
        src_cfg = infer_vit_config(state, heads=model.config.heads, source=source)
    own = model.config
    same_but_size = ViTConfig(**{**src_cfg.to_dict(), "image_size": own.image_size})
    if same_but_size != own:
        raise ValueError(f"{label} holds a {_describe_vit(src_cfg)}, but the model to train (model.name "
                         f"{model_name!r}) is a {_describe_vit(own)}; set model.name (and model.embed_dim) to the "
                         "source's architecture, or pick a matching --model")
    if src_cfg.image_size != own.image_size:
        log.info("resizing %s from %d to %d px", source, src_cfg.image_size, own.image_size)
        state = resize_vit_state(state, src_cfg, own)
    own_state = model.state_dict()
    state = {k: v.to(own_state[k].dtype) if k in own_state and v.is_floating_point() else v for k, v in state.items()}
    load_into(model, state, str(source))
    log.info("initialised the backbone from %s", label)


def init_open_clip_tower(model: nn.Module, source: str, model_name: Any = None) -> None:
    """Copy the weights of an exported open_clip tower into ``model`` (same tower and head)."""
    from ..pretrained.state_dict import load_into

    kind, state, record = read_source(source)
    label = _source_label(source, kind)
    arch = (record or {}).get("arch", {})
    if arch.get("type") != "open_clip_tower":
        raise ValueError(f"{label} is not an exported open_clip tower; for model.type open_clip, model.init_from is "
                         "such an export or an open_clip weights file")
    mine = model.export_arch() if hasattr(model, "export_arch") else {}
    theirs = {k: v for k, v in arch.items() if k != "type"}
    differ = sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))
    if differ:
        raise ValueError(f"{label} is a tower {theirs}, but the model to train (model.name {model_name!r}) is {mine}; "
                         f"they differ in {', '.join(differ)}")
    load_into(model, state, str(source))


def is_open_clip_weights(source: str) -> bool:
    """True when ``source`` is a plain weights file rather than an encoder directory."""
    from ..formats.checkpoint import BACKBONE_FILE
    from ..formats.export import MODEL_FILE

    p = Path(source).expanduser()
    return p.is_file() and p.name not in (MODEL_FILE, BACKBONE_FILE)
