"""CPU precision: float32 against ``--precision auto`` (bf16 on CPUs with native bf16) in one run.

Rows, each timed in fp32 and in auto on this machine, back to back:

* matmul: a 2048² GEMM (GFLOP/s), the hardware's float32 and bf16 rates;
* embedding: ``encode_batch`` (inside ``inference_autocast``, as ``embed_images`` runs it) with
  the ViT-B/32 (random weights, Unicom ViT config: no download)
  and the demo ViT (configs/demo.yaml), images/s, and the minimum cosine between the two runs'
  embeddings;
* CLIP extraction: the fused image + text forward of ``unicom-cluster``'s extraction (open_clip
  TinyCLIP-demo, random weights), samples/s;
* k-means (N=200k, D=512, K=1000): ``clustering.kmeans.spherical_kmeans`` in fp32 and auto,
  plain ``faiss.Kmeans(spherical=True)`` and scikit-learn's Lloyd ``KMeans``, all from the same
  initial centroids for the same iterations; seconds per iteration and the objective of each
  (mean cosine of every point to its nearest normalised centroid, computed the same way);
* exact kNN (5k queries, 50k gallery, D=512, k=10): faiss ``IndexFlatIP`` against
  ``unicom.runtime.dense.FlatIP`` (the evaluation's exact search) in fp32 and auto, with the
  float32 GEMM floor;
* demo training: images/s of the full training step of configs/demo.yaml
  (``benchmarks/train_throughput.py``'s demo-cpu row).

Prints a table, writes ``OUT/cpu_precision.json`` and ``OUT/cpu_precision.png`` (default OUT:
runs/bench). ``make demo`` and ``make test`` wall times are not measured here (they run the
whole demo and suite).

    python benchmarks/cpu_precision.py            # full sizes (~15 min on 2 quiet cores)
    python benchmarks/cpu_precision.py --quick    # small sizes, a minute or two
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path
from typing import Optional

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DEMO_VIT = {"image_size": 64, "patch_size": 16, "width": 192, "depth": 4, "heads": 3, "embed_dim": 128}


def best_of(fn, repeats: int) -> float:
    """The fastest of ``repeats`` timed calls (after one warm-up): the least disturbed by a busy machine."""
    fn()
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def paired(fns: dict, repeats: int, contexts: Optional[dict] = None) -> dict:
    """``best_of`` for each of ``fns`` ({name: fn}), the calls alternating between them, so that
    load from other jobs falls on both sides of a comparison alike. ``contexts`` ({name: context
    manager factory}) wraps each name's calls (held across its calls, e.g. autocast)."""
    import contextlib

    best = {name: float("inf") for name in fns}
    with contextlib.ExitStack() as stack:
        for name in fns:
            stack.enter_context((contexts or {}).get(name, contextlib.nullcontext)())
        for fn in fns.values():
            fn()  # warm-up
        for _ in range(repeats):
            for name, fn in fns.items():
                t = time.perf_counter()
                fn()
                best[name] = min(best[name], time.perf_counter() - t)
    return best


def machine() -> dict:
    import torch

    from unicom.runtime.dense import faiss_blas_core
    from unicom.runtime.precision import cpu_has_native_bf16

    model, flags = platform.processor(), ""
    try:
        info = Path("/proc/cpuinfo").read_text()
        model = next((ln.split(":", 1)[1].strip() for ln in info.splitlines() if ln.startswith("model name")), model)
        flags = next((ln for ln in info.splitlines() if ln.startswith("flags")), "")
    except OSError:
        pass
    units = [f for f in ("amx_bf16", "avx512_bf16") if f" {f}" in flags]
    return {"cpu": model, "cores": os.cpu_count(), "bf16_units": units, "native_bf16": cpu_has_native_bf16(),
            "torch": torch.__version__, "threads": torch.get_num_threads(), "faiss_blas_core": faiss_blas_core(),
            "load_average": os.getloadavg()[0]}


