"""Feature-extraction throughput: images per second end to end against the forward pass alone.

End to end = `clustering.extract.extract_features` over real shards: tar reading, JPEG decode,
the model's eval transform and tokenisation in DataLoader workers, the forward passes (image +
text towers, fused), fp16 features written per shard. Forward alone = the same model on
ready-made batches already in memory. The data path keeps the model busy when the two rates
are close; the target is >= 80%. Also printed: the fraction of the end-to-end wall time the
main process spent in forward passes ("model busy").

    python benchmarks/extraction.py --quick                       # TinyCLIP-demo on the sample set
    python benchmarks/extraction.py --model ViT-B-32 --pretrained none --device cuda --workers 8
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))


def forward_rate(model, batch_images, batch_tokens, device, precision, wi, wt, seconds: float) -> float:
    """Samples per second of the fused forward pass on in-memory batches (after a warm-up)."""
    import torch

    from clustering.fusion import fuse
    from unicom.runtime.device import autocast

    def ctx():
        return autocast(device, precision)
    imgs, toks = batch_images.to(device), batch_tokens.to(device)

    def step():
        with torch.inference_mode(), ctx():
            i = model.encode_image(imgs) if wi > 0 else None
            t = model.encode_text(toks) if wt > 0 else None
            return fuse(i, t, wi, wt).to(torch.float16).cpu()

    with ctx():  # one outer context, as the extraction holds: the weights are cast once
        for _ in range(2):
            step()
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds or n < 3 * len(imgs):
            step()
            n += len(imgs)
        return n / (time.perf_counter() - t0)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="the sample set with TinyCLIP-demo, a few seconds each")
    p.add_argument("--data", default=None, help="shards (default: a sample set generated into a temp dir)")
    p.add_argument("--model", default="TinyCLIP-demo")
    p.add_argument("--pretrained", default="none")
    p.add_argument("--modality", default="both", choices=("both", "image", "text"))
    p.add_argument("--device", default="auto")
    p.add_argument("--precision", default="auto")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--workers", type=int, default=None, help="DataLoader workers (default: CPUs, at most 8)")
    p.add_argument("--per-concept", type=int, default=60, help="sample-set size when --data is not given")
    p.add_argument("--json", default=None)
    a = p.parse_args(argv)

    import torch
    from PIL import Image

    from clustering.extract import ExtractConfig, extract_features
    from clustering.fusion import modality_weights
    from unicom.data.shards import expand_shards
    from unicom.models.clip_loader import create_clip
    from unicom.runtime.distributed import init_distributed
    from unicom.runtime.precision import resolve_precision

    workers = a.workers if a.workers is not None else max(1, min(8, os.cpu_count() or 1))
    tmp = tempfile.mkdtemp(prefix="bench_extract_")
    try:
        if a.data is None:
            from unicom.sample_data import generate_sample_set

            per = 20 if a.quick else a.per_concept
            generate_sample_set(os.path.join(tmp, "sample"), seed=0, per_concept=per, heldout_per_concept=1,
                                shard_size=250)
            a.data = os.path.join(tmp, "sample", "shards")
        shards = expand_shards(a.data)
        ctx = init_distributed(a.device)
        bundle = create_clip(a.model, a.pretrained, device=ctx.device)
        model, preprocess, tokenizer = bundle
        wi, wt = modality_weights(a.modality)
        img = preprocess(Image.new("RGB", (96, 96), (120, 60, 200)))
        images = img[None].repeat(a.batch_size, 1, 1, 1)
        tokens = tokenizer(["a purple circle on a plain background"] * a.batch_size)
        fwd = forward_rate(model, images, tokens, ctx.device, a.precision, wi, wt, seconds=3 if a.quick else 10)

        cfg = ExtractConfig(model=a.model, pretrained=a.pretrained, modality=a.modality, batch_size=a.batch_size,
                            workers=workers, precision=a.precision, log_every_s=1e9)
        out = os.path.join(tmp, "out")
        t = time.perf_counter()
        res = extract_features(shards, out, cfg, ctx, model_bundle=bundle)
        wall = time.perf_counter() - t
        e2e = res.samples / res.seconds
        row = {"model": a.model, "device": str(ctx.device), "precision": resolve_precision(a.precision, ctx.device),
               "batch_size": a.batch_size, "workers": workers, "cpus": os.cpu_count(),
               "samples": res.samples, "shards": len(shards), "forward_only_per_s": fwd, "end_to_end_per_s": e2e,
               "ratio": e2e / fwd, "model_busy": res.model_busy, "loop_seconds": res.seconds,
               "wall_seconds_incl_setup": wall, "torch_threads": torch.get_num_threads()}
        print(f"model {a.model} on {row['device']} ({row['precision']}), batch {a.batch_size}, {workers} workers, "
              f"{os.cpu_count()} CPUs, {res.samples} samples in {len(shards)} shards")
        print(f"  forward pass alone : {fwd:9.1f} samples/s")
        print(f"  end to end         : {e2e:9.1f} samples/s  ({100 * e2e / fwd:.0f}% of the forward-only rate)")
        print(f"  model busy         : {100 * res.model_busy:9.0f}% of the extraction loop's wall time")
        if a.json:
            from unicom.formats.atomic_io import write_json

            write_json(a.json, row)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
