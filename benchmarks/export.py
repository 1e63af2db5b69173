"""Inference throughput of an encoder in PyTorch and as an ONNX export, on this machine's CPU.

For each encoder (random weights: throughput does not depend on them) three runners embed the
same in-memory batch of transformed images:
  * PyTorch fp32: ``model(x)`` under ``torch.inference_mode``;
  * PyTorch, the default CPU precision: bf16 autocast (``torch.autocast("cpu", torch.bfloat16)``)
    where the CPU has bf16 instructions (AVX-512 BF16 or AMX), else fp32 again;
  * onnxruntime fp32: the ``unicom-export`` graph (L2 normalisation included) on the CPU
    execution provider.
Each figure is the median images/s of ``--rounds`` rounds per runner, taken in turn (so that
other jobs on a shared machine slow every runner alike), ``--seconds`` in all per runner after
a warm-up, with the same thread count for all. The table is printed and saved as JSON and a PNG bar chart beside it.

    python benchmarks/export.py                                   # demo ViT and ViT-B/32
    python benchmarks/export.py --models demo --seconds 3 --output runs/bench/export_quick
"""
from __future__ import annotations

import argparse
import contextlib
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, List

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

# the demo's architecture (configs/demo.yaml), ViT-B/32's released one, and a tiny one for tests
MODELS = {
    "demo": {"image_size": 64, "patch_size": 16, "width": 192, "depth": 4, "heads": 3, "embed_dim": 128},
    "b32": {"image_size": 224, "patch_size": 32, "width": 768, "depth": 12, "heads": 12, "embed_dim": 512},
    "tiny": {"image_size": 32, "patch_size": 8, "width": 64, "depth": 2, "heads": 2, "embed_dim": 32},
}
LABELS = {"demo": "demo ViT", "b32": "ViT-B/32", "tiny": "ViT-Tiny/8@32"}
RUNNERS = ("pytorch fp32", "pytorch default", "onnxruntime fp32")


