"""The module that is exported: the encoder, then an optional compact projection, then an
optional L2 normalisation, so that the graph emits the final embedding directly.

Compact heads (``--dims D``):
* ``first``: the first D coordinates of the raw embedding (the trainer's feature-dimension
  sampling trains on random subsets of the coordinates, so a fixed subset still retrieves;
  the first D is the one any client can reproduce);
* ``pca``: ``(normalise(raw) - mean) @ components.T``, a PCA fitted on the normalised full
  embeddings of a set (``compact.py``): the D directions of most variance on that set.
"""
from __future__ import annotations

from typing import Callable, Optional

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


class DeployHead(nn.Module):
    """images [B, 3, S, S] → embeddings [B, D] (float32): ``backbone`` (or its ``method``,
    e.g. open_clip's ``encode_image``), then the compact projection, then L2 normalisation.

    ``first``: keep the first ``first`` coordinates. ``pca_mean`` [full] and ``pca_components``
    [D, full] (numpy): project the normalised embedding onto the PCA basis instead."""

    pca_mean: torch.Tensor
    pca_proj: torch.Tensor

    def __init__(self, backbone: nn.Module, method: Optional[str] = None, normalize: bool = True,
                 first: Optional[int] = None, pca_mean: Optional[np.ndarray] = None,
                 pca_components: Optional[np.ndarray] = None):
        super().__init__()
        self.backbone = backbone
        self.method = method
        self.normalize = bool(normalize)
        self.first = None if first is None else int(first)
        self.pca = pca_components is not None
        if self.pca:
            assert pca_mean is not None
            self.register_buffer("pca_mean", torch.as_tensor(np.asarray(pca_mean, np.float32)))
            self.register_buffer("pca_proj", torch.as_tensor(np.ascontiguousarray(np.asarray(pca_components,
                                                                                              np.float32).T)))

    def _encode(self) -> Callable[[torch.Tensor], torch.Tensor]:
        return getattr(self.backbone, self.method) if self.method else self.backbone

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        y = self._encode()(images).float()
        if self.pca:
            y = (F.normalize(y, dim=1) - self.pca_mean) @ self.pca_proj
        elif self.first is not None:
            y = y[:, : self.first]
        return F.normalize(y, dim=1) if self.normalize else y


def encode_method(model: nn.Module, encode: Optional[Callable]) -> Optional[str]:
    """The name of ``model``'s method that ``encode`` is (``LoadedEncoder.encode``), or None
    when the encoder is ``model`` itself. Any other callable cannot be exported: TypeError."""
    if encode is None:
        return None
    name = getattr(encode, "__name__", None)
    if getattr(encode, "__self__", None) is model and name and callable(getattr(model, name, None)):
        return name
    raise TypeError(f"cannot export an encoder whose embedding function ({encode!r}) is not a method of its model")
