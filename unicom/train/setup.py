"""Building a run: the runtime settings, the inputs (``sources.py``: shards, a labelled layout
or a mix), the model with its head and optimizers, and the run's length. Everything one
training session works with is gathered in ``RunParts``.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Tuple

import torch
import torch.nn as nn

from ..formats import checkpoint as layout
from ..formats.atomic_io import write_text
from ..runtime.device import seed_everything
from ..runtime.distributed import DistContext
from .config import Config, diff_configs, feature_sample_dim
from .inputs import check_resume_inputs, init_from_entry, write_fingerprint
from .model import build_backbone, model_embed_dim, model_image_size, model_norm
from .optim import build_backbone_optimizer, build_head_optimizer, set_initial_lrs
from .precision import LossScaler, needs_loss_scaling
from .schedule import LRSchedule

log = logging.getLogger(__name__)


@dataclass
class RunParts:
    """The pieces of one training session (built once, then used by the loop)."""

    cfg: Config
    ctx: DistContext
    out: Path
    source: Any                   # sources.ShardData | LabelledData | MixedData
    backbone: nn.Module           # the plain model
    model: nn.Module              # the backbone, DDP-wrapped when there are several ranks
    head: nn.Module
    opt_backbone: torch.optim.Optimizer
    opt_head: torch.optim.Optimizer
    scaler: LossScaler
    image_size: int
    embed_dim: int
    mean: Tuple[float, ...]
    std: Tuple[float, ...]
    global_batch: int
    samples_per_epoch: int

    @property
    def device(self) -> torch.device:
        return self.ctx.device

    @property
    def num_classes(self) -> int:
        return self.source.num_classes


def configure_runtime(cfg: Config, device: torch.device) -> None:
    """Intra-op threads and, on CUDA, TF32 for fp32 matmuls."""
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = cfg.train.tf32
        torch.backends.cudnn.allow_tf32 = cfg.train.tf32


def build_head(cfg: Config, num_classes: int, embed_dim: int, world_size: int = 1) -> nn.Module:
    """The Partial FC head, sharded over the ranks. DDP averages the backbone's gradients over
    the ranks while the head's loss is already the global-batch mean, so the embeddings'
    gradient is scaled by the world size (``embedding_grad_scale``): the backbone then gets
    the exact gradient of the global mean."""
    from ..losses import PartialFC

    h = cfg.head
    return PartialFC(num_classes, embed_dim, sample_rate=h.sample_rate,
                     feature_sample_dim=feature_sample_dim(h, embed_dim), margin=h.margin, scale=h.scale,
                     m1=h.m1, m2=h.m2, m3=h.m3, subcenters=h.subcenters, straight_through=h.straight_through,
                     interclass_filter=h.interclass_filter, seed=cfg.train.seed,
                     embedding_grad_scale=float(world_size))


def build_model(cfg: Config, ctx: DistContext, num_classes: int) -> dict:
    """Backbone (identical initial weights on every rank), head, both optimizers, the loss
    scaler and the DDP wrapper, with the backbone's input size, embedding dim and mean/std."""
    device = ctx.device
    seed_everything(cfg.train.seed)  # identical initial weights on every rank
    backbone = build_backbone(cfg).to(device)
    image_size = model_image_size(backbone)
    if cfg.data.image_size and cfg.data.image_size != image_size:
        raise ValueError(f"data.image_size={cfg.data.image_size} but the model takes {image_size}-px inputs")
    embed_dim = model_embed_dim(backbone)
    mean, std = model_norm(backbone)
    if cfg.model.type == "unicom_vit":
        mean, std = tuple(cfg.data.mean), tuple(cfg.data.std)
    if cfg.model.sync_bn and ctx.world_size > 1:
        if device.type == "cuda":
            backbone = nn.SyncBatchNorm.convert_sync_batchnorm(backbone)
        elif ctx.is_main:
            log.warning("model.sync_bn needs CUDA; BatchNorm statistics stay per rank on the CPU")

    head = build_head(cfg, num_classes, embed_dim, ctx.world_size).to(device)
    opt_b = build_backbone_optimizer(backbone, cfg)
    opt_h = build_head_optimizer(head, cfg)
    set_initial_lrs(opt_b)
    set_initial_lrs(opt_h)
    scaler = LossScaler(needs_loss_scaling(device, cfg.train.precision))
    model: nn.Module = backbone
    if ctx.world_size > 1:
        model = nn.parallel.DistributedDataParallel(
            backbone, device_ids=[device.index] if device.type == "cuda" else None, broadcast_buffers=True)
    return dict(backbone=backbone, model=model, head=head, opt_backbone=opt_b, opt_head=opt_h, scaler=scaler,
                image_size=image_size, embed_dim=embed_dim, mean=mean, std=std)


def samples_per_epoch(cfg: Config, source) -> int:
    """``data.samples_per_epoch``, by default the number of labelled samples of ``source``."""
    n = cfg.data.samples_per_epoch or source.samples_per_epoch
    if n <= 0:
        raise ValueError("the labels hold no samples (class_sizes sum to 0); set data.samples_per_epoch")
    return n


def planned_samples(cfg: Config, samples_per_epoch: int, global_batch: int) -> int:
    """The run's length in samples: ``train.max_steps`` steps, or ``data.epochs`` epochs rounded
    up to whole steps of ``global_batch``."""
    if cfg.train.max_steps:
        return cfg.train.max_steps * global_batch
    return int(math.ceil(cfg.data.epochs * samples_per_epoch / global_batch)) * global_batch


def build_schedule(cfg: Config, samples_per_epoch: int, plan_batch: int) -> LRSchedule:
    """The LR schedule in samples, for a run planned with the global batch ``plan_batch`` (the
    first session's: the run keeps its length in samples when the world size changes)."""
    s = cfg.schedule
    if s.warmup_steps is not None:
        warmup = s.warmup_steps * plan_batch
    else:
        warmup = int(round(s.warmup_epochs * samples_per_epoch))
    return LRSchedule(s.name, planned_samples(cfg, samples_per_epoch, plan_batch), warmup, s.min_lr_ratio,
                      s.pct_start, s.div_factor, s.final_div_factor)


# --------------------------------------------------------------------------------------------
# Inputs and the run folder's records
# --------------------------------------------------------------------------------------------
def record_run(cfg: Config, out: Path, resume: bool, has_run: bool, source, allow_changed: bool) -> None:
    """Main rank: compare the inputs (``source.fingerprint()``) and config against the run's
    saved ones, then write both."""
    inputs = {**source.fingerprint(), **init_from_entry(cfg.model.init_from)}
    if resume and not has_run:
        log.info("--resume: no checkpoint in %s yet; starting from scratch", layout.checkpoint_root(out))
    if has_run:
        check_resume_inputs(out, inputs, allow_changed)
        old_cfg = out / layout.CONFIG_FILE
        if old_cfg.is_file():
            import yaml

            changed = diff_configs(yaml.safe_load(old_cfg.read_text()) or {}, cfg.to_dict())
            if changed:
                log.warning("resuming with a config that differs from the run's saved config.yaml: %s",
                            "; ".join(changed))
    else:
        write_fingerprint(out, inputs)
    write_text(out / layout.CONFIG_FILE, cfg.to_yaml())
    write_class_names(out, source)


def write_class_names(directory: Path, source) -> None:
    """``classes.json`` (``unicom.formats.export.write_classes``) when a source's labels are class
    names: the name of each head class, so that a resumed run and an evaluation use the same ids."""
    from ..formats.export import write_classes

    entries = source.class_sources()
    if any(names is not None for _, names in entries):
        write_classes(directory, entries)
