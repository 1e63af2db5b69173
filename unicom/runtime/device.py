"""Device selection and seeding, shared by every entry point."""
from __future__ import annotations

import os
import random
from typing import Optional, Union

import numpy as np
import torch


def module_device(model: torch.nn.Module) -> torch.device:
    """The device of ``model``'s parameters (the CPU for a parameterless model)."""
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def resolve_device(device: Optional[Union[str, torch.device]] = None) -> torch.device:
    """Turn a user's device choice into a ``torch.device``.

    ``None`` or ``"auto"`` picks ``cuda:LOCAL_RANK`` when CUDA is available (LOCAL_RANK from
    torchrun, 0 otherwise) and the CPU otherwise. ``"cuda"`` without an index gets the local
    rank too, so every torchrun process lands on its own GPU. Asking for CUDA where there is
    none raises a clear error instead of failing later inside a kernel.
    """
    if isinstance(device, torch.device):
        return device
    name = (device or "auto").strip().lower()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise RuntimeError(
                f"device {device!r} was asked for but CUDA is not available on this machine; "
                "pass --device cpu (or auto)")
        if name == "cuda":
            name = f"cuda:{local_rank % max(torch.cuda.device_count(), 1)}"
    return torch.device(name)


def seed_everything(seed: int) -> None:
    """Seed Python's, numpy's and torch's (CPU and CUDA) generators with ``seed``."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def autocast_dtype(device: torch.device, precision: str = "bf16") -> Optional[torch.dtype]:
    """Return the autocast dtype for ``precision`` on ``device``, or None for plain fp32.

    Mixed precision is a CUDA feature here: on the CPU everything runs in fp32 (docs/training.md).
    """
    if device.type != "cuda" or precision in ("fp32", "float32", "no"):
        return None
    if precision in ("bf16", "bfloat16"):
        return torch.bfloat16
    if precision in ("fp16", "float16", "half"):
        return torch.float16
    raise ValueError(f"unknown precision {precision!r}; use bf16, fp16 or fp32")
