"""What a run reports: ``RUN/log.csv`` (a row per logged step), a tqdm bar with loss, LR and
images/s, optional TensorBoard scalars, and ``RUN/loss.png`` at the end (the loss and LR curves
beside the throughput). Only rank 0 reports; messages go to ``logging``.

On resume, rows of log.csv past the resumed step (written after the checkpoint by the
interrupted run) are dropped, so the file reads as one uninterrupted run.
"""
from __future__ import annotations

import csv
import io
import logging
import math
from pathlib import Path
from typing import Any, Dict, List, Optional

from ..formats.atomic_io import write_bytes, write_text
from ..formats.checkpoint import LOG_FILE, PLOT_FILE, TENSORBOARD_DIR

log = logging.getLogger(__name__)

COLUMNS = ["step", "epoch", "samples", "loss", "loss_avg", "lr", "lr_head", "grad_norm", "images_per_s",
           "step_time_s", "data_time_s", "head_share", "loss_scale", "skipped_steps"]


def read_log(run_dir) -> List[Dict[str, Any]]:
    """The rows of ``RUN/log.csv`` as dicts of floats (empty cells become None)."""
    path = Path(run_dir) / LOG_FILE
    if not path.is_file():
        return []
    rows = []
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            rows.append({k: (float(v) if v not in ("", None) else None) for k, v in row.items()})
    return rows


class RunLogger:
    """log.csv + tqdm + TensorBoard on the main rank; a silent no-op elsewhere."""

    def __init__(self, run_dir, enabled: bool, total_steps: int, start_step: int = 0, tensorboard: bool = False,
                 progress: bool = True):
        self.enabled = enabled
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOG_FILE
        self.bar = None
        self.tb = None
        if not enabled:
            return
        self._truncate(start_step)
        new = not self.path.is_file() or self.path.stat().st_size == 0
        self.file = open(self.path, "a", newline="")
        self.writer = csv.DictWriter(self.file, fieldnames=COLUMNS, extrasaction="ignore")
        if new:
            self.writer.writeheader()
            self.file.flush()
        if progress:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total_steps, initial=start_step, desc="train", unit="step", dynamic_ncols=True)
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(self.run_dir / TENSORBOARD_DIR), purge_step=start_step + 1)
            except ImportError:
                log.warning("TensorBoard logging asked for but the tensorboard package is missing: "
                            "pip install 'unicom-toolkit[tensorboard]'; continuing without it")

    def _truncate(self, start_step: int) -> None:
        if not self.path.is_file():
            return
        with open(self.path, newline="") as f:
            rows = list(csv.DictReader(f))
        keep = [r for r in rows if r.get("step") and float(r["step"]) <= start_step]
        if len(keep) == len(rows):
            return
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=COLUMNS, extrasaction="ignore")
        w.writeheader()
        w.writerows(keep)
        write_text(self.path, buf.getvalue())

    def step(self, n: int = 1, postfix: Optional[Dict[str, Any]] = None) -> None:
        """Advance the progress bar (every step)."""
        if self.bar is not None:
            self.bar.update(n)
            if postfix:
                self.bar.set_postfix(postfix, refresh=False)

    def log(self, row: Dict[str, Any]) -> None:
        """Append a row to log.csv (and TensorBoard)."""
        if not self.enabled:
            return
        self.writer.writerow({k: _fmt(row.get(k)) for k in COLUMNS})
        self.file.flush()
        if self.tb is not None:
            step = int(row["step"])
            for k in ("loss", "loss_avg", "lr", "lr_head", "grad_norm", "images_per_s", "head_share", "loss_scale"):
                v = row.get(k)
                if v is not None and math.isfinite(float(v)):
                    self.tb.add_scalar(f"train/{k}", float(v), step)

    def write(self, message: str, level: int = logging.INFO) -> None:
        """Log a message (main rank only); the CLI routes log records around the progress bar."""
        if self.enabled:
            log.log(level, message)

    def close(self) -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.close()
        if self.tb is not None:
            self.tb.close()
        self.file.close()


def _fmt(v: Any) -> Any:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.6g}" if math.isfinite(v) else str(v)
    return v


def plot_loss(run_dir, out: Optional[Path] = None) -> Optional[Path]:
    """Draw ``RUN/loss.png``: the loss (per row and its running mean) and the LR against the step
    on the left, the throughput (images/s, all ranks) on the right."""
    rows = read_log(run_dir)
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [r["step"] for r in rows]
    fig, (ax, ax_speed) = plt.subplots(1, 2, figsize=(12, 4), dpi=110, gridspec_kw={"width_ratios": [3, 2]})
    ax.plot(steps, [r["loss"] for r in rows], lw=0.8, alpha=0.5, label="loss (step)")
    ax.plot(steps, [r["loss_avg"] for r in rows], lw=1.6, label="loss (mean since last row)")
    ax.set_xlabel("step")
    ax.set_ylabel("margin softmax loss")
    ax.grid(alpha=0.3)
    ax2 = ax.twinx()
    ax2.plot(steps, [r["lr"] for r in rows], color="tab:green", lw=1.0, ls="--", label="LR (backbone)")
    ax2.set_ylabel("learning rate")
    lines = ax.get_legend_handles_labels()
    lines2 = ax2.get_legend_handles_labels()
    ax.legend(lines[0] + lines2[0], lines[1] + lines2[1], loc="upper right", fontsize=8)
    ax.set_title(f"training loss: {Path(run_dir).name}")
    ax_speed.plot(steps, [r["images_per_s"] for r in rows], color="tab:purple", lw=1.2)
    ax_speed.set_xlabel("step")
    ax_speed.set_ylabel("images/s (all ranks, mean since last row)")
    ax_speed.set_ylim(bottom=0)
    ax_speed.grid(alpha=0.3)
    ax_speed.set_title("throughput")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    out = Path(out) if out else Path(run_dir) / PLOT_FILE
    write_bytes(out, buf.getvalue())
    return out
