"""``unicom-cluster`` / ``python -m clustering.cli``: CLIP features → faiss k-means → labels.

Example (the sample set, on the CPU)::

    python -m clustering.cli --data 'data/sample/shards' --out runs/cluster --k 48 \
        --model TinyCLIP-demo --pretrained none --method flat

With several processes, start it with torchrun (``make cluster NPROC=8``); shards are shared
out over the ranks. See docs/clustering.md.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from typing import List, Optional

from .extract import ExtractConfig
from .fusion import MODALITIES
from .kmeans import DEFAULT_INIT, INIT_METHODS
from .pipeline import METHODS, STAGES, ClusterConfig

log = logging.getLogger("clustering.cli")


def default_workers() -> int:
    """DataLoader workers per process: the CPUs shared by the processes on this node, at most 8."""
    local = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    return max(1, min(8, (os.cpu_count() or 1) // local))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="unicom-cluster",
        description="Embed LAION-style shards with an open_clip model (image + caption fused), cluster the "
                    "features with faiss spherical k-means into K pseudo classes and label every sample.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    io = p.add_argument_group("data and outputs")
    io.add_argument("--data", required=True,
                    help="shards: brace pattern ('data/{00000..00099}.tar'), a directory or a list file")
    io.add_argument("--out", required=True, help="output folder (features/, centroids.npy, labels/, report)")
    io.add_argument("--stage", choices=STAGES, default="all", help="run one stage, or all of them")
    io.add_argument("--report-json", default=None, help="where to write the report JSON (default OUT/report.json)")
    io.add_argument("--truth-field", default="concept",
                    help="json field carried as ground truth for purity/NMI ('none' to ignore)")
    io.add_argument("--tiny", type=int, default=5, help="clusters with fewer samples count as tiny in the report")

    m = p.add_argument_group("feature extraction")
    m.add_argument("--model", default="ViT-L-14",
                   help="open_clip model name (ViT-L-14, …, TinyCLIP-demo) or local-dir:/path")
    m.add_argument("--pretrained", required=True,
                   help="local weights file (.bin/.pt/.safetensors), or 'none' for a seeded random model "
                        "(demo/tests). Download tags are refused")
    m.add_argument("--modality", choices=MODALITIES, default="both", help="embed image and caption, or one")
    m.add_argument("--image-weight", type=float, default=1.0, help="fusion weight of the image embedding")
    m.add_argument("--text-weight", type=float, default=1.0, help="fusion weight of the caption embedding")
    m.add_argument("--batch-size", type=int, default=256, help="samples per forward pass")
    m.add_argument("--workers", type=int, default=default_workers(),
                   help="DataLoader worker processes per rank (decode, transform, tokenise)")
    m.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    m.add_argument("--precision", default="bf16", choices=("bf16", "fp16", "fp32"),
                   help="autocast precision on CUDA (the CPU always runs fp32)")

    k = p.add_argument_group("k-means")
    k.add_argument("--k", type=int, default=1_000_000, help="number of pseudo classes (Unicom: 1M for LAION-400M)")
    k.add_argument("--method", choices=METHODS, default="flat",
                   help="flat k-means; two-level (coarse then fine, for large K); hierarchical (each rank "
                        "clusters its part into K, the union is clustered again into K)")
    k.add_argument("--iters", type=int, default=20, help="k-means iterations (per level)")
    k.add_argument("--max-points-per-centroid", type=int, default=256,
                   help="training sample cap: at most K times this many points are used")
    k.add_argument("--seed", type=int, default=1234, help="seed of the training sample and the initial centroids")
    k.add_argument("--init", choices=INIT_METHODS, default=DEFAULT_INIT,
                   help="centroid seeding: auto (afk-mc2 up to K=10,000, random above), afk-mc2 (fast k-means++ "
                        "approximation, cost ~K^2), kmeans++ or random (faiss' default)")
    k.add_argument("--coarse-k", type=int, default=None,
                   help="two-level: number of coarse clusters (default ⌈√K⌉)")
    k.add_argument("--parts", type=int, default=0,
                   help="hierarchical: parts per rank (0: 1 per rank under torchrun, 4 in a single process)")
    k.add_argument("--local-method", choices=("flat", "two-level"), default="flat",
                   help="hierarchical: how each part and the union are clustered")
    k.add_argument("--gpus", default="auto", help="faiss GPUs: auto, none, or a list like 0,1")
    k.add_argument("--redo-kmeans", action="store_true", help="recompute the centroids even if they match")
    k.add_argument("--checkpoint-every", type=float, default=300.0,
                   help="flat k-means: save the centroids at most every this many seconds; a killed run resumes there")
    k.add_argument("--faiss-verbose", action="store_true", help="let faiss print its own progress")

    a = p.add_argument_group("assignment")
    a.add_argument("--approx-assign", action="store_true",
                   help="nearest centroid by an HNSW graph over the centroids (CPU, large K)")
    a.add_argument("--hnsw-m", type=int, default=32, help="HNSW graph degree for --approx-assign")
    a.add_argument("--ef-search", type=int, default=128, help="HNSW search breadth for --approx-assign")
    a.add_argument("--assign-chunk", type=int, default=65536, help="features per search call")

    o = p.add_argument_group("run")
    o.add_argument("--dist-timeout-min", type=int, default=24 * 60,
                   help="collective timeout; ranks wait for rank 0's k-means at a barrier")
    o.add_argument("--log-level", default="INFO", help="logging level of this package")
    return p


def _setup_logging(level: str, rank: int) -> None:
    from unicom.distributed import env_world

    fmt = f"%(asctime)s [rank {rank}] %(name)s: %(message)s" if rank or env_world()[1] != 1 \
        else "%(asctime)s %(name)s: %(message)s"
    logging.basicConfig(level=logging.WARNING, format=fmt, datefmt="%H:%M:%S", stream=sys.stderr)
    logging.getLogger("clustering").setLevel(level.upper() if rank == 0 else "WARNING")


def run(args: argparse.Namespace) -> dict:
    from unicom.distributed import cleanup_distributed, init_distributed
    from unicom.shards import expand_shards, shard_name, unique_names

    from . import pipeline

    ctx = init_distributed(args.device, timeout_minutes=args.dist_timeout_min)
    _setup_logging(args.log_level, ctx.rank)
    t0 = time.time()
    try:
        paths = expand_shards(args.data)
        unique_names(paths)
        names = [shard_name(p) for p in paths]
        if args.k < 1:
            raise ValueError(f"--k must be >= 1, got {args.k}")
        ecfg = ExtractConfig(model=args.model, pretrained=args.pretrained, modality=args.modality,
                             image_weight=args.image_weight, text_weight=args.text_weight,
                             batch_size=args.batch_size, workers=args.workers, precision=args.precision,
                             truth_field=None if args.truth_field.lower() == "none" else args.truth_field)
        ccfg = ClusterConfig(k=args.k, method=args.method, niter=args.iters,
                             max_points_per_centroid=args.max_points_per_centroid, seed=args.seed, init=args.init,
                             coarse_k=args.coarse_k, parts=args.parts, local_method=args.local_method,
                             gpus=args.gpus, approx_assign=args.approx_assign, hnsw_m=args.hnsw_m,
                             ef_search=args.ef_search, assign_chunk=args.assign_chunk, redo_kmeans=args.redo_kmeans,
                             checkpoint_every_s=args.checkpoint_every,
                             faiss_verbose=args.faiss_verbose, tiny=args.tiny, report_json=args.report_json)
        summary: dict = {}
        extra = {}
        if args.stage in ("all", "extract"):
            t = time.time()
            res = pipeline.run_extract(paths, args.out, ecfg, ctx)
            summary["extract"] = {"seconds": time.time() - t, "samples": res.samples_total,
                                  "shards_written": sum(len(w) for w in res.written_by_rank),
                                  "shards_already_done": res.already_done}
            extra["extract_seconds"] = time.time() - t
            _free_accelerator()
        centroids = None
        if args.stage in ("all", "kmeans"):
            t = time.time()
            centroids = pipeline.run_kmeans(args.out, names, ccfg, ctx)
            summary["kmeans"] = {"seconds": time.time() - t}
        if args.stage in ("all", "assign"):
            if centroids is None:
                from pathlib import Path

                from unicom.atomic_io import read_npy

                cpath = Path(args.out) / pipeline.CENTROIDS
                if not cpath.is_file():
                    raise ValueError(f"{cpath} not found: run the k-means stage first (--stage kmeans or all)")
                centroids = read_npy(cpath)
            if centroids.shape[0] != args.k:
                raise ValueError(f"{args.out}/centroids.npy holds {centroids.shape[0]} centroids but --k is {args.k}")
            t = time.time()
            summary["report"] = pipeline.run_assign(args.out, names, centroids, ccfg, ctx, extra_report=extra)
            summary["assign"] = {"seconds": time.time() - t}
        if ctx.is_main:
            log.info("done in %.1fs", time.time() - t0)
        return summary
    finally:
        cleanup_distributed()


def _free_accelerator() -> None:
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def main(argv: Optional[List[str]] = None) -> int:
    from unicom.run_lock import run_locked

    args = build_parser().parse_args(argv)
    return run_locked("unicom-cluster", args.out, lambda: run(args))  # one job per output folder


if __name__ == "__main__":
    raise SystemExit(main())