def matmul_row(repeats: int) -> dict:
    import torch

    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    flop = 2 * 2048 ** 3
    ab, bb = a.bfloat16(), b.bfloat16()
    t = paired({"fp32": lambda: a @ b, "bf16": lambda: ab @ bb}, repeats)
    t32, t16 = t["fp32"], t["bf16"]
    return {"row": "matmul 2048² (GFLOP/s)", "unit": "GFLOP/s", "fp32": flop / t32 / 1e9, "auto": flop / t16 / 1e9}


def embed_row(name: str, arch, batch: int, repeats: int) -> dict:
    import torch

    from unicom.data.transforms import eval_transform
    from unicom.models.encoders import module_encoder
    from unicom.models.inference import encode_batch, inference_autocast
    from unicom.models.vit import build_vit

    torch.manual_seed(0)
    model = build_vit(arch).eval()
    enc = module_encoder(model, eval_transform(model.image_size), device="cpu")
    images = torch.randn(batch, 3, model.image_size, model.image_size)
    # autocast held around the batches, as embed_images does
    t = paired({p: (lambda p=p: encode_batch(enc, images, p)) for p in ("fp32", "auto")}, repeats,
               {p: (lambda p=p: inference_autocast(enc, p)) for p in ("fp32", "auto")})
    out = {p: batch / t[p] for p in t}
    cos = (encode_batch(enc, images, "fp32") * encode_batch(enc, images, "auto")).sum(1)
    return {"row": f"embed {name} (batch {batch})", "unit": "images/s", **out, "min_cosine": float(cos.min())}


def clip_row(model_name: str, batch: int, repeats: int) -> dict:
    """The fused image + text forward of the extraction, inside one held autocast context as
    ``clustering.extract`` runs it; best of ``repeats``."""
    import torch

    from clustering.fusion import fuse
    from unicom.models.clip_loader import create_clip
    from unicom.runtime.device import autocast

    torch.manual_seed(0)
    model, _, tokenizer = create_clip(model_name, "none")
    size = model.visual.image_size
    size = size[0] if isinstance(size, (tuple, list)) else size
    images = torch.randn(batch, 3, size, size)
    tokens = tokenizer([f"a photo of object {i}" for i in range(batch)])
    cpu = torch.device("cpu")

    def step(p: str):
        with torch.inference_mode(), autocast(cpu, p):
            return fuse(model.encode_image(images), model.encode_text(tokens)).to(torch.float16)

    t = paired({p: (lambda p=p: step(p)) for p in ("fp32", "auto")}, repeats,
               {p: (lambda p=p: autocast(cpu, p)) for p in ("fp32", "auto")})
    out = {p: batch / t[p] for p in t}
    return {"row": f"CLIP extraction {model_name} (batch {batch})", "unit": "samples/s", **out}


def mixture(n: int, d: int, groups: int, seed: int = 0) -> np.ndarray:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from kmeans import mixture_on_sphere

    return mixture_on_sphere(n, d, groups, noise=2.0, seed=seed)


