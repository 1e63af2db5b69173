"""Partial FC head benchmark: forward + backward + optimizer step of the head alone.

    python benchmarks/partial_fc.py                 # C ∈ {100k, 1M, 2M} × r ∈ {1.0, 0.1}, D = 512, B = 512
    python benchmarks/partial_fc.py --quick         # C = 100k only (a smoke run, ~1 minute)
    python benchmarks/partial_fc.py --dense-baseline  # also an official-style dense head, C ≤ 1M

Each row runs in a fresh subprocess (so its peak memory is its own) and prints the time per step
(median of the timed steps after one warm-up step), its split into forward / backward /
optimizer, the GEMM floor and the peak memory. The GEMM floor is the step's matmul work,
3 · 2 · B · S · D flops for S sampled classes (one GEMM forward, two backward), at the matmul
rate of the same three GEMM shapes timed in the same process right before every step (so the
floor follows the load of a shared machine as the step does; step/floor is the median of the
per-step ratios). Working memory is the peak beyond the process's baseline and beyond the
centres and their optimizer state.

Writes ``OUT/partial_fc.json`` and ``OUT/partial_fc.png``. Rows whose estimated memory does not
fit in the available memory (``--max-mem-gib``, default: what the machine has free) are
skipped and reported as such. The dense baseline mirrors the structure of the official
PartialFC_V2 (the sampled rows indexed through autograd, so the centre gradient and the AdamW
update are dense over all C rows); it is written here for comparison and is not library code.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

GIB = 1024 ** 3


def available_gib() -> float:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) / 1024 ** 2
    except OSError:
        pass
    return 16.0


def rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return 0


def estimate_gib(C: int, r: float, D: int, B: int, optimizer: str) -> float:
    """Centres + state + the head's working set (sampled centres, logits, centre gradient)."""
    S = max(int(r * C), B)
    state = 2 if optimizer == "adamw" else 1
    return (C * D * 4 * (1 + state) + S * (B + 2 * D) * 4 + S * D * 4 + 0.4 * GIB) / GIB


# ---- one row, in its own process ------------------------------------------------------------------

def _sync(device):
    import torch
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class GemmProbe:
    """The step's three GEMM shapes ([B,D]·[D,S'], [S',B]·[B,D], [B,S']·[S',D]) on preallocated
    buffers, S' = min(S, 32768) columns (the rate is flat beyond that). Timed next to every step,
    so the floor follows the machine's load as the step does."""

    def __init__(self, B: int, S: int, D: int, device):
        import torch
        self.torch, self.device = torch, device
        self.S = min(S, 32768)
        self.flops = 3 * 2 * B * self.S * D
        self.e = torch.randn(B, D, device=device)
        self.w = torch.randn(self.S, D, device=device)
        self.z = torch.empty(B, self.S, device=device)
        self.gw = torch.empty(self.S, D, device=device)
        self.ge = torch.empty(B, D, device=device)
        self.time()

    def time(self) -> float:
        torch = self.torch
        _sync(self.device)
        t0 = time.perf_counter()
        torch.mm(self.e, self.w.t(), out=self.z)
        torch.mm(self.z.t(), self.e, out=self.gw)
        torch.mm(self.z, self.w, out=self.ge)
        _sync(self.device)
        return time.perf_counter() - t0

    def rate(self, reps: int = 3) -> float:
        return self.flops / min(self.time() for _ in range(reps))


