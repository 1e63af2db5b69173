"""Index scale benchmark: Flat, HNSW, IVF-Flat, IVF-PQ and auto under 256 MB / 1 GB / 4 GB.

Writes N × D clustered synthetic unit vectors (default 1M × 512) as float16 feature shards, as
``unicom-embed`` does, plus 1,000 held-out queries from the same distribution and their exact
top-10. Then builds each index in its own process with the toolkit's streaming build
(``unicom.index``: train on a sample, add shard by shard in chunks read from disk), tunes
nprobe / efSearch to recall@10 ≥ 0.95 against exact search where the index has a knob, and
measures: build time, the build process's peak RSS, index bytes, recall@1 and @10 against
exact, and queries per second (one batched search, all threads). Prints a table, writes
``index_scale.json`` and ``index_scale.png``, and projects memory and build time to 100M
vectors with the measured per-vector costs.

  python benchmarks/index_scale.py                 # 1M × 512 (tens of minutes on 2 cores)
  python benchmarks/index_scale.py --quick         # 20k × 128, a minute
  python benchmarks/index_scale.py --n 200000 --only IVF-PQ auto@256MB
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from unicom.formats import features as ff  # noqa: E402
from unicom.formats.atomic_io import read_npy, write_json, write_npy  # noqa: E402
from unicom.index.memory import auto_nlist, format_bytes  # noqa: E402

SHARD_ROWS = 100_000
PROJECT_N = 100_000_000


def cases(n: int, d: int, budgets):
    """(name, spec, budget) of every index measured."""
    nlist = auto_nlist(n)
    m = max(8, d // 8)  # 64-byte codes at 512-d
    # HNSW last: its build is the longest, and the others are reported while it runs
    out = [("Flat", "Flat", None), ("IVF-Flat", f"IVF{nlist},Flat", None), ("IVF-PQ", f"IVF{nlist},PQ{m}", None)]
    out += [(f"auto@{b}", "auto", b) for b in budgets]
    return out + [("HNSW", "HNSW32", None)]


# --------------------------------------------------------------------------- data

def make_data(out: Path, n: int, d: int, queries: int, seed: int = 0) -> None:
    """Shards of clustered unit vectors (float16), queries.npy and gt.npy (exact top-10);
    kept when they exist for the same n and d."""
    fdir = out / "features"
    meta = ff.read_meta(fdir)
    if meta.get("n") == n and meta.get("dim") == d and (out / "gt.npy").is_file():
        return
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((max(64, n // 1000), d)).astype(np.float32)

    def draw(m: int) -> np.ndarray:
        # clusters of unequal spread, like image embeddings: some tight, some loose
        which = rng.integers(0, len(centres), m)
        spread = 0.5 + 0.5 * rng.random((m, 1), dtype=np.float32)
        x = centres[which] + spread * rng.standard_normal((m, d), dtype=np.float32)
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    t0 = time.time()
    for i, a in enumerate(range(0, n, SHARD_ROWS)):
        b = min(n, a + SHARD_ROWS)
        ff.write_shard(fdir, f"{i:05d}", draw(b - a), [f"{j:09d}" for j in range(a, b)], {})
    q = draw(queries)
    write_npy(out / "queries.npy", q)
    from unicom.index.source import features_source
    from unicom.index.tune import exact_neighbours

    src, _, _ = features_source(fdir)
    write_npy(out / "gt.npy", exact_neighbours(src, q, 10))
    ff.write_meta(fdir, {"n": n, "dim": d, "model": "synthetic", "embed_dim": d})
    print(f"data: {n:,} × {d} float16 in {fdir} + {queries} queries ({time.time() - t0:.0f}s)", flush=True)


# --------------------------------------------------------------------------- one index (child process)

def run_one(out: Path, name: str, spec: str, budget, ef_construction: int) -> dict:
    """Build, tune and measure one index; runs in its own process so that its peak RSS is its own."""
    import faiss

    from unicom.index.build import BuildOptions, build_streaming, plan_index
    from unicom.index.source import features_source
    from unicom.index.tune import current_search_params, measure, tune

    src, _, _ = features_source(out / "features")
    opts = BuildOptions(max_index_memory=budget, ef_construction=ef_construction)
    plan = plan_index(spec, src.n, src.d, opts)
    if plan.auto is not None:
        print(plan.auto.describe(), flush=True)
    index, timings = build_streaming(src, plan, opts, progress=False)
    path = out / "indexes" / f"{name.replace('@', '_')}.faiss"
    path.parent.mkdir(parents=True, exist_ok=True)
    faiss.write_index(index, str(path))
    q, gt = read_npy(out / "queries.npy"), read_npy(out / "gt.npy")
    _, reached, _ = tune(index, q, gt, 0.95)
    m = measure(index, q, gt)
    return {"name": name, "factory": plan.factory, "n": src.n, "d": src.d, **timings,
            "train_points": plan.train_points, "index_bytes": path.stat().st_size,
            "estimate_bytes": plan.estimate.bytes, "fixed_bytes": plan.estimate.fixed,
            "recall@1": m["recall@1"], "recall@10": m["recall@10"], "qps": m["qps"], "reached": reached,
            "search_params": current_search_params(index),
            "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}


# --------------------------------------------------------------------------- report

def project(r: dict, n_to: int = PROJECT_N) -> dict:
    """Memory and build time at ``n_to`` vectors from the measured per-vector costs (same factory
    string and training sample; the fixed part — centroids, codebooks — as estimated)."""
    per_vec = (r["index_bytes"] - r["fixed_bytes"]) / r["n"]
    return {"bytes": r["fixed_bytes"] + per_vec * n_to,
            "build_s": r["train_s"] + r["add_s"] / r["n"] * n_to}


def table(rows) -> str:
    cols = ("index", "factory", "build s", "peak RSS", "index", "B/vec", "R@1", "R@10", "params", "QPS",
            "100M: index", "100M: build")
    lines = []
    for r in rows:
        p = project(r)
        params = ",".join(f"{k}={v}" for k, v in r["search_params"].items()) or "-"
        lines.append([r["name"], r["factory"], f"{r['build_s']:.0f}", format_bytes(r["peak_rss"]),
                      format_bytes(r["index_bytes"]), f"{r['index_bytes'] / r['n']:.0f}",
                      f"{r['recall@1']:.3f}", f"{r['recall@10']:.3f}", params, f"{r['qps']:,.0f}",
                      format_bytes(p["bytes"]), f"{p['build_s'] / 3600:.1f} h"])
    widths = [max(len(c), *(len(x[i]) for x in lines)) for i, c in enumerate(cols)]
    out = ["| " + " | ".join(c.ljust(w) for c, w in zip(cols, widths)) + " |",
           "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out += ["| " + " | ".join(x.ljust(w) for x, w in zip(line, widths)) + " |" for line in lines]
    return "\n".join(out)


def plot(rows, png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.2))
    names = {}
    for r in rows:  # one point per index; the cases that picked the same index share its label
        names.setdefault(r["factory"], (r, []))[1].append(r["name"])
    for r, labels in names.values():
        label = " = ".join(labels)
        a.scatter(r["index_bytes"] / r["n"], r["recall@10"], s=40)
        a.annotate(label, (r["index_bytes"] / r["n"], r["recall@10"]), fontsize=8, xytext=(4, 2),
                   textcoords="offset points")
        b.scatter(r["qps"], r["recall@10"], s=40)
        b.annotate(label, (r["qps"], r["recall@10"]), fontsize=8, xytext=(4, 2), textcoords="offset points")
    a.set_xscale("log")
    a.set_xlabel("index bytes per vector")
    b.set_xscale("log")
    b.set_xlabel("queries per second (batched)")
    for ax in (a, b):
        ax.set_ylabel("recall@10 vs exact")
        ax.grid(alpha=0.3)
    n, d = rows[0]["n"], rows[0]["d"]
    fig.suptitle(f"{n:,} × {d} clustered vectors: size, speed and recall of each index")
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=120)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=1_000_000, help="vectors in the collection")
    p.add_argument("--d", type=int, default=512, help="dimension")
    p.add_argument("--queries", type=int, default=1000, help="held-out queries")
    p.add_argument("--quick", action="store_true", help="20,000 × 128 (tests, CI)")
    p.add_argument("--budgets", nargs="+", default=["256MB", "1GB", "4GB"], help="auto's memory budgets")
    p.add_argument("--only", nargs="+", default=None,
                   help="run only these cases (Flat, HNSW, IVF-Flat, IVF-PQ, auto@...)")
    p.add_argument("--ef-construction", type=int, default=40, help="HNSW build breadth (faiss' default 40)")
    p.add_argument("--output", default="runs/bench/index_scale", help="folder for data, indexes and results")
    p.add_argument("--child", nargs=3, metavar=("NAME", "SPEC", "BUDGET"), help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.quick:
        a.n, a.d, a.budgets = 20_000, 128, ["2MB", "4MB", "16MB"]
    out = Path(a.output) / f"{a.n}x{a.d}"
    if a.child:
        name, spec, budget = a.child
        print("RESULT " + json.dumps(run_one(out, name, spec, None if budget == "-" else budget, a.ef_construction)),
              flush=True)
        return 0
    make_data(out, a.n, a.d, a.queries)
    rows = []
    by_factory = {}
    for name, spec, budget in cases(a.n, a.d, a.budgets):
        if a.only and name not in a.only:
            continue
        if spec == "auto":
            from unicom.index.build import BuildOptions, resolve_spec
            from unicom.index.memory import parse_memory  # noqa: F401  (a bad budget fails here)

            factory, _ = resolve_spec("auto", a.n, a.d, BuildOptions(max_index_memory=budget))
            if factory in by_factory:  # the same index as a case measured already: not built twice
                rows.append(dict(by_factory[factory], name=name))
                print(f"{name}: {factory}, as measured above", flush=True)
                continue
        cmd = [sys.executable, __file__, "--n", str(a.n), "--d", str(a.d), "--output", a.output,
               "--ef-construction", str(a.ef_construction), "--child", name, spec, budget or "-"]
        t0 = time.time()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        lines = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
        if proc.returncode or not lines:
            print(f"{name}: failed ({proc.returncode}): {proc.stderr.strip().splitlines()[-1:]} ", flush=True)
            continue
        r = json.loads(lines[-1][len("RESULT "):])
        rows.append(r)
        by_factory[r["factory"]] = r
        write_json(Path(a.output) / "index_scale.partial.json", {"n": a.n, "d": a.d, "rows": rows})
        info = [x for x in proc.stdout.splitlines() if x.startswith("auto:")]
        print(f"{name}: {r['factory']} built in {r['build_s']:.0f}s, R@10 {r['recall@10']:.3f}, "
              f"{format_bytes(r['index_bytes'])}, peak RSS {format_bytes(r['peak_rss'])} "
              f"({time.time() - t0:.0f}s in all){' — ' + info[0] if info else ''}", flush=True)
    if not rows:
        return 1
    text = table(rows)
    collection = a.n * a.d * 4
    text += (f"\n\ncollection: {a.n:,} × {a.d} = {format_bytes(collection)} as float32 "
             f"({format_bytes(collection / 2)} as the float16 shards read); projection to {PROJECT_N:,} vectors "
             "from the measured per-vector costs")
    print(text)
    write_json(Path(a.output) / "index_scale.json", {"n": a.n, "d": a.d, "collection_float32_bytes": collection,
                                                     "rows": rows, "projection_n": PROJECT_N,
                                                     "projection": {r["name"]: project(r) for r in rows}})
    plot(rows, Path(a.output) / "index_scale.png")
    print(f"wrote {Path(a.output) / 'index_scale.json'} and {Path(a.output) / 'index_scale.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