def kmeans_rows(n: int, d: int, k: int, iters: int, skip_sklearn: bool) -> list:
    import faiss

    from clustering.kmeans import normalise_rows, spherical_kmeans
    from unicom.runtime.dense import nearest

    x = mixture(n, d, max(2 * k, 10))
    init = x[np.random.default_rng(1).choice(n, k, replace=False)]

    def objective(c):  # the same for every row: float32 mean cosine to the nearest unit centroid
        return float(nearest(x, normalise_rows(c), "fp32")[0].astype(np.float64).mean())

    rows: list = []
    r32 = None
    for p in ("fp32", "auto"):
        t = time.perf_counter()
        r = spherical_kmeans(x, k, niter=iters, seed=1, max_points_per_centroid=10 ** 9, gpus=[],
                             init_centroids=init, evaluate=False, log_iterations=False, precision=p)
        total = time.perf_counter() - t
        r32 = r if p == "fp32" else r32
        rows.append({"name": f"unicom spherical ({p}: {r.extra['assignment']})", "iterations": len(r.iteration_stats),
                     "s_per_iter": float(np.median([it["time"] for it in r.iteration_stats])), "seconds": total,
                     "objective": objective(r.centroids)})
    km = faiss.Kmeans(d, k, niter=iters, spherical=True, seed=1, max_points_per_centroid=10 ** 9)
    t = time.perf_counter()
    km.train(x, init_centroids=init)
    total = time.perf_counter() - t
    st = km.iteration_stats
    per = np.diff([0.0] + [s["time"] for s in st]) if isinstance(st[0], dict) else [total / iters]
    rows.append({"name": "faiss.Kmeans spherical", "iterations": iters, "s_per_iter": float(np.median(per)),
                 "seconds": total, "objective": objective(km.centroids)})
    if not skip_sklearn:
        from sklearn.cluster import KMeans

        sk = KMeans(n_clusters=k, init=init, n_init=1, max_iter=iters, tol=0.0, algorithm="lloyd", random_state=0)
        t = time.perf_counter()
        sk.fit(x)
        total = time.perf_counter() - t
        rows.append({"name": "scikit-learn KMeans (lloyd, L2)", "iterations": int(sk.n_iter_),
                     "s_per_iter": total / sk.n_iter_, "seconds": total,
                     "objective": objective(sk.cluster_centers_.astype(np.float32))})
    ref = rows[0]["objective"]
    for r in rows:
        r["objective_rel_to_fp32"] = (r["objective"] - ref) / ref
    # one assignment pass against the float32 run's centroids: the share of labels bf16 keeps
    c32 = normalise_rows(r32.centroids)
    rows[1]["labels_equal_to_fp32"] = float((nearest(x, c32, "auto")[1] == nearest(x, c32, "fp32")[1]).mean())
    return rows


def knn_row(nq: int, n: int, d: int, k: int, repeats: int) -> dict:
    import faiss
    import torch

    from unicom.runtime.dense import FlatIP, topk

    x = mixture(n, d, 1000, seed=4)
    q = mixture(nq, d, 1000, seed=5)
    index = faiss.IndexFlatIP(d)
    index.add(x)
    flats = {p: FlatIP(x, p) for p in ("fp32", "auto")}  # as the evaluation holds it: the bf16 copy made once
    res = paired({"faiss": lambda: index.search(q, k),
                  **{p: (lambda f=f: f.search(q, k)) for p, f in flats.items()}}, repeats)
    t_faiss = res["faiss"]
    a, b = torch.randn(4096, d), torch.randn(d, 16384)
    rate = 2 * 4096 * d * 16384 / best_of(lambda: a @ b, repeats)
    floor = 2.0 * nq * n * d / rate
    fallback = topk(q, x, k, "auto").fallback_rows
    return {"row": f"exact kNN {nq // 1000}k x {n // 1000}k, k={k} (s)", "unit": "s", "faiss": t_faiss,
            "fp32": res["fp32"], "auto": res["auto"], "fp32_gemm_floor": floor, "auto_fallback_rows": fallback}


def train_row(steps: int, warmup: int) -> dict:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from train_throughput import run_row

    out = {"fp32": 0.0, "auto": 0.0}
    for _ in range(2):  # alternate, keep the better of two: load from other jobs hits both alike
        for p in out:
            out[p] = max(out[p], run_row("demo-cpu", "cpu", steps, warmup, precision=p)["images_per_s"])
    return {"row": "demo training step (batch 64)", "unit": "images/s", **out}


