"""The training loop: DDP backbone, sharded Partial FC head, two optimizers, one schedule.

One optimizer step (``train.accum_steps`` micro-batches of ``data.batch_size`` per rank):

1. For each micro-batch: the backbone embeds the images (autocast on CUDA). The head gathers
   the embeddings of every rank and returns the margin-softmax loss averaged over the global
   micro-batch. ``loss / accum_steps`` is back-propagated, first through the head, then into
   the backbone. DDP's gradient all-reduce is suppressed (``no_sync``) on all but the last
   micro-batch. The head still gathers across ranks every micro-batch. Since every micro-batch
   has the same size, dividing by ``accum_steps`` makes the accumulated gradient that of the
   mean over all ``accum_steps × batch × world`` samples.
2. Gradients are unscaled (fp16) and the backbone's norm is clipped (``optim.clip_grad_norm``).
   The head's centre rows are sharded, so clipping them would need another collective and would
   couple the shards; like the reference implementation, only the backbone is clipped.
3. If the loss or the gradients are not finite, both optimizers skip the step. The step is
   counted, its data is consumed and the schedule moves on. After ``train.max_nonfinite`` such
   steps in a row the run stops with an error. Under fp16 a gradient overflow with a finite loss
   only lowers the loss scale, as GradScaler does. The decision is agreed across ranks.
4. Both optimizers step, then the LR of every group is set from the schedule.
"""
from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch
import torch.distributed as dist
import torch.nn as nn

from ..atomic_io import write_json, write_text
from ..device import seed_everything
from ..distributed import DistContext, all_gather_object, barrier, init_distributed, is_dist
from ..wds_reader import SkipCounter
from . import checkpoint as ckpt
from .config import Config, diff_configs, feature_sample_dim
from .augment import build_augment
from .eval_hook import EvalHook
from .sources import build_training_data
from .logging import RunLogger, plot_loss
from .model import build_backbone, encoder_config, model_embed_dim, model_image_size, model_norm, unwrap
from .optim import build_backbone_optimizer, build_head_optimizer, set_initial_lrs
from .precision import LossScaler, autocast_context
from .schedule import LRSchedule

LossHook = Callable[[int, int, torch.Tensor], torch.Tensor]


def build_head(cfg: Config, num_classes: int, embed_dim: int, world_size: int = 1) -> nn.Module:
    """The Partial FC head, sharded over the ranks. DDP averages the backbone's gradients over
    the ranks while the head's loss is already the global-batch mean, so the embeddings'
    gradient is scaled by the world size (``embedding_grad_scale``): the backbone then gets
    the exact gradient of the global mean."""
    from ..losses import PartialFC

    h = cfg.head
    opt = lambda v: None if v is None else float(v)  # noqa: E731
    return PartialFC(num_classes, embed_dim, sample_rate=float(h.sample_rate),
                     feature_sample_dim=feature_sample_dim(h, embed_dim), margin=h.margin, scale=float(h.scale),
                     m1=opt(h.m1), m2=opt(h.m2), m3=opt(h.m3), subcenters=int(h.subcenters),
                     straight_through=bool(h.straight_through), interclass_filter=float(h.interclass_filter),
                     seed=int(cfg.train.seed), embedding_grad_scale=float(world_size))


def planned_samples(cfg: Config, samples_per_epoch: int, global_batch: int) -> int:
    """The run's length in samples: ``train.max_steps`` steps, or ``data.epochs`` epochs rounded
    up to whole steps of ``global_batch``."""
    if cfg.train.max_steps:
        return int(cfg.train.max_steps) * global_batch
    return int(math.ceil(float(cfg.data.epochs) * samples_per_epoch / global_batch)) * global_batch


def _opt_str(value: Optional[str]) -> Optional[str]:
    return None if value is None else str(value)


class NonFiniteLossError(RuntimeError):
    """Raised when the loss (or the gradients) stayed non-finite for too many steps in a row."""


class RunExistsError(RuntimeError):
    """Raised when the output dir already holds a run and --resume was not given."""


# --------------------------------------------------------------------------------------------
# One step
# --------------------------------------------------------------------------------------------
@dataclass
class StepTimes:
    backbone_s: float = 0.0
    head_s: float = 0.0


def _sync(device: torch.device, enabled: bool) -> None:
    if enabled and device.type == "cuda":
        torch.cuda.synchronize(device)


