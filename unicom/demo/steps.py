"""The demo's steps, each one a user-facing command run as a subprocess."""
from __future__ import annotations

import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Sequence


def run_step(title: str, argv: Sequence[str], cwd: Path, log: Path, timings: Dict[str, float]) -> None:
    """Run one command, echo it, stream its output to the terminal and to ``log``, and record
    its wall time (seconds) under ``title``. A failing step stops the demo with its command."""
    print(f"\n==> {title}\n$ {shlex.join(argv)}", flush=True)
    t0 = time.time()
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a") as lf:
        lf.write(f"\n==> {title}\n$ {shlex.join(argv)}\n")
        lf.flush()
        proc = subprocess.Popen(list(argv), cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert proc.stdout is not None
        for line in proc.stdout:
            sys.stdout.write(line)
            lf.write(line)
        rc = proc.wait()
    timings[title] = time.time() - t0
    if rc != 0:
        raise SystemExit(f"demo step '{title}' failed (exit {rc}): {shlex.join(argv)}; see {log}")


def make_argv(make: str, target: str, variables: Dict[str, str]) -> List[str]:
    """``make TARGET VAR=value …`` as an argv list (``make`` may hold flags, e.g. 'make -s')."""
    return shlex.split(make) + [target] + [f"{k}={v}" for k, v in variables.items()]


def command(script: str, module: str) -> List[str]:
    """A console script of this interpreter's environment (``unicom-eval``), or ``python -m module``
    where the package is not installed with its scripts."""
    path = Path(sys.executable).parent / script
    return [str(path)] if path.exists() else [sys.executable, "-m", module]


def supports_flag(argv: Sequence[str], flag: str) -> bool:
    """Whether the command's ``--help`` lists ``flag`` (e.g. whether unicom-train takes ``--dataset``)."""
    proc = subprocess.run(list(argv) + ["--help"], capture_output=True, text=True)
    return proc.returncode == 0 and any(tok.strip(",[]") == flag for tok in proc.stdout.split())


def thread_env(threads: int) -> Dict[str, str]:
    """Environment that fixes the CPU thread count of torch (intra-op), OpenMP (faiss k-means and
    search) and the BLAS libraries. Float sums are reduced in a thread-count-dependent order, so
    pinning it makes a step's numbers the same on machines with different core counts."""
    n = str(max(1, int(threads)))
    return {"OMP_NUM_THREADS": n, "MKL_NUM_THREADS": n, "OPENBLAS_NUM_THREADS": n}