class DenseBaseline:
    """The official PartialFC_V2 structure: dense parameter, sampled rows indexed through autograd, torch AdamW."""

    def __init__(self, C, D, r, device, lr=1e-3, wd=0.05, s=64.0, m=0.3):
        import torch
        self.torch = torch
        self.C, self.r, self.s, self.m = C, r, s, m
        self.weight = torch.nn.Parameter(torch.normal(0, 0.01, (C, D), device=device))
        self.opt = torch.optim.AdamW([self.weight], lr=lr, weight_decay=wd)

    def step(self, emb, labels):
        torch = self.torch
        F = torch.nn.functional
        labels = labels.clone()
        if self.r < 1:
            positive = torch.unique(labels)
            perm = torch.rand(self.C, device=labels.device)
            perm[positive] = 2.0
            index = torch.topk(perm, k=int(self.r * self.C))[1].sort()[0]
            labels = torch.searchsorted(index, labels)
            w = self.weight[index]
        else:
            w = self.weight
        logits = F.linear(F.normalize(emb), F.normalize(w)).clamp(-1, 1)
        with torch.no_grad():  # the official straight-through angular margin
            shifted = logits.gather(1, labels[:, None]).arccos_().add_(self.m).cos_()
            delta = shifted - logits.gather(1, labels[:, None])
        logits = logits.scatter_add(1, labels[:, None], delta) * self.s
        loss = F.cross_entropy(logits, labels)
        loss.backward()
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        return loss


def run_row(C: int, r: float, D: int, B: int, steps: int, warmup: int, optimizer: str, device_name: str,
            dense: bool) -> dict:
    import torch

    from unicom.losses import PartialFC, SparseCentreOptimizer
    from unicom.runtime.device import resolve_device

    device = resolve_device(device_name)
    torch.manual_seed(0)
    rss0 = rss_bytes()
    probe = GemmProbe(B, max(int(r * C + 1e-6), 1), D, device)  # allocated before the baseline
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
    else:
        base = rss_bytes()

    t0 = time.perf_counter()
    if dense:
        head = DenseBaseline(C, D, r, device)
        state_bytes = 3 * C * D * 4
    else:
        head = PartialFC(C, D, sample_rate=r).to(device)
        opt = SparseCentreOptimizer(head, kind=optimizer, lr=1e-3, weight_decay=0.05, momentum=0.9)
        opt.centre_state()  # allocate the state up front (it is part of the fixed cost, not the step)
        state_bytes = sum(t.numel() * t.element_size() for t in [head.weight, *opt.centre_state().values()])
    t_init = time.perf_counter() - t0

    g = torch.Generator(device="cpu").manual_seed(1)
    times, splits, floors, S = [], [], [], None
    peak_rss = 0
    for i in range(warmup + steps):
        emb = torch.randn(B, D, generator=g).to(device).requires_grad_(True)
        labels = torch.randint(0, C, (B,), generator=g).to(device)
        t_gemm = probe.time()
        _sync(device)
        ta = time.perf_counter()
        if dense:
            loss = head.step(emb, labels)
            tb = tc = time.perf_counter()
            S = max(int(r * C), 1)
        else:
            loss = head(emb, labels)
            _sync(device)
            tb = time.perf_counter()
            loss.backward()
            _sync(device)
            tc = time.perf_counter()
            opt.step()
            opt.zero_grad()
            S = C if head.last_sample is None else head.last_sample.numel()
        _sync(device)
        td = time.perf_counter()
        peak_rss = max(peak_rss, rss_bytes())
        if not bool(torch.isfinite(loss)):
            raise RuntimeError(f"non-finite loss at C={C}, r={r}")
        if i >= warmup:
            times.append(td - ta)
            splits.append((tb - ta, tc - tb, td - tc))
            floors.append(t_gemm * S / probe.S)
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device)
    else:
        peak = max(peak_rss, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    working = peak - base - state_bytes
    rate = probe.rate()
    step = statistics.median(times)
    split = [statistics.median(x) for x in zip(*splits)]
    return {"C": C, "r": r, "D": D, "B": B, "S": S, "optimizer": optimizer, "impl": "dense" if dense else "partial_fc",
            "device": str(device), "step_s": step, "step_min_s": min(times), "steps": times,
            "forward_s": split[0], "backward_s": split[1], "optimizer_s": split[2],
            "floor_s": statistics.median(floors), "floors": floors,
            "step_over_floor": statistics.median([t / f for t, f in zip(times, floors)]),
            "gemm_tflops": rate / 1e12, "peak_gib": (peak - (rss0 if device.type == "cpu" else 0)) / GIB,
            "state_gib": state_bytes / GIB, "working_gib": working / GIB, "init_s": t_init}


# ---- driver -----------------------------------------------------------------------------------------

def child(args, C, r, dense=False) -> dict:
    cmd = [sys.executable, __file__, "--single", str(C), str(r), "--dim", str(args.dim), "--batch", str(args.batch),
           "--steps", str(args.steps), "--warmup", str(args.warmup), "--optimizer", args.optimizer,
           "--device", args.device] + (["--dense"] if dense else [])
    p = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("{")]
    if p.returncode != 0 or not lines:
        return {"C": C, "r": r, "impl": "dense" if dense else "partial_fc",
                "error": (p.stderr or p.stdout).strip().splitlines()[-1:] or ["failed"]}
    return json.loads(lines[-1])


