"""``make clip``: pretrain the tiny open_clip model (TinyCLIP-demo) on the sample shards' image–caption
pairs, so that the demo clusters with a CLIP that has learned something.

Why a short loop over open_clip's own ``ClipLoss`` and not ``python -m open_clip_train.main``:
the trainer that ships with open_clip_torch 3.3 imports pandas (not a dependency of this toolkit)
and its webdataset pipeline shuffles samples with ``wds.shuffle`` seeded from the pid and the clock,
so two runs never see the same batches. The demo promises the same numbers on every run, and the
whole sample set (~2,160 pairs of 96-px images) fits in memory, so this loop decodes it once, in
shard order, and draws every batch from a seeded generator: same weights on every run with the same
thread count (``--threads``). The model, tokenizer, transform and loss are open_clip's.

Only the training shards are read; the held-out concepts (``heldout/``) never are.
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

from ..cli.dataclass_args import add_dataclass_arguments, dataclass_from_namespace, option
from ..cli.flags import HelpFormatter, fail
from ..cli.log_setup import LEVELS, setup_logging

log = logging.getLogger(__name__)


@dataclass
class ClipPretrainArgs:
    """Every flag of ``make clip`` (``python -m unicom.demo.clip_pretrain``) and its default; the
    training settings among them are also the cache key recorded beside the weights."""

    data: str = option(None, "shards: brace pattern, a directory of .tar or a list file", required=True)
    output: str = option(None, "weights file to write (.safetensors); a .json beside it records the settings and "
                         "the loss", required=True)
    clip_model: str = option("TinyCLIP-demo", "open_clip model name (random init, then trained)")
    epochs: int = option(15, "passes over the pairs")
    batch_size: int = option(128, "pairs per step (the contrastive batch)")
    lr: float = option(2e-3, "AdamW peak learning rate (cosine decay)")
    weight_decay: float = option(0.1, "AdamW weight decay")
    warmup_steps: int = option(20, "linear warm-up steps")
    seed: int = option(0, "random seed (initial weights and batch order)")
    threads: int = option(1, "torch CPU threads; fixed so that the result does not depend on the core count (one is "
                          "fastest on a busy 2-core machine: with two, each step waits at barriers)")
    precision: str = option("auto", "autocast precision of the two towers (auto: bf16 on CPUs with native bf16, else "
                            "fp32); the contrastive loss stays float32", choices=("auto", "bf16", "fp32"))
    force: bool = option(False, "retrain even if OUTPUT exists with the same settings")
    log_level: str = option("INFO", "logging level", choices=LEVELS, type=str.upper)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m unicom.demo.clip_pretrain", description=(
        "Contrastively pretrain a small open_clip model on the image-caption pairs of webdataset shards "
        "(CPU, deterministic) and save its weights as safetensors, for --clip-pretrained."),
        formatter_class=HelpFormatter)
    add_dataclass_arguments(p, ClipPretrainArgs)
    return p


def load_pairs(shards: List[str], preprocess, tokenizer):
    """Decode every good (image, caption) pair of ``shards`` in order.

    Returns ``(images [N, 3, S, S] float32, tokens [N, context] int64, skip counts)``."""
    import torch

    from ..data.wds_reader import SkipCounter, read_shard_samples

    skips = SkipCounter()
    samples = read_shard_samples(shards, skips, need_image=True, need_caption=True)
    if not samples:
        raise ValueError(f"no readable image-caption pairs in {len(shards)} shard(s)")
    images = torch.stack([preprocess(s.image) for s in samples])
    tokens = tokenizer([s.caption for s in samples])
    return images, tokens, skips.as_dict()


def train_clip(model, images, tokens, epochs: int, batch_size: int, lr: float, weight_decay: float,
               warmup_steps: int, seed: int, progress: bool = True, precision: str = "fp32") -> List[float]:
    """Train ``model`` in place with open_clip's ``ClipLoss`` (symmetric InfoNCE over the batch);
    return the loss of every step. Batches are a seeded permutation per epoch (the last partial
    batch is dropped: a contrastive batch of a few pairs is too easy). The towers run under
    autocast for ``precision`` on the CPU; the loss is computed in float32."""
    import torch
    from open_clip.loss import ClipLoss
    from tqdm import tqdm

    from ..runtime.device import autocast

    cpu = torch.device("cpu")
    n = images.shape[0]
    batch_size = min(batch_size, n)
    per_epoch = n // batch_size
    total = per_epoch * epochs
    # The token embedding table (49,408 x width, ~90% of TinyCLIP-demo's weights) stays at its
    # random init: the captions use a few dozen tokens, random codes tell them apart, and a dense
    # AdamW update of the whole table would cost most of each CPU step.
    model.token_embedding.weight.requires_grad_(False)
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue  # open_clip's rule: no decay on gains, biases, logit scale
        (no_decay if p.ndim < 2 or "logit_scale" in name or "positional_embedding" in name else decay).append(p)
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=lr, betas=(0.9, 0.98), eps=1e-6)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / max(1, warmup_steps))
                                              * 0.5 * (1 + math.cos(math.pi * min(s, total) / total)))
    loss_fn = ClipLoss()
    gen = torch.Generator().manual_seed(seed)
    losses: List[float] = []
    model.train()
    bar = tqdm(total=total, desc="clip pretrain", unit="step", disable=not progress)
    for _ in range(epochs):
        order = torch.randperm(n, generator=gen)
        for b in range(per_epoch):
            idx = order[b * batch_size:(b + 1) * batch_size]
            with autocast(cpu, precision):
                img_f = model.encode_image(images[idx], normalize=True)
                txt_f = model.encode_text(tokens[idx], normalize=True)
            loss = loss_fn(img_f.float(), txt_f.float(), model.logit_scale.exp())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            with torch.no_grad():  # CLIP's clamp: the temperature never goes below 0.01
                model.logit_scale.clamp_(0, math.log(100))
            losses.append(float(loss.detach()))
            bar.update(1)
            bar.set_postfix(loss=f"{losses[-1]:.3f}")
    bar.close()
    model.eval()
    return losses


def main(argv: Optional[List[str]] = None) -> int:
    args = dataclass_from_namespace(ClipPretrainArgs, build_parser().parse_args(argv))
    setup_logging("clip_pretrain", args.log_level)
    out = Path(args.output)
    if out.suffix != ".safetensors":
        return fail("clip_pretrain",
                    f"--output {out} must end in .safetensors (the weights are saved with safetensors)")
    from ..data.shards import expand_shards

    try:
        shards = expand_shards(args.data)
    except (ValueError, FileNotFoundError) as exn:
        return fail("clip_pretrain", f"--data {args.data}: {exn}")
    settings = {k: getattr(args, k) for k in ("clip_model", "epochs", "batch_size", "lr", "weight_decay",
                                              "warmup_steps", "seed", "threads")}
    from ..runtime.precision import announce_precision

    settings["precision"] = announce_precision(args.precision, "cpu", "CLIP pretraining")  # a change retrains
    # The shards' names, sizes and times: a regenerated sample set retrains (cheap next to stale weights).
    settings["shards"] = [[Path(s).name, os.stat(s).st_size, os.stat(s).st_mtime_ns] for s in shards]
    sidecar = out.with_suffix(".json")
    if out.is_file() and sidecar.is_file() and not args.force:
        if json.loads(sidecar.read_text()).get("settings") == settings:
            print(f"{out} is up to date (same shards and settings); --force retrains")
            return 0

    import torch
    from safetensors.torch import save

    from ..cli.run_lock import lock_output_dir
    from ..formats.atomic_io import write_bytes, write_json
    from ..models.clip_loader import create_clip
    from ..runtime.device import seed_everything

    torch.set_num_threads(max(1, args.threads))
    t0 = time.time()
    with lock_output_dir(out.parent, "clip_pretrain"):
        seed_everything(args.seed)
        model, preprocess, tokenizer = create_clip(args.clip_model, "none")
        images, tokens, skips = load_pairs(shards, preprocess, tokenizer)
        log.info("%d image-caption pairs from %d shards (skipped: %s) in %.1fs", len(images), len(shards),
                 skips or "none", time.time() - t0)
        losses = train_clip(model, images, tokens, args.epochs, args.batch_size, args.lr, args.weight_decay,
                            args.warmup_steps, args.seed, precision=settings["precision"])
        state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
        write_bytes(out, save(state))
        k = max(1, len(losses) // 10)
        info = {"settings": settings, "pairs": int(len(images)), "skipped": skips, "steps": len(losses),
                "loss_first_tenth": sum(losses[:k]) / k, "loss_last_tenth": sum(losses[-k:]) / k,
                "logit_scale": float(model.logit_scale.detach().exp()), "seconds": time.time() - t0, "loss": losses}
        write_json(sidecar, info, indent=1)
    print(f"CLIP pretraining: {len(images)} pairs, {len(losses)} steps, loss {info['loss_first_tenth']:.3f} "
          f"(first tenth) -> {info['loss_last_tenth']:.3f} (last tenth) in {info['seconds']:.0f}s; wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
