"""Two processes against one: the Partial FC head over a real process group (NCCL on CUDA).

    torchrun --standalone --nproc_per_node 2 benchmarks/nccl_check.py --device cuda --output nccl.json
    torchrun --standalone --nproc_per_node 2 benchmarks/nccl_check.py --device cpu            # gloo

Every rank first computes the one-process reference (the whole batch, all classes, float64) before
any process group exists, then joins the group and runs the same batch split over the ranks, with
the class centres sharded, the same sampled classes, and the toolkit's collectives. The loss, the
embedding gradients and the centre gradients must match the reference (float64, 1e-9 relative).

``--backend`` picks the group: ``auto`` is the toolkit's own choice (``unicom.runtime.distributed``:
NCCL on CUDA, each rank on the GPU of its local rank; gloo on the CPU). NCCL refuses two ranks
on one GPU, so on a one-GPU machine ``gpu_check.sh`` also runs ``--backend gloo`` with CUDA
tensors (gloo stages them through the host), which checks the CUDA code path of the head but
not NCCL itself. Rank 0 prints one JSON line and writes it to ``--output``.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

C, D = 1000, 64
SPLIT = (40, 24)  # uneven local batches
HEAD = dict(sample_rate=0.3, feature_sample_dim=48, margin="arcface", m2=0.5, scale=32.0, subcenters=1, seed=3)


def max_rel_err(a, b) -> float:
    """max |a - b| / max(|b|, tiny): one number per compared tensor."""
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-30))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cuda", help="cuda or cpu")
    p.add_argument("--backend", default="auto", choices=("auto", "gloo"),
                   help="auto: the toolkit's choice (NCCL on CUDA, gloo on the CPU); "
                        "gloo: gloo with tensors on --device")
    p.add_argument("--output", default=None, help="write rank 0's result as JSON here")
    p.add_argument("--tolerance", type=float, default=1e-9, help="largest relative error that passes")
    a = p.parse_args(argv)

    import torch
    import torch.distributed as dist

    from unicom.losses import PartialFC
    from unicom.runtime.distributed import init_distributed

    rank, world = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    if world != len(SPLIT):
        raise SystemExit(f"nccl_check: run it with torchrun --nproc_per_node {len(SPLIT)} (WORLD_SIZE is {world})")
    g = torch.Generator().manual_seed(0)
    emb = torch.randn(sum(SPLIT), D, generator=g, dtype=torch.float64)
    labels = torch.randint(0, C, (sum(SPLIT),), generator=g)

    # the reference: one process, whole batch (no process group exists yet)
    local = int(os.environ.get("LOCAL_RANK", 0))
    gpu = local % max(1, torch.cuda.device_count())
    dev = torch.device("cpu") if a.device == "cpu" else torch.device(f"cuda:{gpu}")
    one = PartialFC(C, D, **HEAD).double().to(dev)
    e1 = emb.clone().to(dev).requires_grad_(True)
    loss1 = one(e1, labels.to(dev))
    loss1.backward()
    sample, ref_centre_grad = one.last_sample, one.dense_weight_grad()

    if a.backend == "auto":
        ctx = init_distributed(a.device)
        dev = ctx.device
    else:
        dist.init_process_group("gloo")
    backend = dist.get_backend()
    lo, hi = sum(SPLIT[:rank]), sum(SPLIT[:rank + 1])
    head = PartialFC(C, D, **HEAD).double().to(dev)
    e = emb[lo:hi].clone().to(dev).requires_grad_(True)
    loss = head(e, labels[lo:hi].to(dev), class_index=sample.to(dev))
    loss.backward()
    ref_rows = ref_centre_grad[head.class_start:head.class_end].to(dev)
    errs = torch.tensor([max_rel_err(loss.detach(), loss1.detach().to(dev)),
                         max_rel_err(e.grad, e1.grad[lo:hi].to(dev)),
                         max_rel_err(head.dense_weight_grad(), ref_rows)], dtype=torch.float64, device=dev)
    dist.all_reduce(errs, op=dist.ReduceOp.MAX)
    result = {"backend": backend, "device": str(dev), "world_size": world,
              "device_name": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
              "loss_rel_err": float(errs[0]), "emb_grad_rel_err": float(errs[1]),
              "centre_grad_rel_err": float(errs[2]), "tolerance": a.tolerance,
              "ok": bool(errs.max() <= a.tolerance)}
    dist.destroy_process_group()
    if rank == 0:
        print(json.dumps(result), flush=True)
        if a.output:
            from unicom.formats.atomic_io import write_json

            write_json(a.output, result)
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
