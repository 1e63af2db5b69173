"""Mixed precision: autocast for the backbone and a loss scaler for fp16.

``auto`` (the default) is bf16 on GPUs with bf16 and on CPUs with native bf16 (AMX, AVX-512
BF16), fp16 on older GPUs and fp32 on other CPUs (``unicom.runtime.precision``). Autocast covers
the backbone only; the margin loss and the class centres stay float32 on every device.
bf16 needs no scaling. fp16 uses a dynamic loss scale like
``torch.amp.GradScaler``. Unlike GradScaler, the overflow check here is agreed across ranks. The
head's centres are sharded, so one rank can overflow where another does not, and GradScaler's
per-rank decision would let the ranks' scales (and the DDP-averaged backbone gradients) drift
apart. fp16 runs on CUDA only (the CPU runs fp32 for it).
"""
from __future__ import annotations

import contextlib
from typing import Dict, Iterable, Optional

import torch

from ..runtime.device import autocast_dtype
from ..runtime.precision import announce_precision, resolve_precision


def autocast_context(device: torch.device, precision: str):
    """``torch.autocast`` for the backbone under ``precision`` (resolved on ``device``: bf16 on
    CUDA and on CPUs with native bf16, fp16 on older GPUs), a no-op for fp32."""
    dtype = autocast_dtype(device, announce_precision(precision, device, "backbone"))
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def needs_loss_scaling(device: torch.device, precision: str) -> bool:
    """True when ``precision`` resolves to fp16 on ``device`` (only CUDA runs fp16)."""
    return resolve_precision(precision, device) == "fp16"


class LossScaler:
    """Dynamic loss scaling (fp16). ``enabled=False`` makes every method a no-op (scale 1)."""

    def __init__(self, enabled: bool, init_scale: float = 2.0 ** 16, growth_factor: float = 2.0,
                 backoff_factor: float = 0.5, growth_interval: int = 2000):
        self.enabled = bool(enabled)
        self.scale = float(init_scale) if enabled else 1.0
        self.growth_factor, self.backoff_factor = float(growth_factor), float(backoff_factor)
        self.growth_interval = int(growth_interval)
        self.good_steps = 0

    def scale_loss(self, loss: torch.Tensor) -> torch.Tensor:
        return loss * self.scale if self.enabled else loss

    @torch.no_grad()
    def unscale_(self, params: Iterable[torch.nn.Parameter]) -> None:
        if not self.enabled:
            return
        inv = 1.0 / self.scale
        for p in params:
            if p.grad is not None:
                p.grad.mul_(inv)

    def update(self, found_inf: bool) -> None:
        """After a step: back off on overflow, grow after ``growth_interval`` clean steps."""
        if not self.enabled:
            return
        if found_inf:
            self.scale *= self.backoff_factor
            self.good_steps = 0
        else:
            self.good_steps += 1
            if self.good_steps >= self.growth_interval:
                self.scale *= self.growth_factor
                self.good_steps = 0

    def state_dict(self) -> Dict:
        return {"enabled": self.enabled, "scale": self.scale, "good_steps": self.good_steps}

    def load_state_dict(self, d: Optional[Dict]) -> None:
        if not d or not self.enabled or not d.get("enabled"):
            return
        self.scale = float(d["scale"])
        self.good_steps = int(d["good_steps"])
