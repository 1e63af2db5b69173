"""The metrics of the steps since the last ``log.csv`` row (open_clip's ``AverageMeter`` idea,
for the columns of docs/training.md)."""
from __future__ import annotations

import math
import time
from typing import Any, Dict, List, Optional


class WindowMeter:
    """Accumulates the steps between two log rows: finite losses, images, loader wait, and
    the head's and the backbone's compute time. ``row()`` turns them into log.csv columns and
    starts a new window."""

    def __init__(self, global_batch: int):
        self.global_batch = global_batch
        self.reset()

    def reset(self) -> None:
        """Start a new window now."""
        self.losses: List[float] = []
        self.images = 0
        self.data_s = self.head_s = self.backbone_s = 0.0
        self.t0 = time.perf_counter()

    def update(self, loss: float, data_s: float, head_s: float, backbone_s: float) -> None:
        """Add one step (``global_batch`` images; times in seconds)."""
        if math.isfinite(loss):
            self.losses.append(loss)
        self.images += self.global_batch
        self.data_s += data_s
        self.head_s += head_s
        self.backbone_s += backbone_s

    def row(self, with_head_share: bool) -> Dict[str, Any]:
        """``loss_avg`` (mean finite loss), ``images_per_s``, ``step_time_s``, ``data_time_s``
        (per step, in seconds) and ``head_share`` (None unless ``with_head_share``); resets."""
        elapsed = time.perf_counter() - self.t0
        steps = max(1, self.images // self.global_batch)
        head_share: Optional[float] = None
        if with_head_share:
            head_share = self.head_s / max(self.head_s + self.backbone_s, 1e-12)
        out = {"loss_avg": sum(self.losses) / len(self.losses) if self.losses else float("nan"),
               "images_per_s": self.images / max(elapsed, 1e-9), "step_time_s": elapsed / steps,
               "data_time_s": self.data_s / steps, "head_share": head_share}
        self.reset()
        return out