def fmt_row(x: dict) -> str:
    tag = f"{x['impl']:<10} C={x['C']:>9,} r={x['r']:<4}"
    if "error" in x:
        return f"{tag}  FAILED: {x['error']}"
    if "skipped" in x:
        return f"{tag}  skipped: {x['skipped']}"
    return (f"{tag} S={x['S']:>9,}  step {x['step_s']:8.3f} s (fwd {x['forward_s']:.3f} bwd {x['backward_s']:.3f} "
            f"opt {x['optimizer_s']:.3f})  floor {x['floor_s']:7.3f} s  step/floor {x['step_over_floor']:5.2f}  "
            f"peak {x['peak_gib']:6.2f} GiB  working {x['working_gib']:5.2f} GiB")


def plot(rows, path: Path, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [x for x in rows if "step_s" in x]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(12, 4.5))
    for impl, style in (("partial_fc", "-o"), ("dense", "-s")):
        for r in sorted({x["r"] for x in ok if x["impl"] == impl}):
            pts = sorted((x["C"], x["step_s"], x["floor_s"], x["working_gib"], x["S"]) for x in ok
                         if x["impl"] == impl and x["r"] == r)
            if not pts:
                continue
            cs = [p[0] for p in pts]
            label = f"{'ours' if impl == 'partial_fc' else 'dense baseline'} r={r}"
            a1.plot(cs, [p[1] for p in pts], style, label=label)
            if impl == "partial_fc":
                a1.plot(cs, [p[2] for p in pts], ":", color=a1.lines[-1].get_color(), label=f"GEMM floor r={r}")
                a2.plot([p[4] for p in pts], [p[3] for p in pts], style, label=label)
    for a in (a1, a2):
        a.set_xscale("log")
        a.set_yscale("log")
        a.grid(True, which="both", alpha=0.3)
        a.legend(fontsize=8)
    a1.set_xlabel("classes C")
    a2.set_xlabel("sampled classes per step S = max(r·C, positives)")
    a1.set_ylabel("seconds per step (fwd + bwd + optimizer)")
    a2.set_ylabel("working memory beyond centres + state (GiB)")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    from unicom.formats.atomic_io import atomic_write

    with atomic_write(path) as f:
        fig.savefig(f, format="png", dpi=120)
    plt.close(fig)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--classes", type=int, nargs="+", default=[100_000, 1_000_000, 2_000_000])
    ap.add_argument("--rates", type=float, nargs="+", default=[1.0, 0.1])
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--optimizer", default="adamw", choices=["adamw", "sgd"])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", default="runs/bench")
    ap.add_argument("--quick", action="store_true", help="C = 100k only")
    ap.add_argument("--dense-baseline", action="store_true", help="also time an official-style dense head (C ≤ 1M)")
    ap.add_argument("--dense-rates", type=float, nargs="+", default=None,
                    help="rates of the dense baseline (default: --rates)")
    ap.add_argument("--max-mem-gib", type=float, default=None, help="skip rows estimated above this (default: free)")
    ap.add_argument("--single", nargs=2, metavar=("C", "R"), help=argparse.SUPPRESS)
    ap.add_argument("--dense", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.single:
        res = run_row(int(args.single[0]), float(args.single[1]), args.dim, args.batch, args.steps, args.warmup,
                      args.optimizer, args.device, args.dense)
        print(json.dumps(res), flush=True)
        return 0

    import torch
    classes = [100_000] if args.quick else args.classes
    budget_now = lambda: args.max_mem_gib if args.max_mem_gib is not None else available_gib() - 1.0
    budget = budget_now()
    machine = (f"{platform.machine()} {os.cpu_count()} CPUs, torch {torch.__version__}, "
               f"{torch.get_num_threads()} threads" if args.device == "cpu" else f"{args.device}")
    print(f"Partial FC head benchmark: D={args.dim}, B={args.batch}, {args.optimizer}, device {args.device} "
          f"({machine}); {args.steps} timed steps after {args.warmup} warm-up; memory budget {budget:.1f} GiB",
          flush=True)
    rows = []
    for C in classes:
        for r in args.rates:
            need = estimate_gib(C, r, args.dim, args.batch, args.optimizer)
            budget = budget_now()  # re-read: the machine may be shared
            if need > budget:
                x = {"C": C, "r": r, "impl": "partial_fc",
                     "skipped": f"needs ~{need:.1f} GiB, {budget:.1f} GiB available"}
            else:
                x = child(args, C, r)
            rows.append(x)
            print(fmt_row(x), flush=True)
        if args.dense_baseline and C <= 1_000_000:
            for r in (args.dense_rates or args.rates):
                x = child(args, C, r, dense=True)
                rows.append(x)
                print(fmt_row(x), flush=True)

    print("\nsummary (ratios measured in this run):")
    for C in classes:
        by_r = {x["r"]: x for x in rows if x["C"] == C and x.get("impl") == "partial_fc" and "step_s" in x}
        if 1.0 in by_r and 0.1 in by_r:
            print(f"  C={C:>9,}: step(r=1.0) / step(r=0.1) = {by_r[1.0]['step_s'] / by_r[0.1]['step_s']:.1f}x; "
                  f"step/floor at r=0.1 = {by_r[0.1]['step_over_floor']:.2f}; working memory r=0.1 "
                  f"{by_r[0.1]['working_gib']:.2f} GiB vs r=1.0 {by_r[1.0]['working_gib']:.2f} GiB")
        dense = {x["r"]: x for x in rows if x["C"] == C and x.get("impl") == "dense" and "step_s" in x}
        for r, d in sorted(dense.items()):
            if r in by_r:
                print(f"  C={C:>9,} r={r}: dense baseline {d['step_s']:.2f} s vs ours {by_r[r]['step_s']:.2f} s "
                      f"({d['step_s'] / by_r[r]['step_s']:.1f}x)")
        if 1.0 in dense and 0.1 in by_r:
            print(f"  C={C:>9,}: dense baseline r=1.0 / ours r=0.1 = {dense[1.0]['step_s'] / by_r[0.1]['step_s']:.1f}x")
    out = Path(args.out)
    meta = {"machine": machine, "dim": args.dim, "batch": args.batch, "optimizer": args.optimizer,
            "device": args.device, "steps": args.steps, "warmup": args.warmup, "time": time.strftime("%Y-%m-%d %H:%M")}
    from unicom.formats.atomic_io import write_json

    write_json(out / "partial_fc.json", {"meta": meta, "rows": rows})
    plot(rows, out / "partial_fc.png", f"Partial FC head, D={args.dim}, B={args.batch}, {args.optimizer}, {machine}")
    print(f"wrote {out / 'partial_fc.json'} and {out / 'partial_fc.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
