"""Training throughput: images per second of the full training step, and the head's share of it.

    python benchmarks/train_throughput.py                  # the demo (tiny) config on this CPU, 48 and 1M classes
    python benchmarks/train_throughput.py --quick          # fewer steps (a smoke run)
    python benchmarks/train_throughput.py --device cuda    # + ViT-B/32 with 1M classes (r = 0.1, bf16)
    python benchmarks/train_throughput.py --device cuda --rows b32-1m --batch 512
    python benchmarks/train_throughput.py --finetune       # end to end: the tiny fine-tuning preset on an image folder

A step is what ``unicom.train.loop`` does: backbone forward, the Partial FC head's forward and
backward (embeddings gathered, sampled centres, distributed softmax), backbone backward (split at
the embedding, the loop's own ``forward_backward``), gradient clipping, and both optimizers'
steps. The data pipeline is left out: the batches are random tensors already on the device, so
the figure is the compute rate the loaders have to keep up with. The measure is taken on one
process; DDP's gradient all-reduce is not in it.

The head's share counts the head's forward + backward and the sparse centre update. The
backbone's share counts its forward + backward, the clipping and its AdamW step. On CUDA every
part is timed between ``torch.cuda.synchronize()`` calls. Each row reports the median over the
timed steps, after warm-up steps.

Writes ``OUT/train_throughput.json`` (default OUT: runs/bench).
"""
from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

ROWS = {
    # name: (config file, overrides, number of classes, per-device batch)
    "demo-cpu": ("configs/demo.yaml", [], 48, None),
    # the same backbone with a LAION-sized head (1M classes, r = 0.1): where the head starts to matter
    "demo-1m-cpu": ("configs/demo.yaml", ["head.sample_rate=0.1"], 1_000_000, None),
    "b32-1m": ("configs/vit_b32_laion400m.yaml", ["model.grad_checkpointing=false"], 1_000_000, 256),
    # fine-tuning: the official SOP ViT-B/32 recipe (11,318 SOP training classes, every centre, batch 64);
    # random init here (model.init_from=null): the step costs the same
    "ft-sop-b32": ("configs/finetune/sop_vit_b32.yaml", ["model.init_from=null"], 11_318, 64),
}


def _sync(device):
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_row(name: str, device_name: str, steps: int, warmup: int, batch=None, precision=None, classes=None,
            threads=None):
    import torch

    from unicom.runtime.device import seed_everything
    from unicom.runtime.precision import resolve_precision
    from unicom.train.config import load_config
    from unicom.train.loop import StepTimes, build_head, forward_backward
    from unicom.train.model import build_backbone
    from unicom.train.optim import build_backbone_optimizer, build_head_optimizer
    from unicom.train.precision import LossScaler, needs_loss_scaling

    cfg_file, overrides, n_classes, row_batch = ROWS[name]
    cfg = load_config(ROOT / cfg_file, overrides + [f"train.device={device_name}"])
    device = torch.device(device_name if device_name != "cuda" else "cuda:0")
    if device.type == "cuda":  # as the trainer does
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = bool(cfg.train.tf32)
    if device.type == "cpu" and (threads or cfg.train.threads):
        torch.set_num_threads(int(threads or cfg.train.threads))  # the config's (demo: 1), as the trainer does
    B = int(batch or row_batch or cfg.data.batch_size)
    C = int(classes or n_classes)
    prec = precision or cfg.train.precision
    seed_everything(0)
    model = build_backbone(cfg).to(device).train()
    head = build_head(cfg, C, model.embed_dim).to(device).train()
    opt_b, opt_h = build_backbone_optimizer(model, cfg), build_head_optimizer(head, cfg)
    scaler = LossScaler(needs_loss_scaling(device, prec))
    S = model.image_size
    gen = torch.Generator(device="cpu").manual_seed(0)
    images = torch.randn(B, 3, S, S, generator=gen).to(device)
    labels = torch.randint(0, C, (B,), generator=gen).to(device)
    clip = cfg.optim.clip_grad_norm

    totals, heads, backbones = [], [], []
    for i in range(warmup + steps):
        times = StepTimes()
        _sync(device)
        t0 = time.perf_counter()
        forward_backward(model, head, [(images, labels)], device, prec, scaler, timing=True, times=times)
        _sync(device)
        t1 = time.perf_counter()
        params = [p for p in model.parameters() if p.grad is not None]
        scaler.unscale_(params)
        torch.nn.utils.clip_grad_norm_(params, float(clip) if clip else float("inf"))
        opt_b.step()
        _sync(device)
        t2 = time.perf_counter()
        opt_h.step(grad_scale=scaler.scale if scaler.enabled else None)
        _sync(device)
        t3 = time.perf_counter()
        opt_b.zero_grad(set_to_none=True)
        opt_h.zero_grad(set_to_none=True)
        if i >= warmup:
            total = t3 - t0
            head_t = times.head_s + (t3 - t2)
            totals.append(total)
            heads.append(head_t)
            backbones.append(times.backbone_s + (t2 - t1))
    step = statistics.median(totals)
    share = statistics.median(h / t for h, t in zip(heads, totals))
    row = {"row": name, "device": str(device), "device_name": _device_name(device), "model": str(cfg.model.name),
           "params_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 2), "image_size": S,
           "embed_dim": model.embed_dim, "classes": C, "sample_rate": cfg.head.sample_rate,
           "feature_sample_dim": head.feature_sample_dim, "batch": B,
           "precision": resolve_precision(prec, device),
           "step_s": step, "images_per_s": B / step, "head_share": share,
           "head_s": statistics.median(heads), "backbone_s": statistics.median(backbones), "steps": steps,
           "threads": torch.get_num_threads()}
    if device.type == "cuda":
        row["peak_mem_gib"] = torch.cuda.max_memory_allocated(device) / 1024 ** 3
    return row


