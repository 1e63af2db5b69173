"""Shared helpers for the pretrained-weights tests (imported, not collected)."""
from __future__ import annotations

import torch

from unicom.models.vit import UnicomViT, build_vit


def random_official_state(name: str, seed: int = 0) -> dict:
    """An official-format state dict (fp16 tensors, int64 BN counters) with random values,
    keyed and shaped like our model (built on the meta device: no slow init)."""
    with torch.device("meta"):
        model = build_vit(name) if isinstance(name, str) else UnicomViT(name)
    g = torch.Generator().manual_seed(seed)
    state = {}
    for k, v in model.state_dict().items():
        if k.endswith("num_batches_tracked"):
            state[k] = torch.tensor(1000, dtype=torch.long)
        elif k.endswith("running_var"):
            state[k] = (torch.rand(v.shape, generator=g) + 0.5).half()
        elif k.endswith(("norm1.weight", "norm2.weight", "norm.weight")):
            state[k] = (1 + 0.1 * torch.randn(v.shape, generator=g)).half()
        else:
            state[k] = (0.02 * torch.randn(v.shape, generator=g)).half()
    return state
