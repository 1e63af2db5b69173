"""The demo's baseline: the trained encoder's architecture with fresh random weights."""
from __future__ import annotations

from pathlib import Path

import torch

from ..formats.export import read_export_config, save_export
from ..models.arch import build_from_arch


def export_untrained(trained_export: Path, out: Path, seed: int = 0) -> Path:
    """Write an export of the same architecture as ``trained_export`` at random init.

    BatchNorm layers keep their initial running statistics (mean 0, var 1), as an untrained
    network evaluated in eval mode would."""
    cfg = read_export_config(trained_export)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_from_arch(cfg["arch"]).eval()
    return save_export(model, out, image_size=cfg["image_size"], mean=cfg["mean"], std=cfg["std"],
                       embed_dim=cfg["embed_dim"], extra={"note": "random init baseline", "seed": seed})