def finetune_row(steps: int, batch: int, workers: int) -> dict:
    """End to end (reading JPEGs, timm's RandAugment, the step, logging): ``unicom-train --dataset
    image_folder`` with configs/finetune/tiny.yaml on a generated folder (50 classes × 20 images of
    64 px); images/s is the median of log.csv's per-step rows after the first 3 steps."""
    import tempfile

    import numpy as np
    from PIL import Image

    from unicom.train.cli import main as train_main
    from unicom.train.run_log import read_log

    with tempfile.TemporaryDirectory() as tmp:
        rng = np.random.default_rng(0)
        for c in range(50):
            (Path(tmp) / "data" / f"c{c:02d}").mkdir(parents=True)
            for j in range(20):
                Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(
                    Path(tmp) / "data" / f"c{c:02d}" / f"{j}.jpg")
        rc = train_main(["--config", str(ROOT / "configs" / "finetune" / "tiny.yaml"), "--dataset", "image_folder",
                         "--data-root", str(Path(tmp) / "data"), "--output", str(Path(tmp) / "run"),
                         f"train.max_steps={steps + 3}", f"data.batch_size={batch}", f"data.num_workers={workers}"])
        if rc != 0:
            raise RuntimeError("the fine-tuning run failed")
        rows = read_log(Path(tmp) / "run")[3:]
    ips = statistics.median(r["images_per_s"] for r in rows)
    return {"row": "finetune-tiny-e2e", "device": "cpu", "device_name": _device_name_cpu(), "classes": 50,
            "batch": batch, "workers": workers, "steps": len(rows), "images_per_s": ips,
            "data_time_s": statistics.median(r["data_time_s"] for r in rows),
            "step_s": statistics.median(r["step_time_s"] for r in rows), "transform": "timm (rand-m9-mstd0.5-inc1)"}


def _device_name_cpu() -> str:
    return platform.processor() or platform.machine()


def _device_name(device) -> str:
    import torch

    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return platform.processor() or platform.machine()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cpu", help="cpu (the demo row) or cuda (adds the ViT-B/32 1M-class row)")
    p.add_argument("--rows", nargs="*", help=f"rows to run (default: by device); known: {', '.join(ROWS)}")
    p.add_argument("--steps", type=int, default=None, help="timed steps per row")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--batch", type=int, default=None, help="per-device batch (default: the row's)")
    p.add_argument("--precision", default=None, help="CUDA autocast: bf16 | fp16 | fp32 (default: the config's)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: the config's train.threads)")
    p.add_argument("--quick", action="store_true", help="a few steps only")
    p.add_argument("--finetune", action="store_true", help="only the end-to-end row of the tiny fine-tuning preset "
                   "(configs/finetune/tiny.yaml, an image folder, timm's RandAugment) on the CPU")
    p.add_argument("--out", default=str(ROOT / "runs" / "bench"))
    args = p.parse_args(argv)
    if args.finetune:
        r = finetune_row(args.steps or (5 if args.quick else 20), args.batch or 32, 1)
        print(f"{r['row']}: {r['images_per_s']:.1f} images/s (batch {r['batch']}, {r['workers']} loader worker, "
              f"step {r['step_s']:.3f} s, data wait {r['data_time_s']:.3f} s) on {r['device_name']}")
        from unicom.formats.atomic_io import write_json

        write_json(Path(args.out) / "finetune_throughput.json", r)
        return 0
    rows = args.rows or (["demo-cpu", "demo-1m-cpu"] if args.device == "cpu" else ["demo-cpu", "b32-1m"])
    steps = args.steps or (5 if args.quick else 20)
    results = []
    print(f"{'row':<12} {'device':<28} {'classes':>9} {'batch':>6} {'prec':>5} {'thr':>3} {'step s':>8} "
          f"{'img/s':>8} {'head %':>7}")
    for name in rows:
        dev = "cpu" if name.endswith("-cpu") else args.device
        r = run_row(name, dev, steps, args.warmup, None if name.endswith("-cpu") else args.batch, args.precision,
                    threads=args.threads)
        results.append(r)
        print(f"{r['row']:<12} {r['device_name'][:28]:<28} {r['classes']:>9,} {r['batch']:>6} {r['precision']:>5} "
              f"{r['threads']:>3} {r['step_s']:>8.4f} {r['images_per_s']:>8.1f} {100 * r['head_share']:>6.1f}%",
              flush=True)
    out = Path(args.out)
    import torch

    from unicom.formats.atomic_io import write_json

    write_json(out / "train_throughput.json", {"torch": torch.__version__, "rows": results})
    print(f"wrote {out / 'train_throughput.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
