"""The ``export/`` format: an encoder alone, as ``model.safetensors`` plus ``config.json``.

``config.json`` fields (written by the trainer, read by ``unicom.load``):
  format        "unicom-export"
  version       1
  arch          {"type": "unicom_vit", "config": {ViTConfig fields}}   (built by unicom.models.arch)
                or {"type": "open_clip_tower", ...kwargs of build_open_clip_tower}
  embed_dim     output dimension
  image_size    square input side in pixels
  mean, std     normalisation of the eval transform (bicubic resize, centre crop)
  decode        the image decode policy the encoder was trained under (unicom.data.decode):
                {"version", "background"}
  extra         free-form provenance (run dir, step, …)

``classes.json`` (beside ``config.json`` in an export, and in the run folder; written when the
training labels were class names): ``{"format": "unicom-classes", "version": 1, "num_classes": K,
"names": [name of head class 0, …], "sources": [[names of source 0's classes] or null, …]}``
(``null`` where a class has no name: a source labelled by integer ids); the names of each
string-labelled source are in sorted order, and the sources follow each other in the head.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
from safetensors.torch import load_file, save

from .atomic_io import read_json_record, write_bytes, write_json

EXPORT_FORMAT = "unicom-export"
EXPORT_VERSION = 1
MODEL_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
CLASSES_FILE = "classes.json"
CLASSES_FORMAT = "unicom-classes"


def arch_of(model: nn.Module) -> Dict[str, Any]:
    """Describe ``model`` as an ``arch`` record (the inverse of ``unicom.models.arch.build_from_arch``).

    Each exportable encoder class describes itself (``arch_record()``), so this format module
    never imports the models that it stores."""
    record = getattr(model, "arch_record", None)
    if record is None:
        raise TypeError(f"cannot export a {type(model).__name__}: it is neither a UnicomViT nor an open_clip tower")
    return record()


def save_export(model: nn.Module, directory, image_size: int, mean: Sequence[float], std: Sequence[float],
                embed_dim: int, extra: Optional[Dict[str, Any]] = None) -> Path:
    """Write ``directory/model.safetensors`` and ``directory/config.json`` atomically.

    Weights are saved in fp32 with contiguous clones (safetensors refuses shared storage).
    Non-finite weights are refused (ValueError): an export is always usable.
    The config is written last, so a directory with a config.json always has its weights.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu", torch.float32 if v.is_floating_point() else v.dtype).contiguous().clone()
             for k, v in model.state_dict().items()}
    bad = non_finite_keys(state)
    if bad:
        raise ValueError(f"refusing to export to {directory}: the weights are not finite ({', '.join(bad[:3])}"
                         f"{' …' if len(bad) > 3 else ''}); export from a checkpoint taken before the run diverged")
    write_bytes(directory / MODEL_FILE, save(state, metadata={"format": EXPORT_FORMAT}))
    record = encoder_record(model, image_size, mean, std, extra)
    record["embed_dim"] = int(embed_dim)
    write_json(directory / CONFIG_FILE, record)
    return directory


def encoder_record(model: nn.Module, image_size: int, mean: Sequence[float], std: Sequence[float],
                   extra: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """The ``config.json`` record of ``model`` (also a training checkpoint's ``encoder.json``):
    format, version, arch, embed_dim (the model's ``embed_dim`` attribute), image_size (px),
    mean/std of the eval transform, the process's image ``decode`` policy and free-form ``extra``
    provenance."""
    from ..data.decode import current_policy

    return {"format": EXPORT_FORMAT, "version": EXPORT_VERSION, "arch": arch_of(model),
            "embed_dim": int(getattr(model, "embed_dim", 0)), "image_size": int(image_size), "mean": list(mean),
            "std": list(std), "decode": current_policy().record(), "extra": extra or {}}


def write_classes(directory, sources: Sequence[Tuple[int, Optional[Sequence[str]]]]) -> Path:
    """Write ``directory/classes.json`` from each source's ``(number of classes, names or None)``,
    in head order."""
    names: List[Optional[str]] = []
    for count, src in sources:
        names.extend([str(n) for n in src] if src is not None else [None] * int(count))
    path = Path(directory) / CLASSES_FILE
    write_json(path, {"format": CLASSES_FORMAT, "version": 1, "num_classes": len(names), "names": names,
                      "sources": [None if src is None else [str(n) for n in src] for _, src in sources]})
    return path


def read_classes(directory) -> Optional[List[Optional[str]]]:
    """The class names of ``directory/classes.json`` (an export or a run folder) by head id, or
    None when there is none; a damaged file is a ValueError naming it."""
    record = read_classes_record(directory)
    return None if record is None else record["names"]


def read_classes_record(directory) -> Optional[Dict[str, Any]]:
    """The whole ``classes.json`` record (``names`` and per-source ``sources``), or None."""
    path = Path(directory) / CLASSES_FILE
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exn:
        raise ValueError(f"{path} is not valid JSON ({exn}); the file is damaged") from None
    names = record.get("names") if isinstance(record, dict) else None
    if not isinstance(record, dict) or record.get("format") != CLASSES_FORMAT or not isinstance(names, list):
        raise ValueError(f"{path} is not a unicom classes file (format {CLASSES_FORMAT!r} with a names list)")
    record.setdefault("sources", [names])
    return record


def non_finite_keys(state: Dict[str, torch.Tensor]) -> List[str]:
    """The keys of ``state`` whose floating-point tensor holds a NaN or an infinity."""
    return [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]


def read_export_config(directory) -> Dict[str, Any]:
    """Read and validate ``directory/config.json``; errors name the file and the problem."""
    path = Path(directory) / CONFIG_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: an export directory holds {MODEL_FILE} and {CONFIG_FILE} "
                                "(written by unicom-train into RUN/export/)")
    return read_encoder_record(path)


def read_encoder_record(path) -> Dict[str, Any]:
    """Read and validate an encoder record: an export's ``config.json`` or a training
    checkpoint's ``encoder.json`` (the same fields). Errors name the file."""
    record = read_json_record(path, EXPORT_FORMAT, "a unicom encoder record", "the file is damaged")
    for key in ("arch", "embed_dim", "image_size", "mean", "std"):
        if key not in record:
            raise ValueError(f"{path} lacks the key {key!r}")
    return record


def load_export_state(directory) -> Dict[str, torch.Tensor]:
    """Load ``directory/model.safetensors`` (no pickle involved)."""
    path = Path(directory) / MODEL_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found next to {CONFIG_FILE}; the export is incomplete")
    return load_file(str(path))
