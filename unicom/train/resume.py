"""Where a session starts: a fresh run, or the newest readable checkpoint of the run folder.

``--resume`` restores the backbone, its optimizer state, the centres, the loss scale, the
counters, the RNG states, the head's sampling state and the data position (docs/training.md,
"Checkpoints and resume"). The optimizer's hyper-parameters and the LR schedule's shape come
from the config, so an override given on resume (a lower ``optim.lr``) takes effect; the run's
length stays in samples. A checkpoint that cannot be read (a truncated copy) is reported by
name, and the previous complete step is used instead.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from ..data.wds_reader import SkipCounter
from ..formats import checkpoint as layout
from ..runtime.device import seed_everything
from ..runtime.distributed import all_gather_object
from . import checkpoint as ckpt
from .model import unwrap
from .schedule import LRSchedule
from .setup import RunParts, build_schedule

log = logging.getLogger(__name__)


class CheckpointUnreadableError(ValueError):
    """No checkpoint of the run could be read (each failure was reported)."""


@dataclass
class RunState:
    """The counters of a run, saved in every checkpoint."""

    step: int = 0
    samples: int = 0                 # global samples consumed (good ones)
    nonfinite_steps: int = 0         # steps skipped for a non-finite loss / gradient
    overflow_steps: int = 0          # fp16 steps skipped for a gradient overflow
    consecutive_nonfinite: int = 0
    last_loss: float = float("nan")
    first_loss: Optional[float] = None

    @classmethod
    def from_saved(cls, saved: Dict[str, Any]) -> "RunState":
        """From ``state.json`` (where a NaN loss was written as null)."""
        last = saved.get("last_loss")
        return cls(step=saved["step"], samples=saved["samples"], nonfinite_steps=saved.get("nonfinite_steps", 0),
                   overflow_steps=saved.get("overflow_steps", 0),
                   consecutive_nonfinite=saved.get("consecutive_nonfinite", 0),
                   last_loss=float("nan") if last is None else last, first_loss=saved.get("first_loss"))


@dataclass
class Start:
    """Where this run (a fresh start or a resume) begins."""

    state: RunState
    position: Any                     # the source's position (sources.py)
    schedule: LRSchedule
    plan_batch: int                   # the global batch the run's length was planned with
    exact: bool = True                # the data order continues exactly (same ranks / loader workers)
    checkpoint: Optional[Path] = None
    skips: SkipCounter = field(default_factory=SkipCounter)

    def total_steps(self, global_batch: int) -> int:
        """The step count at which the run ends."""
        left = max(0, self.schedule.total_samples - self.state.samples)
        return self.state.step + int(math.ceil(left / global_batch))


def fresh_start(parts: RunParts) -> Start:
    """A run from step 0 (per-rank RNG streams for drop-path)."""
    cfg, ctx = parts.cfg, parts.ctx
    schedule = build_schedule(cfg, parts.samples_per_epoch, parts.global_batch)
    seed_everything(cfg.train.seed + 1 + ctx.rank)
    return Start(RunState(), parts.source.new_position(), schedule, parts.global_batch)


def resume_candidates(run_dir: Path) -> List[Path]:
    """The step folders to try, in order: the one ``latest`` names, then the older complete ones
    (``latest`` naming an incomplete step is reported, and the complete ones are tried)."""
    try:
        latest = layout.find_latest(run_dir)
    except FileNotFoundError as exn:
        log.warning("%s; trying the complete checkpoints before it", exn)
        return layout.complete_steps_before(run_dir, 1 << 62)
    if latest is None:
        return []
    return [latest] + layout.complete_steps_before(run_dir, layout.step_of(latest))


def load_readable(parts: RunParts, candidates: List[Path]) -> Tuple[Path, Dict[str, Any]]:
    """Load the first candidate that every rank can read; warn about each one that fails."""
    for path in candidates:
        error = None
        try:
            saved = ckpt.load_checkpoint(path, unwrap(parts.model), parts.head, parts.opt_backbone,
                                         parts.opt_head, parts.device)
        except layout.RefusedPickleError:
            raise
        except (ckpt.DamagedFileError, OSError, ValueError, KeyError) as exn:
            error = str(exn)
        errors = [e for e in all_gather_object(error) if e]
        if not errors:
            return path, saved
        if parts.ctx.is_main:
            log.warning("cannot resume from %s: %s; falling back to the previous complete checkpoint", path.name,
                        errors[0])
    raise CheckpointUnreadableError(f"no checkpoint in {layout.checkpoint_root(parts.out)} could be read "
                                    "(each failure is reported above); start a new run with another --output")


def resume_start(parts: RunParts, candidates: List[Path]) -> Start:
    """Restore the newest readable checkpoint (see the module docstring)."""
    ctx = parts.ctx
    path, saved = load_readable(parts, candidates)
    plan_batch = saved.get("plan_global_batch", saved.get("global_batch", parts.global_batch))
    schedule = _refit_schedule(parts, LRSchedule.from_state_dict(saved["schedule"]), plan_batch)
    parts.scaler.load_state_dict(saved.get("scaler"))
    state = RunState.from_saved(saved)
    position, exact = parts.source.restore_position(saved["data"])
    _restore_rngs(parts, saved["ranks"], exact, state.step)
    start = Start(state, position, schedule, plan_batch, exact, path)
    if ctx.is_main:
        start.skips.update(saved.get("skipped", {}))
        how = "exactly" if exact else "on another number of ranks or loader workers (data order re-laid out)"
        log.info("resumed from %s (step %d, %d samples) %s", path, state.step, state.samples, how)
    return start


def _refit_schedule(parts: RunParts, saved: LRSchedule, plan_batch: int) -> LRSchedule:
    """The config's schedule for the run's planned batch; changes against the saved one are noted."""
    schedule = build_schedule(parts.cfg, parts.samples_per_epoch, plan_batch)
    if schedule != saved and parts.ctx.is_main:
        if schedule.total_samples != saved.total_samples:
            log.info("the run's length changes from %d to %d samples (data.epochs / train.max_steps differ from "
                     "the checkpoint's)", saved.total_samples, schedule.total_samples)
        changed = [f"{k}: {v!r} -> {getattr(schedule, k)!r}" for k, v in saved.state_dict().items()
                   if k != "total_samples" and getattr(schedule, k) != v]
        if changed:
            log.info("the LR schedule changes on resume: %s", "; ".join(changed))
    return schedule


def _restore_rngs(parts: RunParts, ranks: List[Dict[str, Any]], exact: bool, step: int) -> None:
    """Exact resume: every rank's own RNG states. Otherwise: re-seeded from (seed, step, rank)."""
    ctx, head = parts.ctx, parts.head
    if exact:
        mine = ranks[ctx.rank]
        ckpt.restore_rng(mine["rng"], parts.device)
        head_rng = mine.get("head_rng")
    else:
        seed_everything(parts.cfg.train.seed + 1 + ctx.rank + 7919 * step)
        head_rng = ranks[0].get("head_rng")
    if head_rng is not None and hasattr(head, "set_rng_state"):
        head.set_rng_state(ckpt.from_jsonable(head_rng))
