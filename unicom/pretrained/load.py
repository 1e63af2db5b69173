"""``unicom.load(name_or_path)`` → ``(model, transform)``, the model in eval mode.

What ``name_or_path`` may be (first match wins):

1. a released name (``unicom.available_models()``): the official file is fetched into the
   cache (``$UNICOM_CACHE`` or ``~/.cache/unicom``) and its SHA-256 checked;
2. a weights file: ``.pt``/``.pth``/``.bin`` (read with ``weights_only=True``) or
   ``.safetensors``. The ViT's architecture is inferred from the shapes (``arch.py``); a file
   lying in an export or checkpoint directory is loaded with that directory's config instead;
3. an ``export/`` directory (``config.json`` + ``model.safetensors``, ``unicom.formats.export``);
4. a training checkpoint: a step directory (``encoder.json`` + ``backbone.safetensors``),
   the ``checkpoints/`` directory or the run directory; both follow ``checkpoints/latest``
   (``unicom.formats.checkpoint`` owns that layout);
5. a ``unicom-export`` folder (``deploy.json`` + an ONNX or TorchScript graph,
   ``unicom.formats.deploy``): ``load_encoder`` runs the graph (ONNX through onnxruntime).

``image_size`` other than the trained one resizes the position embedding and the head
(``resize.py``); the transform then uses the new size.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Tuple, Union

import torch
import torch.nn as nn

from ..data.transforms import CLIP_MEAN, CLIP_STD, eval_transform
from ..formats import checkpoint as layout
from ..formats.deploy import is_deploy_dir
from ..formats.export import CONFIG_FILE, MODEL_FILE, read_encoder_record, read_export_config
from ..models.arch import build_from_arch
from ..models.vit import UnicomViT, ViTConfig
from ..runtime.device import module_device, resolve_device
from .arch import infer_vit_config
from .download import download_pretrained
from .registry import available_models, get_spec, is_known_name
from .resize import resize_vit_state
from .state_dict import (
    StateDictMismatchError,
    check_finite_state,
    clean_state_dict,
    describe_mismatch,
    load_into,
    read_state_dict,
)

WEIGHT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors")

PathOrName = Union[str, "os.PathLike[str]"]


@dataclass
class LoadedEncoder:
    """A loaded encoder and what it needs: ``transform`` is the eval transform."""

    model: nn.Module
    transform: Callable
    image_size: int
    mean: Tuple[float, ...]
    std: Tuple[float, ...]
    embed_dim: int
    kind: str            # "official", "weights", "export" or "checkpoint"
    source: str          # the name or path given
    weights: str         # the file the weights came from
    extra: Dict[str, Any] = field(default_factory=dict)
    # How images become embeddings when it is not ``model(x)`` (open_clip: ``encode_image``).
    encode: Optional[Callable[[torch.Tensor], torch.Tensor]] = None

    @property
    def device(self) -> torch.device:
        """The device of the model's parameters (the CPU for a parameterless model)."""
        return module_device(self.model)

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """Transformed images [B, 3, S, S] → unnormalised embeddings [B, embed_dim]."""
        return (self.encode or self.model)(images)

    def describe(self) -> Dict[str, Any]:
        """A JSON-able record (for meta.json files)."""
        heads = getattr(getattr(self.model, "config", None), "heads", None)
        return {"model": self.source, "kind": self.kind, "weights": self.weights, "image_size": self.image_size,
                "embed_dim": self.embed_dim, "mean": list(self.mean), "std": list(self.std), "heads": heads}


