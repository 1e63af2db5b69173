"""``unicom-cluster`` / ``python -m clustering.cli``: CLIP features → faiss k-means → labels.

Example (the sample set, on the CPU)::

    python -m clustering.cli --data data/sample/shards --output runs/cluster --num-clusters 48 \
        --clip-model TinyCLIP-demo --clip-pretrained none --method flat

``--data`` takes what ``unicom-embed`` takes: shards (brace pattern, folder of .tar, list
file), an image folder or a list file of images. With several processes, start it with
torchrun (``make cluster NPROC=8``); shards are shared out over the ranks. See
docs/clustering.md. The flags are generated from ``clustering.config``'s dataclasses.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from typing import List, Optional

from unicom.cli.dataclass_args import add_dataclass_arguments, dataclass_from_namespace
from unicom.cli.flags import HelpFormatter, add_renamed
from unicom.embed.options import INPUT_TYPES  # --data is read by unicom.embed.dataset.resolve_input

from .config import STAGES, ClusterConfig, ExtractConfig
from .inputs import image_only_note, resolve_data

PROG = "unicom-cluster"
log = logging.getLogger(__name__)


def default_workers() -> int:
    """DataLoader workers per process: the CPUs shared by the processes on this node, at most 8."""
    local = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    return max(1, min(8, (os.cpu_count() or 1) // local))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG, formatter_class=HelpFormatter,
        description="Embed images (with their captions, where they have them) with an open_clip model, cluster "
                    "the features with faiss spherical k-means into K pseudo classes and label every sample.")
    io = p.add_argument_group("data and outputs")
    io.add_argument("--data", required=True,
                    help="shards ('data/{00000..00099}.tar', a folder of .tar, a list file), an image folder or a "
                         "list file of images")
    io.add_argument("--input-type", choices=INPUT_TYPES, default="auto", help="how to read --data (auto: guess)")
    add_renamed(io, "--output", "--out", required=True,
                help="output folder (features/, centroids.npy, labels/, report.json and the pictures)")
    io.add_argument("--stage", choices=STAGES, default="all", help="run one stage, or all of them")
    io.add_argument("--report-json", default=None,
                help="deprecated: the report is OUTPUT/report.json; this writes it elsewhere")
    m = p.add_argument_group("feature extraction")
    add_dataclass_arguments(m, ExtractConfig, skip=("workers",))
    m.add_argument("--workers", type=int, default=default_workers(),
                   help="DataLoader worker processes per process (decode, transform, tokenise)")
    m.add_argument("--device", default="auto", help="compute device: auto, cpu, cuda or cuda:N")
    k = p.add_argument_group("k-means, assignment and report")
    add_dataclass_arguments(k, ClusterConfig)
    o = p.add_argument_group("run")
    o.add_argument("--dist-timeout-min", type=int, default=24 * 60,
                   help="collective timeout; ranks wait for rank 0's k-means at a barrier")
    o.add_argument("--no-progress", action="store_true", help="turn the progress bars off")
    o.add_argument("--log-level", default="INFO", help="logging verbosity (DEBUG, INFO, WARNING)")
    return p


def _setup_logging(level: str, rank: int) -> None:
    from unicom.runtime.distributed import env_world

    fmt = f"%(asctime)s [rank {rank}] %(name)s: %(message)s" if rank or env_world()[1] != 1 \
        else "%(asctime)s %(name)s: %(message)s"
    logging.basicConfig(level=logging.WARNING, format=fmt, datefmt="%H:%M:%S", stream=sys.stderr)
    logging.getLogger("clustering").setLevel(level.upper() if rank == 0 else "WARNING")


def run(args: argparse.Namespace) -> dict:
    from unicom.runtime.distributed import cleanup_distributed, init_distributed

    from . import pipeline

    ctx = init_distributed(args.device, timeout_minutes=args.dist_timeout_min)
    _setup_logging(args.log_level, ctx.rank)
    if args.report_json:
        print(f"{PROG}: warning: --report-json is deprecated, the report is OUTPUT/report.json", file=sys.stderr)
    t0 = time.time()
    show = not args.no_progress and ctx.is_main
    try:
        inputs, names = resolve_data(args.data, args.input_type)
        truth = None if str(args.truth_field).lower() == "none" else args.truth_field
        ecfg = dataclass_from_namespace(ExtractConfig, args, truth_field=truth, progress=show)
        ccfg = dataclass_from_namespace(ClusterConfig, args, progress=show, precision=ecfg.precision)
        if ccfg.k < 1:
            raise ValueError(f"--num-clusters must be >= 1, got {ccfg.k}")
        note = image_only_note(inputs, ecfg)
        summary: dict = {}
        extra = {"features": note or f"modality {ecfg.modality}"}
        if args.stage in ("all", "extract"):
            t = time.time()
            res = pipeline.run_extract(inputs, args.output, ecfg, ctx)
            summary["extract"] = {"seconds": time.time() - t, "samples": res.samples_total,
                                  "shards_written": sum(len(w) for w in res.written_by_rank),
                                  "shards_already_done": res.already_done}
            extra["extract_seconds"] = time.time() - t
            _free_accelerator()
        centroids = None
        if args.stage in ("all", "kmeans"):
            t = time.time()
            centroids = pipeline.run_kmeans(args.output, names, ccfg, ctx)
            summary["kmeans"] = {"seconds": time.time() - t}
        if args.stage in ("all", "assign"):
            if centroids is None:
                centroids = pipeline.saved_centroids(args.output)
            if centroids.shape[0] != ccfg.k:
                raise ValueError(f"{args.output}/centroids.npy holds {centroids.shape[0]} centroids but "
                                 f"--num-clusters is {ccfg.k}")
            t = time.time()
            summary["report"] = pipeline.run_assign(args.output, names, centroids, ccfg, ctx, extra_report=extra,
                                                    inputs=inputs)
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
    from unicom.cli.run_lock import run_locked

    args = build_parser().parse_args(argv)
    # the lock before any heavy import (run() imports torch, faiss, open_clip): a second job into the
    # folder is refused within a second or two
    return run_locked(PROG, args.output, lambda: run(args))  # one job per output folder


if __name__ == "__main__":
    raise SystemExit(main())