def plot(rows: list, km: list, path: Path) -> None:
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from unicom.formats.atomic_io import write_bytes

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(12, 4.5))
    names = [r["row"] for r in rows]
    speed = [(r["fp32"] / r["auto"]) if r["unit"] == "s" else (r["auto"] / r["fp32"]) for r in rows]
    a1.barh(names, speed, color="tab:blue")
    a1.axvline(1.0, color="k", lw=0.8)
    a1.set_xlabel("auto (bf16 where native) speed-up over fp32")
    a1.invert_yaxis()
    a2.barh([r["name"] for r in km], [r["s_per_iter"] for r in km], color="tab:orange")
    for i, r in enumerate(km):
        a2.text(r["s_per_iter"], i, f" obj {r['objective']:.5f}", va="center", fontsize=8)
    a2.set_xlabel("k-means seconds per iteration (lower is better)")
    a2.invert_yaxis()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    write_bytes(path, buf.getvalue())


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="small sizes: N=20k K=100 k-means, ViT-B/32 batch 4")
    p.add_argument("--threads", type=int, default=None, help="torch and faiss threads (default: all cores)")
    p.add_argument("--iters", type=int, default=5, help="k-means iterations")
    p.add_argument("--skip", default="", help="comma-separated sections to skip: matmul,embed,clip,kmeans,knn,train")
    p.add_argument("--out", default="runs/bench", help="folder for cpu_precision.json and .png")
    a = p.parse_args(argv)
    import faiss
    import torch

    from unicom.formats.atomic_io import write_json

    if a.threads:
        torch.set_num_threads(a.threads)
    faiss.omp_set_num_threads(torch.get_num_threads())
    skip = set(filter(None, a.skip.split(",")))
    q = a.quick
    info = machine()
    print(f"CPU {info['cpu']} ({info['cores']} cores; bf16 units {info['bf16_units'] or 'none'}; torch native bf16: "
          f"{info['native_bf16']}), torch {info['torch']}, {info['threads']} threads, faiss OpenBLAS core "
          f"{info['faiss_blas_core']}, load average {info['load_average']:.1f}")
    rows: list = []
    km: list = []
    reps = 2 if q else 3

    def add(r: dict) -> None:  # print each row as its section ends: a busy machine makes this slow
        print(f"  {r['row']}: fp32 {r['fp32']:.4g}, auto {r['auto']:.4g} {r['unit']}", flush=True)
        rows.append(r)
    if "matmul" not in skip:
        add(matmul_row(reps))
    if "embed" not in skip:
        add(embed_row("ViT-B/32", "ViT-B/32", 4 if q else 16, reps))
        add(embed_row("demo ViT", DEMO_VIT, 64, reps))
    if "clip" not in skip:
        add(clip_row("TinyCLIP-demo", 64 if q else 128, reps))
    if "train" not in skip:
        add(train_row(3 if q else 10, 1 if q else 2))
    if "knn" not in skip:
        add(knn_row(1000 if q else 5000, 20000 if q else 50000, 512, 10, reps))
    print(f"\n{'':52s}{'fp32':>10s}{'auto':>10s}{'speed-up':>10s}  notes")
    for r in rows:
        up = r["fp32"] / r["auto"] if r["unit"] == "s" else r["auto"] / r["fp32"]
        r["speedup"] = up
        notes = ", ".join(f"{k} {v:.5g}" for k, v in r.items()
                          if k in ("min_cosine", "faiss", "fp32_gemm_floor", "auto_fallback_rows"))
        print(f"{r['row'] + ' [' + r['unit'] + ']':52s}{r['fp32']:>10.3g}{r['auto']:>10.3g}{up:>9.2f}x  {notes}")
    if "kmeans" not in skip:
        n, k = (20_000, 100) if q else (200_000, 1000)
        km = kmeans_rows(n, 512, k, a.iters, skip_sklearn=False)
        print(f"\nk-means N={n:,} D=512 K={k} iters={a.iters}, same initial centroids")
        print(f"{'':44s}{'s/iter':>9s}{'total s':>9s}{'objective':>12s}{'vs fp32':>10s}")
        for r in km:
            print(f"{r['name']:44s}{r['s_per_iter']:>9.3f}{r['seconds']:>9.2f}{r['objective']:>12.6f}"
                  f"{100 * r['objective_rel_to_fp32']:>9.3f}%"
                  + (f"  labels equal to fp32: {100 * r['labels_equal_to_fp32']:.3f}%" if "labels_equal_to_fp32" in r
                     else ""))
    out = Path(a.out)
    write_json(out / "cpu_precision.json", {"machine": info, "rows": rows, "kmeans": km, "quick": q})
    plot(rows, km, out / "cpu_precision.png")
    print(f"\nwrote {out / 'cpu_precision.json'} and {out / 'cpu_precision.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
