"""Evaluation while training (``--eval-every N`` = ``eval.every``, in epochs).

Every N epochs, and at the end, rank 0 exports the current encoder to ``RUN/export-last/`` and
runs the benchmark's own test protocol on it with the very code of ``unicom-eval``:
``python -m retrieval_eval.cli --model RUN/export-last --benchmark B --data-root R --output
RUN/eval/step_N``, as a subprocess (``unicom/`` never imports ``retrieval_eval/``). The other
ranks wait at a barrier. The metrics are read back from that folder's ``results.json``
(``unicom-eval``'s output layout), printed, appended to
``RUN/eval.csv`` (one row per evaluation: step, epoch, then the benchmark's metrics in its
order, in percent for fractions as ``unicom-eval`` prints them) and drawn into
``RUN/eval.png``. ``RUN/export/`` holds the best encoder so far by the benchmark's headline
metric (``R@1`` for labelled benchmarks, ``mAP@100`` for gldv2, ``mAP_medium`` for
revisitop), ``RUN/export-last/`` the last one; ``RUN/eval/best.json`` records the best.

A failed evaluation (missing test split, crash) is reported and training goes on; the row is
not written. On resume, rows after the resumed step are dropped, as for log.csv.
"""
from __future__ import annotations

import csv
import io
import json
import logging
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

from ..datasets.registry import dataset_spec
from ..formats.atomic_io import write_bytes, write_json, write_text
from ..runtime.distributed import barrier

log = logging.getLogger(__name__)
EVAL_CSV = "eval.csv"
EVAL_PNG = "eval.png"
EVAL_RESULTS = "results.json"  # what unicom-eval writes into its --output folder (retrieval_eval/outputs.py)
NO_TEST_SPLIT = ("shards",)


def headline_metric(benchmark: str) -> str:
    """The metric that picks the best encoder: R@1, or mAP@100 (gldv2), mAP_medium (revisitop),
    as ``unicom.datasets.registry`` declares for the benchmark (R@1 for a name it does not know)."""
    spec = dataset_spec(benchmark)
    return spec.headline if spec is not None else "R@1"


def _repo_root() -> str:
    # retrieval_eval sits beside unicom in the source tree (and in site-packages when installed)
    return str(Path(__file__).resolve().parents[2])


