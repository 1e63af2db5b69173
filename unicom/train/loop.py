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

The session, as open_clip's trainer lays it out: ``setup`` builds the parts, ``resume`` picks
the start, ``step.train_step`` runs one step, ``meter.WindowMeter`` gathers the log columns, and
this module drives them, writes checkpoints (only from finite weights) and the export.
``RunHooks`` has one call site each for the start of the run, the end of an epoch and the
moment after a checkpoint.
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import torch

from ..cli.run_lock import lock_output_dir
from ..data.wds_reader import SkipCounter
from ..formats import checkpoint as layout
from ..formats.atomic_io import write_json
from ..runtime.distributed import DistContext, barrier, init_distributed
from . import checkpoint as ckpt
from .augment import build_augment
from .config import Config
from .eval_hook import EvalHook
from .meter import WindowMeter
from .model import unwrap
from .resume import RunState, Start, fresh_start, resume_candidates, resume_start
from .run_log import RunLogger, plot_loss
from .setup import (
    RunParts,
    build_head,
    build_model,
    configure_runtime,
    planned_samples,
    record_run,
    samples_per_epoch,
    write_class_names,
)
from .sources import build_training_data, on_main
from .step import LossHook, StepTimes, all_finite, forward_backward, train_step

log = logging.getLogger(__name__)

__all__ = ["train", "RunHooks", "NonFiniteLossError", "RunExistsError", "build_head", "forward_backward",
           "planned_samples", "RunState", "StepTimes"]


def _opt_str(value: Optional[str]) -> Optional[str]:
    return None if value is None else str(value)


class NonFiniteLossError(RuntimeError):
    """Raised when the loss (or the gradients, or the weights) stopped being finite."""


class RunExistsError(RuntimeError):
    """Raised when the output dir already holds a run and --resume was not given."""


class RunHooks:
    """Extension points of a run, each called at exactly one place (on every rank).

    Subclass and pass ``train(..., hooks=...)``: ``on_run_start`` before the first step of the
    session, ``on_epoch_end`` when the samples seen cross an epoch boundary, ``on_checkpoint``
    after a checkpoint was written (and ``latest`` points at it)."""

    def on_run_start(self, parts: RunParts, start: Start) -> None:
        """Called once, after setup and resume, before the first step."""

    def on_epoch_end(self, parts: RunParts, state: RunState, epoch: int) -> None:
        """Called after the step that completes epoch ``epoch`` (1-based)."""

    def on_checkpoint(self, parts: RunParts, state: RunState, path: Path) -> None:
        """Called after ``path`` (a step folder) was written."""


# --------------------------------------------------------------------------------------------
# Before the first step
# --------------------------------------------------------------------------------------------
def _setup(cfg: Config, out: Path, resume: bool, allow_changed: bool, ctx: DistContext) -> Tuple[RunParts, Start]:
    """Build everything (the data from ``cfg.run``: ``sources.py``) and choose where the session starts."""
    configure_runtime(cfg, ctx.device)
    has_run = layout.latest_name(layout.checkpoint_root(out)) is not None
    if has_run and not resume:
        raise RunExistsError(f"{out} already holds a training run (checkpoints/latest exists); pass --resume "
                             "to continue it, or choose another --output")
    source = build_training_data(cfg, ctx)  # checks the inputs up front (labels, lists, images)
    on_main(ctx, record_run, cfg, out, resume, has_run, source, allow_changed)
    built = build_model(cfg, ctx, source.num_classes)
    global_batch = cfg.data.batch_size * cfg.train.accum_steps * ctx.world_size
    parts = RunParts(cfg=cfg, ctx=ctx, out=out, source=source, global_batch=global_batch,
                     samples_per_epoch=samples_per_epoch(cfg, source), **built)
    candidates = resume_candidates(out) if has_run else []
    start = resume_start(parts, candidates) if candidates else fresh_start(parts)
    return parts, start


