"""The officially released Unicom encoders: name → release URL, file name, SHA-256, architecture.

The files are plain ``torch.save``d state dicts of fp16 tensors, published on the GitHub
releases of deepglint/unicom under the tags ``b32``, ``b16``, ``l14`` and ``l14_336px``
(docs/formats.md, "Released Unicom checkpoints"; sums from the official ``unicom/model.py``).

``$UNICOM_MIRROR`` replaces the release base URL (``{mirror}/{tag}/{file}``), for clusters
that keep a local copy of the releases.
"""
from __future__ import annotations

import difflib
import os
from dataclasses import dataclass
from typing import Dict, List

RELEASE_BASE = "https://github.com/deepglint/unicom/releases/download"
MIRROR_ENV = "UNICOM_MIRROR"


@dataclass(frozen=True)
class PretrainedSpec:
    """One released encoder. ``arch`` is its key in ``unicom.models.vit.OFFICIAL_CONFIGS``."""

    name: str
    tag: str
    filename: str
    sha256: str

    @property
    def arch(self) -> str:
        return self.name

    @property
    def url(self) -> str:
        base = os.environ.get(MIRROR_ENV, "").strip() or RELEASE_BASE
        return f"{base.rstrip('/')}/{self.tag}/{self.filename}"


MODELS: Dict[str, PretrainedSpec] = {
    s.name: s for s in (
        PretrainedSpec("ViT-B/32", "b32", "FP16-ViT-B-32.pt",
                       "f9d5696a9b58dbbbefee2d31615ca59084f2895a0fdd2ca4c235e0f9b2793f7a"),
        PretrainedSpec("ViT-B/16", "b16", "FP16-ViT-B-16.pt",
                       "c04f324f7c3b4435667236ec6c0eca1cd62f9d64fbfc2d06f8e8e60e6497edef"),
        PretrainedSpec("ViT-L/14", "l14", "FP16-ViT-L-14.pt",
                       "ff3ab62ff782876460099e6e0ee17b73a7c01109de2fffd595f16f4129404bbd"),
        PretrainedSpec("ViT-L/14@336px", "l14_336px", "FP16-ViT-L-14-336px.pt",
                       "3916ab5aed3b522fc90345be8b4457fe5dad60801ad2af5a6871c0c096e8d7ea"),
    )
}


def available_models() -> List[str]:
    """Names of the officially released encoders that ``unicom.load`` downloads."""
    return list(MODELS)


class UnknownModelError(ValueError):
    """A name that is neither a released encoder nor an existing path."""


def is_known_name(name: str) -> bool:
    return name in MODELS


def get_spec(name: str) -> PretrainedSpec:
    """The release record of ``name``; an unknown name gets an error listing the known ones."""
    if name in MODELS:
        return MODELS[name]
    close = difflib.get_close_matches(name, list(MODELS), n=1, cutoff=0.6)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise UnknownModelError(
        f"unknown model name {name!r}.{hint} Available names: {', '.join(available_models())}; "
        "or give the path of an official .pt file, an export/ directory or a training checkpoint directory")
