"""Revisited Oxford/Paris + 1M distractors: the cost of ranking the whole database (a script).

    python benchmarks/distractor_search.py                 # N = 12.5k … 100k, projected to 1M
    python benchmarks/distractor_search.py --quick         # N = 5k, 10k, 20k
    python benchmarks/distractor_search.py --device cuda   # GPU rows (torch sort, faiss GPU index)

The revisitop protocol ranks every database image for each of the 70 queries (the official
``compute_map`` takes the full ranking), so with R1M the search is 70 queries × (5k + 1M)
images. Each method ranks a random L2-normalised database of N vectors (D = 512, ViT-B) for 70
queries, in a fresh child process, and reports wall seconds and the peak resident memory the
search added to the process (``ru_maxrss`` minus the resident set after the data was made):

* ``numpy``: ``Q @ DB.T`` (BLAS sgemm) and ``np.argsort`` of the full rows, as the official
  revisitop evaluation does;
* ``retrieval_eval``: ``retrieval_eval.knn.iter_search`` with k = N, what ``unicom-eval``
  runs for revisitop (exact faiss ``IndexFlatIP``, query chunks of ~256 MiB of results, the
  deterministic tie rule);
* with ``--device cuda``: ``torch`` (matmul + ``torch.sort`` on the GPU) and
  ``retrieval_eval`` with the search device set to the GPU (faiss' GPU k-selection stops at
  k = 2048, so a full ranking runs on the CPU index; the row says where it ran).

Every method must return the same ranking as numpy (checked on the first query). The 1M figure
is a projection: a least-squares fit over the sizes measured (seconds = a + b·N·log N, memory
= c + e·N), evaluated at N = 1M; the database itself (1M × 512 × 4 B = 2 GiB) comes on top.
``--output`` writes the table as JSON and a PNG plot.
"""
from __future__ import annotations

import argparse
import math
import multiprocessing as mp
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

NUM_QUERIES = 70  # revisitop: 70 queries per dataset
TARGET = 1_000_000