class EvalHook:
    """Runs the evaluation subprocess and keeps eval.csv, eval.png, export/ and export-last/."""

    def __init__(self, cfg, ctx, run_dir, samples_per_epoch: int, image_size: int, mean, std, embed_dim: int,
                 start_step: int = 0):
        self.cfg, self.ctx, self.out = cfg, ctx, Path(run_dir)
        self.every_samples = cfg.eval.every * samples_per_epoch
        self.enabled = self.every_samples > 0
        self.export_args = (image_size, tuple(mean), tuple(std), embed_dim)
        self.benchmark = cfg.eval.benchmark or (cfg.run.dataset if cfg.run.dataset not in NO_TEST_SPLIT else None)
        self.data_root = cfg.eval.data_root or cfg.run.data_root
        self.history: List[Dict[str, Any]] = []
        self.best: Optional[Dict[str, Any]] = None
        if not self.enabled:
            return
        if not self.benchmark:
            raise ValueError("--eval-every needs --benchmark NAME (and --data-root): --dataset shards has no test "
                             "split")
        self.metric = headline_metric(self.benchmark)
        if ctx.is_main:
            self._load_history(start_step)

    # ---- state ------------------------------------------------------------------------------
    def _load_history(self, start_step: int) -> None:
        path = self.out / EVAL_CSV
        if path.is_file():
            with open(path, newline="") as f:
                rows = [r for r in csv.DictReader(f) if r.get("step") and int(float(r["step"])) <= start_step]
            self.history = [{k: _num(v) for k, v in r.items()} for r in rows]
            self._write_csv()
        best = self.out / "eval" / "best.json"
        if best.is_file():
            b = json.loads(best.read_text())
            self.best = b if int(b.get("step", 0)) <= start_step else None

    def due(self, samples: int, global_batch: int) -> bool:
        """True when the step that brought the run to ``samples`` crossed an evaluation point."""
        if not self.enabled:
            return False
        return math.floor(samples / self.every_samples) > math.floor((samples - global_batch) / self.every_samples)

    # ---- one evaluation -----------------------------------------------------------------------
    def _export(self, model, directory: Path, step: int) -> Path:
        from ..formats.export import save_export

        size, mean, std, dim = self.export_args
        return save_export(model, directory, size, mean, std, dim, extra={"step": step, "run": str(self.out)})

    def results_dir(self, step: int) -> Path:
        """unicom-eval's --output folder for the evaluation at ``step``."""
        return self.out / "eval" / f"step_{step}"

    def command(self, step: int) -> List[str]:
        """The ``unicom-eval`` command line for the encoder in export-last/."""
        c = self.cfg
        device = c.eval.device or (str(self.ctx.device) if self.ctx.device.type == "cuda" else "cpu")
        cmd = [sys.executable, "-m", "retrieval_eval.cli", "--model", str(self.out / "export-last"),
               "--benchmark", self.benchmark, "--output", str(self.results_dir(step)),
               "--batch-size", str(c.eval.batch_size), "--workers", str(c.eval.workers),
               "--device", device, "--precision", c.train.precision, "--no-progress"]
        if self.data_root:
            cmd += ["--data-root", str(self.data_root)]
        return cmd

    def _evaluate(self, step: int, epoch: float, write: Callable[[str], None]) -> Optional[Dict[str, Any]]:
        cmd = self.command(step)
        env = dict(os.environ)
        paths = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
        env["PYTHONPATH"] = os.pathsep.join([_repo_root(), *paths])
        write(f"evaluating step {step} (epoch {epoch:.2f}) on {self.benchmark}: {' '.join(cmd[1:])}")
        timeout = self.cfg.eval.timeout_s or None
        try:
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            write(f"evaluation at step {step} timed out after {timeout:.0f} s (eval.timeout_s); training goes on")
            return None
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
            write(f"evaluation at step {step} failed (exit {proc.returncode}): {' | '.join(tail)}; training goes on")
            return None
        results = json.loads((self.results_dir(step) / EVAL_RESULTS).read_text())
        metrics = {k: v for k, v in results.get("metrics", {}).items() if isinstance(v, (int, float))}
        return {"step": step, "epoch": round(epoch, 4), **metrics}

    def _record(self, model, row: Dict[str, Any], write: Callable[[str], None]) -> None:
        self.history.append(row)
        self._write_csv()
        self._plot()
        value = row.get(self.metric)
        shown = ", ".join(f"{k} {100 * v:.2f}" if isinstance(v, float) and k[:7] != "queries" else f"{k} {v}"
                          for k, v in row.items() if k not in ("step", "epoch"))
        write(f"eval step {row['step']} epoch {row['epoch']}: {shown}")
        if value is not None and math.isfinite(value) and (self.best is None or value > self.best["value"]):
            self.best = {"step": row["step"], "epoch": row["epoch"], "metric": self.metric, "value": value,
                         "benchmark": self.benchmark}
            self._export(model, self.out / "export", int(row["step"]))
            write_json(self.out / "eval" / "best.json", self.best)
            write(f"new best {self.metric} {100 * value:.2f} at step {row['step']}: encoder written to "
                  f"{self.out / 'export'}")

    def run(self, model, step: int, epoch: float, write: Callable[[str], None] = print) -> None:
        """Evaluate now (every rank calls this; rank 0 works, the others wait)."""
        if self.ctx.is_main:
            self._export(model, self.out / "export-last", step)
            row = self._evaluate(step, epoch, write)
            if row is not None:
                self._record(model, row, write)
        barrier()

    def finish(self, model, step: int, epoch: float, write: Callable[[str], None] = print) -> Path:
        """At the end of the run (rank 0 only): export-last/, a last evaluation unless this step
        has one, and export/ = the best encoder (the last one when no evaluation succeeded)."""
        self._export(model, self.out / "export-last", step)
        if not any(int(r["step"]) == step for r in self.history):
            row = self._evaluate(step, epoch, write)
            if row is not None:
                self._record(model, row, write)
        if self.best is None or not (self.out / "export" / "config.json").is_file():
            self._export(model, self.out / "export", step)
        return self.out / "export"

    def summary(self) -> Dict[str, Any]:
        return {"benchmark": self.benchmark, "metric": self.metric, "best": self.best, "evaluations": len(self.history)}

    # ---- files --------------------------------------------------------------------------------
    def _columns(self) -> List[str]:
        cols: List[str] = ["step", "epoch"]
        for r in self.history:
            cols += [k for k in r if k not in cols]
        return cols

    def _write_csv(self) -> None:
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=self._columns(), extrasaction="ignore")
        w.writeheader()
        for r in self.history:
            w.writerow({k: ("" if v is None else (f"{v:.6g}" if isinstance(v, float) else v)) for k, v in r.items()})
        write_text(self.out / EVAL_CSV, buf.getvalue())

    def _plot(self) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        keys = [k for k in self._columns()[2:] if not k.startswith("queries")]
        epochs = [r["epoch"] for r in self.history]
        fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
        for k in keys:
            ys = [100 * r[k] if r.get(k) is not None else float("nan") for r in self.history]
            ax.plot(epochs, ys, marker="o", lw=2.0 if k == self.metric else 1.0, label=k)
        ax.set_xlabel("epoch")
        ax.set_ylabel("metric (%)")
        ax.set_title(f"{self.benchmark} while training: {self.out.name} (best {self.metric} in export/)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, ncol=2)
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
        plt.close(fig)
        write_bytes(self.out / EVAL_PNG, buf.getvalue())


def _num(v: Any) -> Any:
    try:
        return float(v) if v not in ("", None) else None
    except ValueError:
        return v
