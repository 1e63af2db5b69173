"""Device selection and seeding, shared by every entry point."""
from __future__ import annotations

import contextlib
import os
import random
from typing import Optional, Union

import numpy as np
import torch

from .precision import DEFAULT_PRECISION, resolve_precision


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


def autocast_dtype(device: torch.device, precision: str = DEFAULT_PRECISION) -> Optional[torch.dtype]:
    """Return the autocast dtype for ``precision`` on ``device``, or None for plain fp32.

    ``precision`` is resolved first (``unicom.runtime.precision.resolve_precision``): ``auto`` is
    bf16 on CUDA with bf16 and on CPUs with native bf16, fp16 on older GPUs, fp32 elsewhere.
    """
    resolved = resolve_precision(precision, device)
    return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(resolved)


def autocast(device: torch.device, precision: str = DEFAULT_PRECISION):
    """``torch.autocast`` on ``device`` for ``precision``. For fp32 it is autocast switched off
    (on the CPU and CUDA), so that fp32 stays float32 even inside an outer autocast context."""
    dtype = autocast_dtype(device, precision)
    if dtype is None:
        if device.type in ("cpu", "cuda"):
            return torch.autocast(device_type=device.type, enabled=False)
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)