# --------------------------------------------------------------------------------------------
# Checkpoints and the non-finite abort
# --------------------------------------------------------------------------------------------
def _weights_finite(parts: RunParts) -> bool:
    """Backbone weights and buffers, the centres and both optimizers' state: all finite (all ranks)."""
    tensors = list(unwrap(parts.model).state_dict().values()) + [parts.head.weight.detach()]
    for st in parts.opt_backbone.state.values():
        tensors += [v for v in st.values() if isinstance(v, torch.Tensor)]
    tensors += list(parts.opt_head.centre_state(create=False).values())
    return all_finite(tensors, parts.device)


@dataclass
class _Session:
    """The mutable state of one session's loop."""

    parts: RunParts
    start: Start
    data_iter: Any
    logger: RunLogger
    encoder: Dict[str, Any]
    hooks: RunHooks
    evaluator: EvalHook
    loss_hook: Optional[LossHook] = None
    # A checkpoint is *confirmed* once a later step had a finite loss: weights can be finite
    # and still useless (an LR of 1e30 makes them huge; the next forward is NaN).
    confirmed: Optional[int] = None   # the newest confirmed checkpoint step (the resumed one counts)
    pending: Optional[int] = None     # a newer checkpoint not confirmed yet

    @property
    def state(self) -> RunState:
        return self.start.state

    @property
    def position(self) -> Any:
        return self.start.position


def _non_finite_error(s: _Session, why: str) -> NonFiniteLossError:
    """The abort error, naming the newest checkpoint after which the loss was still finite;
    ``checkpoints/latest`` is pointed back at it when a newer, unconfirmed one exists."""
    last = layout.step_dir(s.parts.out, s.confirmed) if s.confirmed is not None else None
    if s.pending is not None and s.parts.ctx.is_main:
        if last is not None:
            layout.write_latest(s.parts.out, last)
        else:  # nothing confirmed: --resume starts afresh
            (layout.checkpoint_root(s.parts.out) / layout.LATEST_FILE).unlink(missing_ok=True)
    where = (f"The last finite checkpoint is {last} (checkpoints/latest names it); resume from it with --resume "
             "and" if last else "No checkpoint was taken before the run diverged; start again (--resume starts "
             "from scratch) with")
    return NonFiniteLossError(
        f"training stopped at step {s.state.step}: {why}. {where} a lower optim.lr, a longer warm-up "
        "(schedule.warmup_epochs), gradient clipping (optim.clip_grad_norm=1.0) or train.precision=bf16/fp32.")


def _checkpoint_state(s: _Session) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """(state.json's shared part, this rank's part): counters, schedule, data position, skips, RNGs."""
    parts, state, pos = s.parts, s.state, s.position
    shared = {"step": state.step, "epoch": state.samples / parts.samples_per_epoch, "samples": state.samples,
              "samples_per_epoch": parts.samples_per_epoch, "global_batch": parts.global_batch,
              "plan_global_batch": s.start.plan_batch, "world_size": parts.ctx.world_size,
              "schedule": s.start.schedule.state_dict(), "scaler": parts.scaler.state_dict(),
              "nonfinite_steps": state.nonfinite_steps, "overflow_steps": state.overflow_steps,
              "consecutive_nonfinite": state.consecutive_nonfinite, "last_loss": state.last_loss,
              "first_loss": state.first_loss, "num_classes": parts.num_classes, "torch": torch.__version__}
    shared["data"] = parts.source.position_state(pos)  # a collective: every rank calls it
    shared["skipped"] = s.start.skips.all_reduce().as_dict()
    head_rng = parts.head.rng_state() if hasattr(parts.head, "rng_state") else None
    rank_state = {"rank": parts.ctx.rank, "rng": ckpt.capture_rng(parts.device),
                  "head_rng": ckpt.to_jsonable(head_rng) if head_rng is not None else None}
    return shared, rank_state


