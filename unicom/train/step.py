"""One optimizer step: forward and backward over the micro-batches, clipping, the non-finite
check agreed across ranks, and both optimizers (see ``unicom.train.loop`` for the recipe).
"""
from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass
from typing import Callable, List, Optional, Sequence, Tuple

import torch
import torch.distributed as dist
import torch.nn as nn

from ..runtime.distributed import is_dist
from .precision import LossScaler, autocast_context

LossHook = Callable[[int, int, torch.Tensor], torch.Tensor]
MicroBatches = Sequence[Tuple[torch.Tensor, torch.Tensor]]


@dataclass
class StepTimes:
    """Seconds spent in the backbone (forward + backward) and in the head during one step."""

    backbone_s: float = 0.0
    head_s: float = 0.0


@dataclass
class StepResult:
    """What one step did. ``outcome`` is ``"ok"``, ``"nonfinite"`` (both optimizers skipped the
    step) or ``"overflow"`` (fp16: a gradient overflow with a finite loss lowered the scale)."""

    loss: float
    grad_norm: float
    outcome: str
    bad_loss: bool
    times: StepTimes


def _sync(device: torch.device, enabled: bool) -> None:
    if enabled and device.type == "cuda":
        torch.cuda.synchronize(device)


def forward_backward(model: nn.Module, head: nn.Module, micro_batches: MicroBatches,
                     device: torch.device, precision: str = "fp32", scaler: Optional[LossScaler] = None,
                     loss_hook: Optional[LossHook] = None, step: int = 0, timing: bool = False,
                     times: Optional[StepTimes] = None) -> List[torch.Tensor]:
    """Forward and backward over the micro-batches of one step; gradients accumulate in the
    parameters. Returns each micro-batch's (unscaled, undivided) loss.

    ``model`` may be DDP-wrapped; then all but the last micro-batch run under ``no_sync``. The
    backward is split at the embedding (head first, then backbone) so the two can be timed
    apart. The split is exact: it is the chain rule done in two calls.
    """
    n = len(micro_batches)
    scaler = scaler or LossScaler(False)
    losses = []
    for k, (images, labels) in enumerate(micro_batches):
        last = k == n - 1
        defer_sync = not last and hasattr(model, "no_sync") and is_dist()
        sync_ctx = model.no_sync() if defer_sync else contextlib.nullcontext()
        with sync_ctx:
            _sync(device, timing)
            t0 = time.perf_counter()
            with autocast_context(device, precision):
                emb = model(images)
            _sync(device, timing)
            t1 = time.perf_counter()
            feats = emb.detach().float().requires_grad_(True)
            loss = head(feats, labels)
            if loss_hook is not None:
                loss = loss_hook(step, k, loss)
            scaler.scale_loss(loss / n).backward()
            _sync(device, timing)
            t2 = time.perf_counter()
            emb.backward(feats.grad.to(emb.dtype))
            _sync(device, timing)
            t3 = time.perf_counter()
        if times is not None:
            times.backbone_s += (t1 - t0) + (t3 - t2)
            times.head_s += t2 - t1
        losses.append(loss.detach())
    return losses


def params_with_grad(params) -> List[torch.Tensor]:
    """The parameters that received a gradient."""
    return [p for p in params if p.grad is not None]


def agree_any(flags: Sequence[bool], device: torch.device) -> List[bool]:
    """OR each flag across ranks (the flags themselves without a process group)."""
    if not is_dist():
        return list(flags)
    t = torch.tensor([1.0 if f else 0.0 for f in flags], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return [bool(v > 0) for v in t.tolist()]


def train_step(model: nn.Module, backbone: nn.Module, head: nn.Module, opt_backbone: torch.optim.Optimizer,
               opt_head: torch.optim.Optimizer, scaler: LossScaler, micro_batches: MicroBatches,
               device: torch.device, precision: str, clip_grad_norm: Optional[float], step: int,
               timing: bool = False, loss_hook: Optional[LossHook] = None) -> StepResult:
    """Run one optimizer step on ``micro_batches`` (the LRs are already set) and return what
    happened. ``model`` is the (possibly DDP-wrapped) ``backbone``; ``step`` is the number of
    steps done before this one (passed to ``loss_hook``)."""
    times = StepTimes()
    losses = forward_backward(model, head, micro_batches, device, precision, scaler, loss_hook, step,
                              timing=timing, times=times)
    loss_val = float(torch.stack(losses).float().mean())
    bb_params = params_with_grad(backbone.parameters())
    scaler.unscale_(bb_params)  # the head's sparse gradient is unscaled by its optimizer
    grad_norm = float(torch.nn.utils.clip_grad_norm_(bb_params, clip_grad_norm if clip_grad_norm else float("inf")))
    bad_loss = not math.isfinite(loss_val)
    bad_grad = not math.isfinite(grad_norm) or (scaler.enabled and not opt_head.grads_finite())
    bad_loss, bad_grad = agree_any([bad_loss, bad_grad], device)
    if bad_loss or (bad_grad and not scaler.enabled):
        outcome = "nonfinite"
        scaler.update(True)
    elif bad_grad:  # fp16 overflow with a finite loss: lower the scale, as GradScaler does
        outcome = "overflow"
        scaler.update(True)
    else:
        outcome = "ok"
        opt_backbone.step()
        opt_head.step(grad_scale=scaler.scale if scaler.enabled else None)
        scaler.update(False)
    opt_backbone.zero_grad(set_to_none=True)
    opt_head.zero_grad(set_to_none=True)
    return StepResult(loss_val, grad_norm, outcome, bad_loss, times)


def all_finite(tensors, device: torch.device) -> bool:
    """True when every floating-point tensor in ``tensors`` is finite on every rank."""
    checks = [torch.isfinite(t).all() for t in tensors if t.is_floating_point()]
    ok = bool(torch.stack(checks).all()) if checks else True  # one device sync, not one per tensor
    return not agree_any([not ok], device)[0]