def load(name_or_path: PathOrName, device: Optional[Union[str, torch.device]] = None,
         image_size: Optional[int] = None, *, heads: Optional[int] = None,
         download_root: Optional[PathOrName] = None, progress: bool = True) -> Tuple[nn.Module, Callable]:
    """Load an encoder: returns ``(model, transform)`` with the model in eval mode on ``device``
    (default: CUDA when available, else the CPU). The model maps normalised images
    [B, 3, S, S] to unnormalised embeddings [B, embed_dim].

    ``image_size`` changes the input resolution (the weights are interpolated); ``heads``
    overrides the number of attention heads of a ``.pt`` file whose shapes match no known
    configuration; ``download_root`` overrides the cache directory.
    """
    enc = load_encoder(name_or_path, device, image_size, heads=heads, download_root=download_root, progress=progress)
    return enc.model, enc.transform


def load_encoder(name_or_path: PathOrName, device: Optional[Union[str, torch.device]] = None,
                 image_size: Optional[int] = None, *, heads: Optional[int] = None,
                 download_root: Optional[PathOrName] = None, progress: bool = True) -> LoadedEncoder:
    """Like ``load`` but returns a ``LoadedEncoder`` carrying the image size, mean/std and
    provenance too."""
    source = os.fspath(name_or_path)
    kind, path = resolve_source(source, download_root=download_root, progress=progress)
    if kind == "deployed":  # an ONNX / TorchScript export: the same interface, backed by its runtime
        from ..deploy.runtime import deployed_encoder_fields

        return LoadedEncoder(source=source, **deployed_encoder_fields(path, device, image_size))
    if kind in ("official", "weights"):
        state = clean_state_dict(read_state_dict(path))
        cfg = infer_vit_config(state, heads=heads, source=str(path))
        if kind == "official":
            _check_official(source, cfg)
        record: Dict[str, Any] = {"arch": {"type": "unicom_vit", "config": cfg.to_dict()}, "embed_dim": cfg.embed_dim,
                  "image_size": cfg.image_size, "mean": list(CLIP_MEAN), "std": list(CLIP_STD), "extra": {}}
        weights = path
    else:
        record, weights = read_dir_record(kind, path)
        state = clean_state_dict(read_state_dict(weights))
    check_finite_state(state, str(weights))  # a diverged run's weights would embed everything as NaN
    model, size = _build_and_fill(record, state, image_size, str(weights))
    dev = resolve_device(device)
    model = model.to(dev).eval()
    mean, std = tuple(record["mean"]), tuple(record["std"])
    return LoadedEncoder(model=model, transform=eval_transform(size, mean, std), image_size=size, mean=mean, std=std,
                         embed_dim=int(record["embed_dim"]), kind=kind, source=source, weights=str(weights),
                         extra=dict(record.get("extra") or {}))


# --------------------------------------------------------------------------- resolution

def resolve_source(name_or_path: str, download_root=None, progress: bool = True) -> Tuple[str, Path]:
    """Classify ``name_or_path``: returns (kind, path) with kind in "official" (downloaded
    file), "weights" (a bare weights file), "export" (directory), "checkpoint" (step dir) or
    "deployed" (a ``unicom-export`` folder or its graph file)."""
    if is_known_name(name_or_path):
        return "official", download_pretrained(name_or_path, root=download_root, progress=progress)
    p = Path(name_or_path).expanduser()
    if p.is_file():
        if is_deploy_dir(p.parent):
            return "deployed", p.parent
        for cfg_name, kind in ((CONFIG_FILE, "export"), (layout.ENCODER_FILE, "checkpoint")):
            if p.name in (MODEL_FILE, layout.BACKBONE_FILE) and (p.parent / cfg_name).is_file():
                return kind, p.parent
        return "weights", p
    if p.is_dir():
        return _classify_dir(p)
    if _looks_like_path(name_or_path):
        raise FileNotFoundError(
            f"{name_or_path}: no such file or directory. unicom.load takes an official .pt state dict, an export/ "
            f"directory, a training run or checkpoint directory, or one of the names {', '.join(available_models())}")
    get_spec(name_or_path)  # raises UnknownModelError listing the available names
    raise AssertionError("unreachable")


