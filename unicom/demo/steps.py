"""The demo's steps, each one a user-facing command run as a subprocess."""
from __future__ import annotations

import shlex
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Dict, List, Sequence

# One lock for the terminal and the log: steps of parallel lanes write whole lines, never halves.
_OUTPUT_LOCK = threading.Lock()


def run_step(title: str, argv: Sequence[str], cwd: Path, log: Path, timings: Dict[str, float],
             tag: str = "") -> None:
    """Run one command, echo it, stream its output to the terminal and to ``log`` (each line
    prefixed by ``tag`` when steps run side by side), and record its wall time (seconds) under
    ``title``. A failing step stops the demo with its command."""
    prefix = f"[{tag}] " if tag else ""
    header = f"\n{prefix}==> {title}\n{prefix}$ {shlex.join(argv)}\n"
    t0 = time.time()
    log.parent.mkdir(parents=True, exist_ok=True)
    with _OUTPUT_LOCK:
        sys.stdout.write(header)
        sys.stdout.flush()
        with open(log, "a") as lf:
            lf.write(header)
    proc = subprocess.Popen(list(argv), cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    for line in proc.stdout:
        with _OUTPUT_LOCK:
            sys.stdout.write(prefix + line)
            with open(log, "a") as lf:
                lf.write(prefix + line)
    rc = proc.wait()
    timings[title] = time.time() - t0
    if rc != 0:
        raise SystemExit(f"demo step '{title}' failed (exit {rc}): {shlex.join(argv)}; see {log}")


def run_lanes(lanes: Sequence[Callable[[], None]]) -> None:
    """Run each lane (a function running its steps in order) in its own thread and wait for all.

    The demo's steps run one CPU thread each (``thread_env``), so on a 2-core machine two
    independent chains of steps side by side take about the time of the longer one. The first
    lane's failure is raised once every lane has stopped."""
    errors: List[BaseException] = []

    def guarded(lane: Callable[[], None]) -> None:
        try:
            lane()
        except BaseException as exn:  # noqa: BLE001 (re-raised in the main thread below)
            errors.append(exn)

    threads = [threading.Thread(target=guarded, args=(lane,)) for lane in lanes]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


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
