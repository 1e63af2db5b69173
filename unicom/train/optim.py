"""Optimizers: the backbone's (AdamW or SGD, with parameter groups) and the head's sparse one.

Parameter groups: weight decay applies to weight matrices and conv kernels only. Biases,
normalisation weights (LayerNorm, BatchNorm) and the position embedding get none (the usual ViT
recipe). The head's class centres are updated by ``unicom.losses.SparseCentreOptimizer``. It
touches only the rows sampled in a step, at ``optim.lr × head.lr_mult``, with ``head.weight_decay``
(default: ``optim.weight_decay``).
"""
from __future__ import annotations

from typing import Dict, List

import torch
import torch.nn as nn

from .config import Config

NO_DECAY_NAMES = ("pos_embed", "positional_embedding", "class_embedding", "cls_token")


def param_groups(model: nn.Module, weight_decay: float) -> List[Dict]:
    """Split trainable parameters into a decayed group (matrices, kernels) and a group without
    weight decay (biases, norm weights, 1-D parameters, position/class embeddings)."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        leaf = name.rsplit(".", 1)[-1]
        if p.ndim <= 1 or leaf == "bias" or any(n in name for n in NO_DECAY_NAMES):
            no_decay.append(p)
        else:
            decay.append(p)
    groups = []
    if decay:
        groups.append({"params": decay, "weight_decay": weight_decay, "name": "decay"})
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0, "name": "no_decay"})
    return groups


def build_backbone_optimizer(model: nn.Module, cfg: Config) -> torch.optim.Optimizer:
    """AdamW (default) or SGD over the backbone's parameter groups."""
    o = cfg.optim
    groups = param_groups(model, o.weight_decay)
    if o.name == "adamw":
        return torch.optim.AdamW(groups, lr=o.lr, betas=tuple(o.betas), eps=o.eps, weight_decay=o.weight_decay)
    if o.name == "sgd":
        return torch.optim.SGD(groups, lr=o.lr, momentum=o.momentum, nesterov=o.nesterov, weight_decay=o.weight_decay)
    raise ValueError(f"unknown optimizer {o.name!r}; use adamw or sgd")


def head_lr(cfg: Config) -> float:
    """The head's peak LR: ``optim.lr × head.lr_mult``."""
    return cfg.optim.lr * cfg.head.lr_mult


def build_head_optimizer(head: nn.Module, cfg: Config) -> torch.optim.Optimizer:
    """The sparse centre optimizer of the Partial FC head, of the same kind as the backbone's."""
    from ..losses import SparseCentreOptimizer

    o = cfg.optim
    wd = o.weight_decay if cfg.head.weight_decay is None else cfg.head.weight_decay
    return SparseCentreOptimizer(head, kind=o.name, lr=head_lr(cfg), weight_decay=wd, momentum=o.momentum,
                                 betas=tuple(o.betas))


def set_initial_lrs(optimizer: torch.optim.Optimizer) -> None:
    """Record each group's peak LR as ``initial_lr`` (what the schedule multiplies)."""
    for g in optimizer.param_groups:
        g.setdefault("initial_lr", g["lr"])
