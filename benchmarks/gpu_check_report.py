"""Collect ``gpu_check.sh``'s step statuses and raw JSON into one Markdown table and one JSON file.

    python benchmarks/gpu_check_report.py RAW_DIR OUT_DIR [--no-gpu]

RAW_DIR holds ``steps.tsv`` (name, state, seconds, last log line) and each step's JSON; writes
``OUT_DIR/gpu_check.md`` and ``OUT_DIR/gpu_check.json``. A step that failed or left no JSON gets
its state and last log line in the table instead of figures.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

TITLES = {
    "cuda_tests": "CUDA-marked tests (pytest -m cuda)",
    "nccl_2proc": "NCCL, 2 processes: Partial FC 2 ranks vs 1 process",
    "nccl_2proc_one_gpu": "NCCL, 2 processes on one GPU",
    "gloo_cuda_2proc": "gloo on CUDA tensors, 2 processes on one GPU: Partial FC 2 ranks vs 1 process",
    "partial_fc_1m": "Partial FC head, 1M classes, D=512, B=512, AdamW",
    "train_b32": "ViT-B/32 training step, 1M classes, r=0.1",
    "kmeans_gpu": "faiss GPU k-means",
    "knn_gpu": "GPU kNN (exact, N=100k, D=512, 2,000 queries)",
    "extraction_cuda": "extraction, ViT-B-32, end to end vs model only",
}


def _load(path: Path) -> Optional[Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def read_steps(raw: Path) -> List[Dict[str, Any]]:
    """``steps.tsv`` as a list of {name, state, seconds, last_line}."""
    rows = []
    path = raw / "steps.tsv"
    for line in (path.read_text().splitlines() if path.is_file() else []):
        name, state, secs, last = (line.split("\t") + ["", "", ""])[:4]
        rows.append({"name": name, "state": state, "seconds": float(secs or 0), "last_line": last})
    return rows


def summarise(name: str, raw: Path, step: Dict[str, Any]) -> List[str]:
    """Figure strings for one step (several for the steps with several rows)."""
    if name == "cuda_tests":
        return [step["last_line"]]
    if name in ("nccl_2proc", "nccl_2proc_one_gpu", "gloo_cuda_2proc"):
        r = _load(raw / f"{name}.json")
        if r is None:
            return [f"no result ({step['state']}): {step['last_line']}"]
        return [f"{r['backend']} on {r['device']}: {'match' if r['ok'] else 'MISMATCH'} (max rel. error loss "
                f"{r['loss_rel_err']:.1e}, embedding grad {r['emb_grad_rel_err']:.1e}, centre grad "
                f"{r['centre_grad_rel_err']:.1e})"]
    if name == "partial_fc_1m":
        d = _load(raw / "partial_fc" / "partial_fc.json") or {}
        out = []
        for r in d.get("rows", []):
            if "error" in r:
                out.append(f"r={r['r']}: error {r['error']}")
            else:
                out.append(f"r={r['r']}: {1000 * r['step_s']:.1f} ms/step "
                           f"({r['step_over_floor']:.2f}× its GEMM floor), peak {r['peak_gib']:.1f} GiB")
        return out
    if name == "train_b32":
        d = _load(raw / "train" / "train_throughput.json") or {}
        return [f"{r['row']}: {r['images_per_s']:.0f} images/s at batch {r['batch']} ({r['precision']}), head "
                f"{100 * r['head_share']:.1f}% of the step" for r in d.get("rows", [])]
    if name == "kmeans_gpu":
        r = _load(raw / "kmeans_gpu.json")
        return [f"N={r['n']:,} D={r['d']} K={r['k']:,}: {r['s_per_iter']:.3f} s/iteration "
                f"({r['gemm_tflops_per_s']:.1f} TFLOP/s of assignment GEMM)"] if r else []
    if name == "knn_gpu":
        d = _load(raw / "knn.json") or {}
        return [f"{r['method']} ({r['device']}) k={r['k']}: {r['queries_per_second']:,.0f} queries/s"
                for r in d.get("rows", []) if r.get("device") != "cpu"]
    if name == "extraction_cuda":
        r = _load(raw / "extraction.json")
        return [f"{r['end_to_end_per_s']:.0f} samples/s end to end vs {r['forward_only_per_s']:.0f} model only "
                f"({100 * r['ratio']:.0f}%), {r['workers']} workers"] if r else []
    return []


def gpu_name() -> str:
    try:
        import torch

        return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    except Exception:  # the report must still be written
        return "unknown"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("raw", help="gpu_check.sh's raw folder (steps.tsv and each step's JSON)")
    p.add_argument("out", help="folder for gpu_check.md and gpu_check.json")
    p.add_argument("--no-gpu", action="store_true", help="record that the machine has no CUDA GPU")
    a = p.parse_args(argv)
    raw, out = Path(a.raw), Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    gpu = "none" if a.no_gpu else gpu_name()
    steps = read_steps(raw)
    for s in steps:
        s["title"] = TITLES.get(s["name"], s["name"])
        s["figures"] = summarise(s["name"], raw, s) if s["state"] in ("passed", "refused", "failed") else []
    lines = [f"# gpu_check: {gpu}", "", f"host {platform.node()}, Python {platform.python_version()}", ""]
    if a.no_gpu:
        lines += ["No CUDA GPU on this machine: nothing was measured.", ""]
    lines += ["| step | state | seconds | result |", "|---|---|---|---|"]
    for s in steps:
        figures = "<br>".join(s["figures"]) or s["last_line"]
        lines.append(f"| {s['title']} | {s['state']} | {s['seconds']:.0f} | {figures.replace('|', '/')} |")
    (out / "gpu_check.md").write_text("\n".join(lines) + "\n")
    (out / "gpu_check.json").write_text(json.dumps({"gpu": gpu, "no_gpu": a.no_gpu, "steps": steps}, indent=2) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