def _save(s: _Session) -> Path:
    """Write a checkpoint of the current step; refuse (abort) when the weights are not finite."""
    if not _weights_finite(s.parts):
        raise _non_finite_error(s, "the weights or optimizer state are no longer finite, so no checkpoint was "
                                "written")
    shared, rank_state = _checkpoint_state(s)
    path = ckpt.save_checkpoint(s.parts.out, s.state.step, s.parts.ctx, unwrap(s.parts.model), s.parts.head,
                                s.parts.opt_backbone, s.parts.opt_head, shared, rank_state, s.encoder,
                                keep=s.parts.cfg.train.keep_checkpoints, protect=s.confirmed)
    s.pending = s.state.step
    s.hooks.on_checkpoint(s.parts, s.state, path)
    return path


# --------------------------------------------------------------------------------------------
# The loop
# --------------------------------------------------------------------------------------------
def _next_micro_batches(s: _Session):
    """``accum_steps`` batches on the device; the data position and skips follow them."""
    micro = []
    for _ in range(s.parts.cfg.train.accum_steps):
        b = next(s.data_iter)
        s.parts.source.record(s.position, b)
        s.start.skips.update(b.skips)
        micro.append((b.images.to(s.parts.device, non_blocking=True), b.labels.to(s.parts.device, non_blocking=True)))
    return micro


def _count_step(s: _Session, result) -> None:
    """Update the run's counters after a step; abort after too many non-finite steps in a row."""
    state, cfg = s.state, s.parts.cfg
    if result.outcome == "nonfinite":
        state.nonfinite_steps += 1
        state.consecutive_nonfinite += 1
        s.logger.write(f"step {state.step + 1}: non-finite {'loss' if result.bad_loss else 'gradient'} "
                       f"({result.loss}); step skipped ({state.consecutive_nonfinite} in a row)", logging.WARNING)
    elif result.outcome == "overflow":
        state.overflow_steps += 1
    else:
        state.consecutive_nonfinite = 0
        if s.pending is not None:
            s.confirmed, s.pending = s.pending, None
    state.step += 1
    state.samples += s.parts.global_batch
    state.last_loss = result.loss
    if state.first_loss is None and math.isfinite(result.loss):
        state.first_loss = result.loss
    if state.consecutive_nonfinite >= cfg.train.max_nonfinite:
        raise _non_finite_error(s, f"the loss or gradients were not finite for "
                                f"{state.consecutive_nonfinite} steps in a row (train.max_nonfinite="
                                f"{cfg.train.max_nonfinite})")


def _log_row(s: _Session, meter: WindowMeter, result, with_head_share: bool) -> None:
    parts, state = s.parts, s.state
    row = {"step": state.step, "epoch": state.samples / parts.samples_per_epoch, "samples": state.samples,
           "loss": result.loss, "lr": parts.opt_backbone.param_groups[0]["lr"],
           "lr_head": parts.opt_head.param_groups[0]["lr"], "grad_norm": result.grad_norm,
           "loss_scale": parts.scaler.scale if parts.scaler.enabled else None,
           "skipped_steps": state.nonfinite_steps + state.overflow_steps}
    row.update(meter.row(with_head_share))
    s.logger.log(row)