def forward_backward(model: nn.Module, head: nn.Module, micro_batches: Sequence[Tuple[torch.Tensor, torch.Tensor]],
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
        sync_ctx = model.no_sync() if (not last and hasattr(model, "no_sync") and is_dist()) else contextlib.nullcontext()
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


def _params_with_grad(params) -> List[torch.Tensor]:
    return [p for p in params if p.grad is not None]


def _agree_any(flags: Sequence[bool], device: torch.device) -> List[bool]:
    """OR each flag across ranks."""
    if not is_dist():
        return list(flags)
    t = torch.tensor([1.0 if f else 0.0 for f in flags], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return [bool(v > 0) for v in t.tolist()]


# --------------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------------
@dataclass
class RunState:
    step: int = 0
    samples: int = 0                 # global samples consumed (good ones)
    nonfinite_steps: int = 0         # steps skipped for a non-finite loss / gradient
    overflow_steps: int = 0          # fp16 steps skipped for a gradient overflow
    consecutive_nonfinite: int = 0
    last_loss: float = float("nan")
    first_loss: Optional[float] = None


def train(cfg: Config, data: Optional[str], labels: Optional[str], output: str, resume: bool = False,
          loss_hook: Optional[LossHook] = None, ctx: Optional[DistContext] = None) -> Dict[str, Any]:
    """Train an encoder as ``cfg`` says; return a summary dict (also written to RUN/summary.json).

    ``loss_hook(step, micro, loss) -> loss`` lets tests inject faults (e.g. a NaN loss).
    """
    if cfg.train.threads:
        torch.set_num_threads(int(cfg.train.threads))
    ctx = ctx or init_distributed(cfg.train.device)
    device = ctx.device
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = bool(cfg.train.tf32)
        torch.backends.cudnn.allow_tf32 = bool(cfg.train.tf32)
    out = Path(output)
    cfg.run.data, cfg.run.labels, cfg.run.output = _opt_str(data), _opt_str(labels), str(output)

    # ---- run dir: fresh or resumed ---------------------------------------------------------
    latest = ckpt.find_latest(out)
    if latest is not None and not resume:
        raise RunExistsError(f"{out} already holds a training run (latest checkpoint {latest.name}); pass --resume "
                             "to continue it, or choose another --output")
    if resume and latest is None and ctx.is_main:
        print(f"--resume: no checkpoint in {out}/checkpoints yet; starting from scratch", flush=True)
    if ctx.is_main:
        out.mkdir(parents=True, exist_ok=True)
        old_cfg = out / "config.yaml"
        if latest is not None and old_cfg.is_file():
            import yaml

            changed = diff_configs(yaml.safe_load(old_cfg.read_text()) or {}, cfg.to_dict())
            if changed:
                print("resuming with a config that differs from the run's saved config.yaml:\n  "
                      + "\n  ".join(changed), flush=True)
        write_text(out / "config.yaml", cfg.to_yaml())
    barrier()

    # ---- data --------------------------------------------------------------------------------
    source = build_training_data(cfg, ctx)  # unicom/train/sources.py: shards, a labelled layout, or a mix
    num_classes = source.num_classes

    # ---- model, head, optimizers ---------------------------------------------------------
    seed_everything(cfg.train.seed)  # identical initial weights on every rank
    backbone = build_backbone(cfg).to(device)
    image_size = model_image_size(backbone)
    if cfg.data.image_size and int(cfg.data.image_size) != image_size:
        raise ValueError(f"data.image_size={cfg.data.image_size} but the model takes {image_size}-px inputs")
    embed_dim = model_embed_dim(backbone)
    mean, std = model_norm(backbone)
    if cfg.model.type == "unicom_vit":
        mean, std = tuple(cfg.data.mean), tuple(cfg.data.std)
    if cfg.model.sync_bn and ctx.world_size > 1:
        if device.type == "cuda":
            backbone = nn.SyncBatchNorm.convert_sync_batchnorm(backbone)
        elif ctx.is_main:
            print("model.sync_bn needs CUDA; BatchNorm statistics stay per rank on the CPU", flush=True)

    head = build_head(cfg, num_classes, embed_dim, ctx.world_size).to(device)
    opt_b = build_backbone_optimizer(backbone, cfg)
    opt_h = build_head_optimizer(head, cfg)
    set_initial_lrs(opt_b)
    set_initial_lrs(opt_h)
    scaler = LossScaler(device.type == "cuda" and cfg.train.precision == "fp16")

    if ctx.world_size > 1:
        model: nn.Module = nn.parallel.DistributedDataParallel(
            backbone, device_ids=[device.index] if device.type == "cuda" else None, broadcast_buffers=True)
    else:
        model = backbone

    # ---- schedule and length -------------------------------------------------------------
    per_rank = int(cfg.data.batch_size) * int(cfg.train.accum_steps)
    global_batch = per_rank * ctx.world_size
    samples_per_epoch = int(cfg.data.samples_per_epoch or source.samples_per_epoch)
    if samples_per_epoch <= 0:
        raise ValueError("the labels hold no samples (class_sizes sum to 0); set data.samples_per_epoch")
    total_samples = planned_samples(cfg, samples_per_epoch, global_batch)
    if cfg.schedule.warmup_steps is not None:
        warmup_samples = int(cfg.schedule.warmup_steps) * global_batch
    else:
        warmup_samples = int(round(float(cfg.schedule.warmup_epochs) * samples_per_epoch))
    schedule = LRSchedule(cfg.schedule.name, total_samples, warmup_samples, float(cfg.schedule.min_lr_ratio),
                          float(cfg.schedule.pct_start), float(cfg.schedule.div_factor),
                          float(cfg.schedule.final_div_factor))

    # ---- resume ------------------------------------------------------------------------------
    plan_batch = global_batch  # the global batch the run's length was planned with (kept across resumes)
    position = source.new_position()
    state = RunState()
    skips = SkipCounter()
    exact = True
    if latest is not None:
        saved = ckpt.load_checkpoint(latest, unwrap(model), head, opt_b, opt_h, device)
        schedule = LRSchedule.from_state_dict(saved["schedule"])  # keeps the run's length in samples
        plan_batch = int(saved.get("plan_global_batch", saved.get("global_batch", global_batch)))
        wanted = planned_samples(cfg, samples_per_epoch, plan_batch)
        if wanted != schedule.total_samples:  # data.epochs / train.max_steps changed: a longer or shorter run
            if ctx.is_main:
                print(f"the run's length changes from {schedule.total_samples} to {wanted} samples "
                      "(data.epochs / train.max_steps differ from the checkpoint's)", flush=True)
            schedule.total_samples = wanted
        scaler.load_state_dict(saved.get("scaler"))
        state = RunState(step=int(saved["step"]), samples=int(saved["samples"]),
                         nonfinite_steps=int(saved.get("nonfinite_steps", 0)),
                         overflow_steps=int(saved.get("overflow_steps", 0)),
                         consecutive_nonfinite=int(saved.get("consecutive_nonfinite", 0)),
                         last_loss=float(saved.get("last_loss", float("nan"))), first_loss=saved.get("first_loss"))
        position, exact = source.restore_position(saved["data"])
        ranks = saved["ranks"]
        if exact:
            mine = ranks[ctx.rank]
            ckpt.restore_rng(mine["rng"], device)
            if mine.get("head_rng") is not None and hasattr(head, "set_rng_state"):
                head.set_rng_state(ckpt.from_jsonable(mine["head_rng"]))
        else:
            seed_everything(int(cfg.train.seed) + 1 + ctx.rank + 7919 * state.step)
            if ranks[0].get("head_rng") is not None and hasattr(head, "set_rng_state"):
                head.set_rng_state(ckpt.from_jsonable(ranks[0]["head_rng"]))
        if ctx.is_main:
            skips.update(saved.get("skipped", {}))
            how = "exactly" if exact else "on another number of ranks or loader workers (data order re-laid out)"
            print(f"resumed from {latest} (step {state.step}, {state.samples} samples) {how}", flush=True)
    else:
        seed_everything(int(cfg.train.seed) + 1 + ctx.rank)  # per-rank stream for drop-path
    total_steps = state.step + int(math.ceil(max(0, schedule.total_samples - state.samples) / global_batch))

    augment = build_augment(cfg.data, image_size, mean, std)
    loader = source.make_loader(position, augment, pin_memory=device.type == "cuda")

    encoder = encoder_config(unwrap(model), image_size, mean, std,
                             {"num_classes": num_classes, "run": str(out), "config": cfg.to_dict()["model"]})
    logger = RunLogger(out, ctx.is_main, total_steps, state.step, bool(cfg.train.tensorboard),
                       bool(cfg.train.progress))
    if ctx.is_main:
        logger.write(f"training {encoder['arch']['type']} ({sum(p.numel() for p in backbone.parameters()) / 1e6:.2f}M "
                     f"params, {image_size}px, embed {embed_dim}) on {source.describe()}, {num_classes} classes; "
                     f"{ctx.world_size} rank(s) on {device.type}, global batch {global_batch}, "
                     f"{total_steps} steps ({schedule.total_samples / samples_per_epoch:.2f} epochs of "
                     f"{samples_per_epoch} samples)")

    evaluator = EvalHook(cfg, ctx, out, samples_per_epoch, image_size, mean, std, embed_dim, state.step)

    def save(step: int) -> Path:
        shared = {"step": step, "epoch": state.samples / samples_per_epoch, "samples": state.samples,
                  "samples_per_epoch": samples_per_epoch, "global_batch": global_batch,
                  "plan_global_batch": plan_batch, "world_size": ctx.world_size,
                  "schedule": schedule.state_dict(), "scaler": scaler.state_dict(),
                  "nonfinite_steps": state.nonfinite_steps, "overflow_steps": state.overflow_steps,
                  "consecutive_nonfinite": state.consecutive_nonfinite, "last_loss": state.last_loss,
                  "first_loss": state.first_loss, "num_classes": num_classes, "torch": torch.__version__}
        shared["data"] = source.position_state(position)  # a collective: every rank calls it
        counts = SkipCounter()
        for c in all_gather_object(skips.as_dict()):
            counts.update(c)
        shared["skipped"] = counts.as_dict()
        head_rng = head.rng_state() if hasattr(head, "rng_state") else None
        rank_state = {"rank": ctx.rank, "rng": ckpt.capture_rng(device),
                      "head_rng": ckpt.to_jsonable(head_rng) if head_rng is not None else None}
        return ckpt.save_checkpoint(out, step, ctx, unwrap(model), head, opt_b, opt_h, shared, rank_state, encoder,
                                    keep=int(cfg.train.keep_checkpoints))

    # ---- loop ----------------------------------------------------------------------------
    model.train()
    head.train()
    data_iter = iter(loader)

    def next_batch():
        b = next(data_iter)
        source.record(position, b)
        skips.update(b.skips)
        return b

    timing = bool(cfg.train.timing) or device.type == "cpu"
    log_every = max(1, int(cfg.train.log_every))
    ckpt_every = int(cfg.train.ckpt_every or 0)
    stop_after = cfg.train.stop_after_steps
    session_steps = 0
    window: List[float] = []
    window_t0, window_images, window_data, window_head, window_bb = time.perf_counter(), 0, 0.0, 0.0, 0.0
    last_saved = state.step if latest is not None else None  # a resumed step is on disk already
    t_start = time.perf_counter()
    grad_norm = float("nan")
    try:
        while state.step < total_steps:
            if stop_after is not None and session_steps >= int(stop_after):
                logger.write(f"stopping after {session_steps} steps (train.stop_after_steps); no final checkpoint")
                break
            t0 = time.perf_counter()
            micro = []
            for _ in range(int(cfg.train.accum_steps)):
                b = next_batch()
                micro.append((b.images.to(device, non_blocking=True), b.labels.to(device, non_blocking=True)))
            t_data = time.perf_counter() - t0
            schedule.apply((opt_b, opt_h), state.samples + global_batch)
            times = StepTimes()
            losses = forward_backward(model, head, micro, device, cfg.train.precision, scaler, loss_hook,
                                      state.step, timing=bool(cfg.train.timing), times=times)
            loss_val = float(torch.stack(losses).float().mean())
            bb_params = _params_with_grad(backbone.parameters())
            scaler.unscale_(bb_params)  # the head's sparse gradient is unscaled by its optimizer
            clip = cfg.optim.clip_grad_norm
            grad_norm_t = torch.nn.utils.clip_grad_norm_(bb_params, float(clip) if clip else float("inf"))
            grad_norm = float(grad_norm_t)
            bad_loss = not math.isfinite(loss_val)
            bad_grad = not math.isfinite(grad_norm) or (scaler.enabled and not opt_h.grads_finite())
            bad_loss, bad_grad = _agree_any([bad_loss, bad_grad], device)
            if bad_loss or (bad_grad and not scaler.enabled):
                state.nonfinite_steps += 1
                state.consecutive_nonfinite += 1
                scaler.update(True)
                logger.write(f"step {state.step + 1}: non-finite {'loss' if bad_loss else 'gradient'} "
                             f"({loss_val}); step skipped ({state.consecutive_nonfinite} in a row)")
            elif bad_grad:  # fp16 overflow with a finite loss: lower the scale, as GradScaler does
                state.overflow_steps += 1
                scaler.update(True)
            else:
                opt_b.step()
                opt_h.step(grad_scale=scaler.scale if scaler.enabled else None)
                scaler.update(False)
                state.consecutive_nonfinite = 0
            opt_b.zero_grad(set_to_none=True)
            opt_h.zero_grad(set_to_none=True)
            state.step += 1
            session_steps += 1
            state.samples += global_batch
            state.last_loss = loss_val
            if state.first_loss is None and math.isfinite(loss_val):
                state.first_loss = loss_val
            if state.consecutive_nonfinite >= int(cfg.train.max_nonfinite):
                last = ckpt.find_latest(out)
                raise NonFiniteLossError(
                    f"training stopped at step {state.step}: the loss or gradients were not finite for "
                    f"{state.consecutive_nonfinite} steps in a row (train.max_nonfinite={cfg.train.max_nonfinite}). "
                    f"The last complete checkpoint is {last if last else 'none'}. Try a lower optim.lr, a longer "
                    "warm-up (schedule.warmup_epochs), gradient clipping (optim.clip_grad_norm=1.0) or "
                    "train.precision=bf16/fp32.")
            dt = time.perf_counter() - t0
            if math.isfinite(loss_val):
                window.append(loss_val)
            window_images += global_batch
            window_data += t_data
            window_head += times.head_s
            window_bb += times.backbone_s
            lr = opt_b.param_groups[0]["lr"]
            logger.step(1, {"loss": f"{loss_val:.3f}", "lr": f"{lr:.2e}",
                            "img/s": f"{global_batch / max(dt, 1e-9):.0f}"})
            if state.step % log_every == 0 or state.step == total_steps:
                elapsed = time.perf_counter() - window_t0
                n_win = max(1, len(window))
                logger.log({"step": state.step, "epoch": state.samples / samples_per_epoch, "samples": state.samples,
                            "loss": loss_val, "loss_avg": sum(window) / n_win if window else float("nan"),
                            "lr": lr, "lr_head": opt_h.param_groups[0]["lr"], "grad_norm": grad_norm,
                            "images_per_s": window_images / max(elapsed, 1e-9), "step_time_s": elapsed / max(1, (
                                window_images // global_batch)), "data_time_s": window_data / max(1, (
                                window_images // global_batch)),
                            "head_share": (window_head / max(window_head + window_bb, 1e-12)) if timing else None,
                            "loss_scale": scaler.scale if scaler.enabled else None,
                            "skipped_steps": state.nonfinite_steps + state.overflow_steps})
                window, window_images, window_data, window_head, window_bb = [], 0, 0.0, 0.0, 0.0
                window_t0 = time.perf_counter()
            if ckpt_every and state.step % ckpt_every == 0 and state.step < total_steps:
                save(state.step)
                last_saved = state.step
            if evaluator.due(state.samples, global_batch) and state.step < total_steps:
                evaluator.run(unwrap(model), state.step, state.samples / samples_per_epoch, logger.write)
        finished = state.step >= total_steps
        if finished and last_saved != state.step:
            save(state.step)
    finally:
        del data_iter
        logger.close()

    wall = time.perf_counter() - t_start
    total_skips = SkipCounter()
    for c in all_gather_object(skips.as_dict()):
        total_skips.update(c)
    summary: Dict[str, Any] = {
        "finished": finished, "step": state.step, "total_steps": total_steps, "samples": state.samples,
        "epoch": state.samples / samples_per_epoch, "first_loss": state.first_loss, "last_loss": state.last_loss,
        "nonfinite_steps": state.nonfinite_steps, "overflow_steps": state.overflow_steps,
        "skipped": total_skips.as_dict(), "world_size": ctx.world_size, "global_batch": global_batch,
        "session_steps": session_steps, "session_wall_s": wall,
        "images_per_s": session_steps * global_batch / max(wall, 1e-9), "resumed_exactly": exact,
        "num_classes": num_classes, "run": str(out),
    }
    if finished and ctx.is_main:
        from ..export import save_export

        if evaluator.enabled:  # export/ = the best encoder by the benchmark's headline metric
            export_dir = evaluator.finish(unwrap(model), state.step, state.samples / samples_per_epoch, print)
            summary["eval"] = evaluator.summary()
        else:
            export_dir = save_export(unwrap(model), out / "export", image_size, mean, std, embed_dim,
                                     extra={"step": state.step, "samples": state.samples, "num_classes": num_classes,
                                            "run": str(out)})
        summary["export"] = str(export_dir)
        plot = plot_loss(out)
        summary["loss_plot"] = str(plot) if plot else None
        write_json(out / "summary.json", summary)
        print(total_skips.report("skipped sample reads (all ranks)"), flush=True)
        print(f"done: step {state.step}, loss {state.first_loss} -> {state.last_loss}; encoder in {export_dir}",
              flush=True)
    barrier()
    return summary