def _looks_like_path(s: str) -> bool:
    if s.startswith(("/", ".", "~")) or s.endswith(WEIGHT_SUFFIXES) or s.endswith(os.sep):
        return True
    parent = Path(s).expanduser().parent
    return str(parent) not in ("", ".") and parent.exists()


def _classify_dir(d: Path) -> Tuple[str, Path]:
    if is_deploy_dir(d):
        return "deployed", d
    if (d / CONFIG_FILE).is_file():
        return "export", d
    if (d / layout.ENCODER_FILE).is_file():
        return "checkpoint", d
    if layout.is_checkpoint_area(d):
        return "checkpoint", layout.encoder_step_dir(d)
    if (d / layout.CHECKPOINTS_DIR).is_dir():
        return "checkpoint", layout.encoder_step_dir(d / layout.CHECKPOINTS_DIR)
    if (d / layout.EXPORT_DIR / CONFIG_FILE).is_file():
        return "export", d / layout.EXPORT_DIR
    raise ValueError(
        f"{d} is a directory but holds no encoder: expected an export directory ({CONFIG_FILE} + {MODEL_FILE}), a "
        f"checkpoint step directory ({' + '.join(layout.ENCODER_FILES)}), a checkpoints directory (with "
        f"'{layout.LATEST_FILE}') or a run directory (with {layout.CHECKPOINTS_DIR}/)")


def read_dir_record(kind: str, d: Path) -> Tuple[Dict[str, Any], Path]:
    if kind == "deployed":
        raise ValueError(f"{d} is a unicom-export graph, which holds no PyTorch weights to read; use the encoder it "
                         "was exported from (deploy.json, encoder.model)")
    if kind == "export":
        record = read_export_config(d)
        weights = d / MODEL_FILE
    else:
        record = read_encoder_record(d / layout.ENCODER_FILE)
        weights = d / layout.BACKBONE_FILE
    if not weights.is_file():
        raise FileNotFoundError(f"{weights} not found: the encoder directory {d} is incomplete")
    return record, weights


def _check_official(name: str, cfg: ViTConfig) -> None:
    from ..models.vit import OFFICIAL_CONFIGS

    want = OFFICIAL_CONFIGS[get_spec(name).arch]
    if cfg != want:
        raise ValueError(f"the file for {name} holds a {cfg} network, not the released {want}; "
                         "the cached file is not the official one")


# --------------------------------------------------------------------------- building

def _build_and_fill(record: Dict[str, Any], state: Dict[str, torch.Tensor], image_size: Optional[int],
                    source: str) -> Tuple[nn.Module, int]:
    arch = record["arch"]
    size = int(record["image_size"])
    if arch.get("type") == "unicom_vit":
        cfg = ViTConfig(**arch["config"])
        if image_size is not None and int(image_size) != cfg.image_size:
            new = ViTConfig(**{**cfg.to_dict(), "image_size": int(image_size)})
            # A mismatch is reported against the stored architecture, before any resizing.
            msg = describe_mismatch(_empty_vit(cfg), state, source)
            if msg:
                raise StateDictMismatchError(msg)
            state, cfg, size = resize_vit_state(state, cfg, new), new, int(image_size)
        model = load_into(_empty_vit(cfg), state, source, assign=True)
        return model, size
    if image_size is not None and int(image_size) != size:
        raise ValueError(f"changing the input size is supported for Unicom ViTs only, not for {arch.get('type')!r}")
    model = build_from_arch(arch)
    return load_into(model, state, source), size


def _empty_vit(cfg: ViTConfig) -> UnicomViT:
    """A ``UnicomViT`` without initialised storage (on the meta device), to be filled by
    ``load_state_dict(assign=True)``: skips seconds of random init for large models."""
    try:
        with torch.device("meta"):
            return UnicomViT(cfg)
    except (NotImplementedError, RuntimeError):  # a layer that cannot be built on meta
        return UnicomViT(cfg)