def cpu_has_bf16() -> bool:
    """True when the CPU advertises bf16 arithmetic (AVX-512 BF16 or AMX-BF16) in /proc/cpuinfo."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def rate(step: Callable[[], object], batch: int, seconds: float) -> float:
    """Images per second of ``step`` (one batch of ``batch`` images) over at least ``seconds``
    and at least one call."""
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds or n == 0:
        step()
        n += batch
    return n / (time.perf_counter() - t0)


def bench_model(name: str, batch: int, seconds: float, threads: int, work: Path, rounds: int = 5
                ) -> Dict[str, object]:
    """Export one random encoder and time the three runners on one batch: ``rounds`` rounds of
    ``seconds / rounds`` each per runner, taken in turn; the median round is reported."""
    import torch

    from unicom.data.transforms import CLIP_MEAN, CLIP_STD, eval_transform
    from unicom.deploy.export import export_model
    from unicom.deploy.parity import sample_images, transform_batch
    from unicom.deploy.runtime import OnnxModule
    from unicom.formats.export import save_export
    from unicom.models.vit import UnicomViT, ViTConfig

    cfg = ViTConfig(**MODELS[name])
    torch.manual_seed(0)
    model = UnicomViT(cfg).eval()
    save_export(model, work / name / "export", cfg.image_size, CLIP_MEAN, CLIP_STD, cfg.embed_dim)
    res = export_model(work / name / "export", work / name / "onnx", "onnx", parity_images=16, progress=False)
    x = transform_batch(sample_images(batch, seed=1), eval_transform(cfg.image_size))
    session = OnnxModule(res.graph, threads=threads)
    bf16 = cpu_has_bf16()

    def torch_step(autocast: bool):
        ctx = torch.autocast("cpu", dtype=torch.bfloat16) if autocast else contextlib.nullcontext()

        def step():
            with torch.inference_mode(), ctx:
                return torch.nn.functional.normalize(model(x).float(), dim=1)
        return step

    steps = {"pytorch fp32": torch_step(False), "pytorch default": torch_step(bf16),
             "onnxruntime fp32": lambda: session(x)}
    # round-robin rounds, median per runner: a machine shared with other jobs slows the runners
    # alike instead of whichever happened to run during a busy spell
    trials: Dict[str, List[float]] = {k: [] for k in steps}
    for step in steps.values():  # warm-up: first-call allocations, oneDNN and onnxruntime kernel choices
        for _ in range(2):
            step()
    for _ in range(rounds):
        for k, step in steps.items():
            trials[k].append(rate(step, batch, seconds / rounds))
    rates = {k: float(statistics.median(v)) for k, v in trials.items()}
    with torch.inference_mode():
        ref = torch.nn.functional.normalize(model(x), dim=1).numpy()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            low = torch.nn.functional.normalize(model(x).float(), dim=1).numpy()
    onnx_out = session(x).numpy()
    params = sum(p.numel() for p in model.parameters())
    return {"model": name, "label": f"{LABELS[name]} ({cfg.image_size} px, {params / 1e6:.1f}M params)",
            "batch": batch, "params": params,
            "default_precision": "bf16 autocast" if bf16 else "fp32 (no bf16 on this CPU)",
            "images_per_s": rates, "images_per_s_rounds": trials,
            "onnx_min_cosine": float((ref * onnx_out).sum(1).min()),
            "bf16_min_cosine": float((ref * low).sum(1).min()), "onnx_mb": res.graph.stat().st_size / 2**20,
            "parity_min_cosine": res.parity.min_cosine}


def plot(rows: List[Dict[str, object]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from unicom.formats.atomic_io import atomic_write

    fig, axes = plt.subplots(1, len(rows), figsize=(4.2 * len(rows), 3.4), squeeze=False)
    for ax, row in zip(axes[0], rows):
        vals = [row["images_per_s"][r] for r in RUNNERS]  # type: ignore[index]
        rounds = [row.get("images_per_s_rounds", {}).get(r) or [v] for r, v in zip(RUNNERS, vals)]  # type: ignore
        err = [[v - min(t) for v, t in zip(vals, rounds)], [max(t) - v for v, t in zip(vals, rounds)]]
        ax.bar(range(len(RUNNERS)), vals, yerr=err, capsize=4, color=["#4c72b0", "#55a868", "#c44e52"])
        top = max(max(t) for t in rounds)
        for i, v in enumerate(vals):  # the figure at the foot of its bar, clear of the whiskers
            ax.text(i, 0.02 * top, f"{v:.1f}" if v < 20 else f"{v:.0f}", ha="center", va="bottom", color="white",
                    fontsize=9, fontweight="bold")
        ax.set_xticks(range(len(RUNNERS)), ["PyTorch\nfp32", f"PyTorch\n{str(row['default_precision']).split()[0]}",
                                            "onnxruntime\nfp32"], fontsize=8)
        ax.set_title(str(row["label"]), fontsize=9)
        ax.set_ylabel("images / s")
    fig.suptitle(title + "\n(bars: median round; whiskers: slowest and fastest round)", fontsize=9)
    fig.tight_layout()
    with atomic_write(path) as f:
        fig.savefig(f, format="png", dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default="demo,b32", help=f"comma-separated, from {', '.join(MODELS)}")
    p.add_argument("--batch-size", type=int, default=32, help="images per forward pass")
    p.add_argument("--seconds", type=float, default=15.0, help="timed seconds per runner (after a warm-up)")
    p.add_argument("--rounds", type=int, default=5, help="rounds per runner, taken in turn (the median is reported)")
    p.add_argument("--threads", type=int, default=None, help="compute threads for every runner (default: all CPUs)")
    p.add_argument("--output", default="runs/bench/export", help="folder of export.json and export.png")
    a = p.parse_args(argv)
    names = [m.strip() for m in a.models.split(",") if m.strip()]
    unknown = [m for m in names if m not in MODELS]
    if unknown:
        print(f"export.py: error: unknown --models {unknown[0]!r}; choose from {', '.join(MODELS)}", file=sys.stderr)
        return 2

    import torch

    from unicom.formats.atomic_io import write_json

    threads = a.threads or os.cpu_count() or 1
    torch.set_num_threads(threads)
    out = Path(a.output)
    out.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench_export_") as tmp:
        rows = [bench_model(n, a.batch_size, a.seconds, threads, Path(tmp), a.rounds) for n in names]
    machine = f"{cpu_name()}, {os.cpu_count()} CPUs, bf16: {'yes' if cpu_has_bf16() else 'no'}"
    print(f"\n{machine}; {threads} threads, batch {a.batch_size}; torch {torch.__version__}")
    head = "| encoder | " + " | ".join(RUNNERS) + " | default CPU precision | ONNX min cos | bf16 min cos |"
    lines = [head, "|" + "---|" * (len(RUNNERS) + 4)]
    for r in rows:
        ips = r["images_per_s"]
        lines.append(f"| {r['label']} | " + " | ".join(f"{ips[k]:.1f}" for k in RUNNERS)  # type: ignore[index]
                     + f" | {r['default_precision']} | {r['onnx_min_cosine']:.6f} | {r['bf16_min_cosine']:.6f} |")
    print("\n".join(lines))
    write_json(out / "export.json", {"machine": machine, "threads": threads, "batch": a.batch_size,
                                     "seconds": a.seconds, "rounds": a.rounds, "torch": torch.__version__,
                                     "load_average_before_after": [load_before[0], os.getloadavg()[0]],
                                     "rows": rows})
    plot(rows, out / "export.png", f"images/s, batch {a.batch_size}, {threads} threads — {machine}")
    print(f"wrote {out / 'export.json'} and {out / 'export.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