def _run_steps(s: _Session, total_steps: int) -> Tuple[bool, int]:
    """Train until ``total_steps`` (or ``train.stop_after_steps`` in this process); returns
    (finished, steps run by this process). Checkpoints every ``train.ckpt_every`` steps and at the end."""
    parts, cfg, state = s.parts, s.parts.cfg, s.state
    log_every, ckpt_every = max(1, cfg.train.log_every), cfg.train.ckpt_every or 0
    with_head_share = cfg.train.timing or parts.device.type == "cpu"
    meter = WindowMeter(parts.global_batch)
    last_saved = state.step if s.start.checkpoint is not None else None  # a resumed step is on disk already
    session_steps = 0
    while state.step < total_steps:
        if cfg.train.stop_after_steps is not None and session_steps >= cfg.train.stop_after_steps:
            s.logger.write(f"stopping after {session_steps} steps (train.stop_after_steps); no final checkpoint")
            return False, session_steps
        t0 = time.perf_counter()
        epoch_before = state.samples // parts.samples_per_epoch
        micro = _next_micro_batches(s)
        t_data = time.perf_counter() - t0
        s.start.schedule.apply((parts.opt_backbone, parts.opt_head), state.samples + parts.global_batch)
        result = train_step(parts.model, parts.backbone, parts.head, parts.opt_backbone, parts.opt_head,
                            parts.scaler, micro, parts.device, cfg.train.precision, cfg.optim.clip_grad_norm,
                            state.step, timing=cfg.train.timing, loss_hook=s.loss_hook)
        _count_step(s, result)
        session_steps += 1
        meter.update(result.loss, t_data, result.times.head_s, result.times.backbone_s)
        s.logger.step(1, {"loss": f"{result.loss:.3f}", "lr": f"{parts.opt_backbone.param_groups[0]['lr']:.2e}",
                          "img/s": f"{parts.global_batch / max(time.perf_counter() - t0, 1e-9):.0f}"})
        if state.step % log_every == 0 or state.step == total_steps:
            _log_row(s, meter, result, with_head_share)
        if state.samples // parts.samples_per_epoch > epoch_before:  # before the checkpoint, as open_clip evaluates
            s.hooks.on_epoch_end(parts, state, state.samples // parts.samples_per_epoch)
        if s.evaluator.due(state.samples, parts.global_batch) and state.step < total_steps:  # the last: in _finish
            s.evaluator.run(unwrap(parts.model), state.step, state.samples / parts.samples_per_epoch, s.logger.write)
        if ckpt_every and state.step % ckpt_every == 0 and state.step < total_steps:
            _save(s)
            last_saved = state.step
    if last_saved != state.step:
        _save(s)
    return True, session_steps


def _summary(s: _Session, finished: bool, session_steps: int, total_steps: int, wall: float,
             skips: SkipCounter) -> Dict[str, Any]:
    """summary.json: where the run stands, its losses, skip counts (all ranks) and throughput."""
    parts, state = s.parts, s.state
    return {
        "finished": finished, "step": state.step, "total_steps": total_steps, "samples": state.samples,
        "epoch": state.samples / parts.samples_per_epoch, "first_loss": state.first_loss,
        "last_loss": state.last_loss, "nonfinite_steps": state.nonfinite_steps,
        "overflow_steps": state.overflow_steps, "skipped": skips.as_dict(),
        "world_size": parts.ctx.world_size, "global_batch": parts.global_batch, "session_steps": session_steps,
        "session_wall_s": wall, "images_per_s": session_steps * parts.global_batch / max(wall, 1e-9),
        "resumed_exactly": s.start.exact, "num_classes": parts.num_classes, "run": str(parts.out),
    }


def _finish(s: _Session, summary: Dict[str, Any]) -> None:
    """Main rank, finished run: the export (finite weights only; with evaluation while training,
    the best encoder by the benchmark's headline metric), the plot and summary.json."""
    from ..formats.export import save_export

    parts, state = s.parts, s.state
    if s.evaluator.enabled:  # a last evaluation, export-last/, and export/ = the best one
        export_dir = s.evaluator.finish(unwrap(parts.model), state.step, state.samples / parts.samples_per_epoch,
                                        log.info)
        summary["eval"] = s.evaluator.summary()
    else:
        export_dir = save_export(unwrap(parts.model), parts.out / layout.EXPORT_DIR, parts.image_size, parts.mean,
                                 parts.std, parts.embed_dim, extra={"step": state.step, "samples": state.samples,
                                                                    "num_classes": parts.num_classes,
                                                                    "run": str(parts.out)})
    write_class_names(Path(export_dir), parts.source)  # classes.json beside config.json (names only)
    summary["export"] = str(export_dir)
    plot = plot_loss(parts.out)
    summary["loss_plot"] = str(plot) if plot else None
    write_json(parts.out / layout.SUMMARY_FILE, summary)


def _start_session(parts: RunParts, start: Start, hooks: RunHooks, loss_hook: Optional[LossHook]) -> _Session:
    """The loader at the start's data position, the logger and the encoder record."""
    from ..formats.export import encoder_record

    cfg, ctx = parts.cfg, parts.ctx
    total_steps = start.total_steps(parts.global_batch)
    augment = build_augment(cfg.data, parts.image_size, parts.mean, parts.std)
    loader = parts.source.make_loader(start.position, augment, pin_memory=parts.device.type == "cuda")
    encoder = encoder_record(unwrap(parts.model), parts.image_size, parts.mean, parts.std,
                             {"num_classes": parts.num_classes, "run": str(parts.out),
                              "config": cfg.to_dict()["model"]})
    logger = RunLogger(parts.out, ctx.is_main, total_steps, start.state.step, cfg.train.tensorboard,
                       cfg.train.progress)
    millions = sum(p.numel() for p in parts.backbone.parameters()) / 1e6
    logger.write(f"training {encoder['arch']['type']} ({millions:.2f}M "
                 f"params, {parts.image_size}px, embed {parts.embed_dim}) on {parts.source.describe()}, "
                 f"{parts.num_classes} classes; {ctx.world_size} rank(s) on {parts.device.type}, global batch "
                 f"{parts.global_batch}, {total_steps} steps "
                 f"({start.schedule.total_samples / parts.samples_per_epoch:.2f} "
                 f"epochs of {parts.samples_per_epoch} samples)")
    evaluator = EvalHook(cfg, ctx, parts.out, parts.samples_per_epoch, parts.image_size, parts.mean, parts.std,
                         parts.embed_dim, start.state.step)
    parts.model.train()
    parts.head.train()
    resumed = layout.step_of(start.checkpoint) if start.checkpoint is not None else None
    return _Session(parts, start, iter(loader), logger, encoder, hooks, evaluator, loss_hook, confirmed=resumed)


def train(cfg: Config, data: Optional[str], labels: Optional[str], output: str, resume: bool = False,
          loss_hook: Optional[LossHook] = None, ctx: Optional[DistContext] = None,
          allow_changed_inputs: bool = False, hooks: Optional[RunHooks] = None) -> Dict[str, Any]:
    """Train an encoder as ``cfg`` says; return a summary dict (also written to RUN/summary.json).

    The run folder is locked for the whole session (a second trainer on it is refused with
    ``unicom.cli.run_lock.FolderLockedError``). ``allow_changed_inputs`` lets ``--resume`` continue
    on inputs that differ from the run's ``inputs.json``. ``loss_hook(step, micro, loss) -> loss``
    lets tests inject faults (e.g. a NaN loss); ``hooks`` (``RunHooks``) extends the run.
    ``data`` / ``labels`` are the shards and their ``make cluster`` labels (None for a labelled
    ``cfg.run.dataset``); the source itself is described by ``cfg.run`` (``sources.py``).
    """
    ctx = ctx or init_distributed(cfg.train.device)
    out = Path(output)
    cfg.run.data, cfg.run.labels, cfg.run.output = _opt_str(data), _opt_str(labels), str(output)
    from ..data.decode import using_policy
    from .config import decode_policy

    with lock_output_dir(out, "unicom-train"), using_policy(decode_policy(cfg)):
        parts, start = _setup(cfg, out, resume, allow_changed_inputs, ctx)
        hooks = hooks or RunHooks()
        hooks.on_run_start(parts, start)
        session = _start_session(parts, start, hooks, loss_hook)
        total_steps = start.total_steps(parts.global_batch)
        t_start = time.perf_counter()
        try:
            finished, session_steps = _run_steps(session, total_steps)
        finally:
            del session.data_iter
            session.logger.close()
        summary = _summary(session, finished, session_steps, total_steps, time.perf_counter() - t_start,
                           start.skips.all_reduce())
        if finished and ctx.is_main:
            _finish(session, summary)
        barrier()
    return summary