def _rss_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def _data(n: int, d: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    q = rng.standard_normal((NUM_QUERIES, d), dtype=np.float32)
    db = rng.standard_normal((n, d), dtype=np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    db /= np.linalg.norm(db, axis=1, keepdims=True)
    return q, db


def _run(method: str, n: int, d: int, device: str, out) -> None:
    q, db = _data(n, d)
    if method == "retrieval_eval":
        from retrieval_eval import knn

        knn._faiss()  # the import is not part of the search
    base = _rss_bytes()
    where = "cpu"
    t0 = time.perf_counter()
    if method == "numpy":
        first = np.argsort(-(q @ db.T), axis=1, kind="stable")[0]
    elif method == "torch":
        import torch

        dev = torch.device(device)
        tq, tdb = torch.from_numpy(q).to(dev), torch.from_numpy(db).to(dev)
        torch.cuda.synchronize(dev)
        t0 = time.perf_counter()
        first = torch.sort(tq @ tdb.T, dim=1, descending=True, stable=True).indices[0].cpu().numpy()
        torch.cuda.synchronize(dev)
        where = str(dev)
    else:
        searcher = knn.ExactSearcher(db, device=device, normalized=True)
        where = searcher.device_for(n)
        first = None
        for start, _, ids in knn.iter_search(q, None, n, searcher=searcher):
            if start == 0:
                first = ids[0]
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    reference = np.argsort(-(q[:1] @ db.T), axis=1, kind="stable")[0]
    out.put({"method": method, "n": n, "seconds": seconds, "extra_bytes": max(0, peak - base), "device": where,
             "same_ranking": bool(np.array_equal(np.asarray(first)[:1000], reference[:1000]))})


def measure(method: str, n: int, d: int, device: str) -> dict:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_run, args=(method, n, d, device, queue))
    proc.start()
    result = queue.get()
    proc.join()
    return result


def project(rows, d: int):
    """1M projection per method from a least-squares fit over the sizes measured: seconds =
    a + b·N·log N, extra memory = c + e·N (the constant holds the imports and thread buffers)."""
    out = []
    for method in dict.fromkeys(r["method"] for r in rows):
        mine = sorted((r for r in rows if r["method"] == method), key=lambda r: r["n"])
        n = np.array([r["n"] for r in mine], float)
        fit_t = np.polyfit(n * np.log(n), [r["seconds"] for r in mine], 1) if len(mine) > 1 else None
        fit_m = np.polyfit(n, [r["extra_bytes"] for r in mine], 1) if len(mine) > 1 else None
        scale = TARGET / n[-1]
        seconds = (np.polyval(fit_t, TARGET * math.log(TARGET)) if fit_t is not None
                   else mine[-1]["seconds"] * scale * math.log(TARGET) / math.log(n[-1]))
        extra = np.polyval(fit_m, TARGET) if fit_m is not None else mine[-1]["extra_bytes"] * scale
        out.append({"method": method, "n": TARGET, "seconds": float(seconds), "extra_bytes": float(max(extra, 0)),
                    "database_bytes": TARGET * d * 4, "device": mine[-1]["device"],
                    "projected_from": [int(x) for x in n]})
    return out


def table(rows, projected) -> str:
    lines = [f"{'method':<15} {'device':<7} {'N':>9} {'seconds':>9} {'extra MiB':>10} {'same':>5}",
             "-" * 60]
    for r in rows:
        lines.append(f"{r['method']:<15} {r['device']:<7} {r['n']:>9,} {r['seconds']:>9.2f} "
                     f"{r['extra_bytes'] / 2**20:>10.0f} {str(r['same_ranking']):>5}")
    for p in projected:
        lines.append(f"{p['method']:<15} {p['device']:<7} {p['n']:>9,} {p['seconds']:>9.1f} "
                     f"{p['extra_bytes'] / 2**20:>10.0f}   (projected: fit over N = {p['projected_from'][0]:,}…"
                     f"{p['projected_from'][-1]:,}; "
                     f"+ {p['database_bytes'] / 2**30:.1f} GiB database)")
    return "\n".join(lines)


def plot(rows, projected, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=100)
    for i, method in enumerate(dict.fromkeys(r["method"] for r in rows)):
        pts = sorted((r["n"], r["seconds"]) for r in rows if r["method"] == method)
        line, = ax.plot(*zip(*pts), marker="o", label=method)
        p = next(x for x in projected if x["method"] == method)
        ax.plot([pts[-1][0], TARGET], [pts[-1][1], p["seconds"]], ls="--", color=line.get_color())
        ax.annotate(f"{method}: {p['seconds']:.0f} s (projected)", (TARGET, p["seconds"]), fontsize=8, ha="right",
                    va="bottom" if i % 2 == 0 else "top", color=line.get_color())
    ax.set(xscale="log", yscale="log", xlabel="database size N (images)", ylabel="seconds for 70 queries",
           title=f"Full ranking of 70 queries, D = 512 ({os.cpu_count()} CPU cores)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    from unicom.formats.atomic_io import atomic_write

    with atomic_write(path) as f:
        fig.savefig(f, format="png")
    plt.close(fig)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[12_500, 25_000, 50_000, 100_000],
                   help="database sizes N to measure")
    p.add_argument("--quick", action="store_true", help="N = 5k, 10k, 20k")
    p.add_argument("--dim", type=int, default=512, help="embedding dimension D")
    p.add_argument("--device", default="cpu", help="cpu, or cuda / cuda:N for the GPU rows")
    p.add_argument("--output", default="runs/bench/distractor_search", help="folder for the JSON and the PNG")
    args = p.parse_args(argv)
    sizes = [5_000, 10_000, 20_000] if args.quick else args.sizes
    methods = ["numpy", "retrieval_eval"] + (["torch"] if args.device.startswith("cuda") else [])
    rows = [measure(m, n, args.dim, args.device) for n in sizes for m in methods]
    projected = project(rows, args.dim)
    print(f"70 queries, D = {args.dim}, {os.cpu_count()} CPU cores, load average {os.getloadavg()[0]:.1f}")
    print(table(rows, projected))
    out = Path(args.output)
    from unicom.formats.atomic_io import write_json

    write_json(out / "distractor_search.json", {"rows": rows, "projected": projected})
    plot(rows, projected, out / "distractor_search.png")
    print(f"written: {out / 'distractor_search.json'}, {out / 'distractor_search.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
