"""``unicom-train``: train a Unicom encoder on clustered shards, or fine-tune one on labelled data.

    python -m unicom.train.cli --config configs/demo.yaml --data 'data/{00000..00005}.tar' \
        --labels runs/cluster/labels --output runs/train [--resume] [section.key=value ...]
    python -m unicom.train.cli --config configs/finetune/sop_vit_b32.yaml --dataset sop \
        --data-root /data/Stanford_Online_Products --model ViT-B/32 --eval-every 1 --output runs/sop
    python -m unicom.train.cli --dataset shards --data data/sample/shards --label-key concept_id \
        --config configs/demo.yaml --output runs/supervised

Run it under ``torchrun`` for several processes (one per GPU, and across nodes); a single
process needs no launcher. Overrides are dotted ``section.key=value`` pairs, given bare or after
``--set``. Exit codes: 0 done (or stopped on purpose), 2 bad arguments or inputs (changed inputs
on --resume included), 3 non-finite loss or weights, 4 the output dir already holds a run (use
--resume), 5 another job is using the output dir.

Only argparse-level modules are imported before the arguments are parsed: ``--help`` is fast.
Progress messages go through ``logging`` to stdout (around the tqdm bar); errors are one line
on stderr; the final summary is printed.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Any, Dict, List, Optional

from ..cli.flags import fail

PROG = "unicom-train"


def build_parser() -> argparse.ArgumentParser:
    from .config import describe_defaults

    p = argparse.ArgumentParser(prog=PROG, description="Train a Unicom encoder (dual partial selection "
                                "margin softmax) on pseudo-labelled LAION-style shards, or fine-tune one on labelled "
                                "data (--dataset, --model).",
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="Overrides: section.key=value, e.g. optim.lr=5e-4 data.batch_size=256 "
                                "train.precision=fp16.\nEvery key and its built-in default (a --config preset "
                                "replaces some of them; see docs/training.md):\n" + describe_defaults() +
                                "\n\nExit codes: 0 done, 2 bad arguments or inputs, 3 non-finite loss or weights, "
                                "4 the output dir already holds a run (use --resume), 5 another job is using "
                                "the output dir.")
    p.add_argument("--config", help="YAML preset (configs/*.yaml); defaults apply where it is silent")
    p.add_argument("--dataset", default="shards", help="the labelled training source: shards (LAION-style, with "
                   "--labels or --label-key), sop, inshop, inaturalist, cub, cars, gldv2 (the train split of the "
                   "official layout under --data-root), image_folder (DIR/<class>/<image>) or csv (path,label[,split] "
                   "rows); default: shards")
    p.add_argument("--data", help="shards: brace pattern 'data/{00000..00099}.tar', a directory or a list file "
                   "(image_folder / csv: the folder or CSV file, same as --data-root); default: none")
    p.add_argument("--data-root", help="the dataset's unpacked root for --dataset sop|inshop|…|gldv2 (the folder "
                   "or CSV file for image_folder / csv); also the default --data-root of the evaluation; default: none")
    p.add_argument("--labels", help="shards: the labels dir from `make cluster` (OUT/labels; its sibling "
                   "OUT/features holds the keys); default: none")
    p.add_argument("--label-key", help="shards: read each sample's class id from this field of its json (e.g. "
                   "concept_id on the sample set) instead of --labels; default: none")
    p.add_argument("--model", help="start from this Unicom encoder (sets model.init_from): a released name "
                   "(ViT-B/32, ViT-B/16, ViT-L/14, ViT-L/14@336px), an official .pt, an export/ dir; for "
                   "model.type=open_clip an open_clip weights file; default: none (the config's model.init_from)")
    p.add_argument("--eval-every", type=float, default=None, metavar="N", help="evaluate every N epochs and at the end "
                   "(sets eval.every; default: the config's, 0 = off); RUN/export/ then holds the best encoder")
    p.add_argument("--benchmark", help="the benchmark evaluated while training (sets eval.benchmark; default: "
                   "--dataset's test split)")
    p.add_argument("--background", default=None, help="colour transparent images are composited onto: a name "
                   "(white, black, gray), #RRGGBB or R,G,B (sets data.background; default: the config's, white "
                   "as img2dataset's resizer; docs/images.md)")
    p.add_argument("--output", required=True, help="run dir (config.yaml, log.csv, checkpoints/, export/)")
    p.add_argument("--resume", action="store_true", help="continue from RUN/checkpoints/latest (starts fresh when "
                   "there is none; a damaged latest falls back to the previous complete checkpoint)")
    p.add_argument("--allow-changed-inputs", action="store_true", help="with --resume: continue although the "
                   "training inputs (shards, labels, or the --dataset files and --label-key) differ from those the run "
                   "started with (default: refuse)")
    p.add_argument("--log-level", default="INFO", help="logging level of the trainer's messages (default: INFO)")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="config override (repeatable); bare KEY=VALUE arguments work too")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides")
    return p


def _setup_logging(level: str) -> None:
    """Messages of the trainer on stdout, rank 0 at ``level``, the other ranks warnings only."""
    rank = os.environ.get("RANK", "0")
    fmt = "%(asctime)s %(message)s" if rank == "0" else f"%(asctime)s [rank {rank}] %(message)s"
    logging.basicConfig(level=logging.WARNING, format=fmt, datefmt="%H:%M:%S", stream=sys.stdout)
    logging.getLogger("unicom").setLevel(level.upper() if rank == "0" else "WARNING")


def _print_summary(summary: Dict[str, Any]) -> None:
    """The command's result: the skip counts and one line on where the run stands."""
    from ..data.wds_reader import SkipCounter

    print(SkipCounter(summary["skipped"]).report("skipped sample reads (all ranks)"), flush=True)
    if summary.get("finished"):
        print(f"done: step {summary['step']}, loss {summary['first_loss']} -> {summary['last_loss']}, "
              f"{summary['images_per_s']:.0f} images/s; encoder in {summary.get('export')}", flush=True)
    else:
        print(f"stopped at step {summary['step']} of {summary['total_steps']}; continue with --resume", flush=True)


def apply_source_flags(cfg, args) -> None:
    """Copy the source, encoder and evaluation flags into ``cfg`` and check that they fit
    together (one-line errors, before anything heavy runs)."""
    from ..datasets import canonical_name, training_datasets

    dataset = canonical_name(args.dataset)
    if dataset != "shards" and dataset not in training_datasets():
        raise ValueError(f"--dataset {args.dataset!r} is unknown; use shards, {', '.join(training_datasets())}")
    cfg.run.dataset, cfg.run.data_root, cfg.run.label_key = dataset, args.data_root, args.label_key
    if dataset == "shards":
        if not args.data:
            raise ValueError("--dataset shards needs --data (shards: a brace pattern, a directory or a list file)")
        if bool(args.labels) == bool(args.label_key):
            raise ValueError("--dataset shards needs exactly one of --labels (OUT/labels from `make cluster`) or "
                             "--label-key FIELD (a class id in each sample's json)")
    else:
        if args.labels or args.label_key:
            raise ValueError(f"--labels / --label-key are for --dataset shards; --dataset {dataset} brings its labels")
        if args.data and dataset in ("csv", "image_folder") and not args.data_root:
            cfg.run.data_root = args.data
        elif args.data:
            raise ValueError(f"--dataset {dataset} reads --data-root (the dataset's root), not --data")
        if not cfg.run.data_root:
            raise ValueError(f"--dataset {dataset} needs --data-root (the directory the dataset was unpacked into)")
    if args.model:
        cfg.model.init_from = args.model
    if args.eval_every is not None:
        cfg.eval.every = args.eval_every
    if args.benchmark:
        cfg.eval.benchmark = args.benchmark
    if cfg.eval.every < 0:
        raise ValueError("--eval-every must be ≥ 0 epochs")


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    from .config import load_config

    try:
        _setup_logging(args.log_level)
        cfg = load_config(args.config, list(args.sets) + list(args.overrides))
        if args.background:  # set directly: YAML would read "#RRGGBB" as a comment
            from .config import decode_policy

            cfg.data.background = args.background
            decode_policy(cfg)
        apply_source_flags(cfg, args)
    except (ValueError, FileNotFoundError) as exn:
        return fail(PROG, exn)
    from ..cli.run_lock import FolderLockedError, lock_output_dir
    from ..formats.atomic_io import OutputWriteError, check_writable

    try:  # before torch is imported: a read-only output or a folder in use is refused at once
        check_writable(args.output)
        with lock_output_dir(args.output, PROG):
            pass
    except OutputWriteError as exn:
        return fail(PROG, exn)
    except FolderLockedError as exn:
        return fail(PROG, exn, 5)
    from tqdm.contrib.logging import logging_redirect_tqdm

    from ..runtime.distributed import cleanup_distributed
    from .loop import NonFiniteLossError, RunExistsError, train

    try:
        with logging_redirect_tqdm():
            summary = train(cfg, args.data, args.labels, args.output, resume=args.resume,
                            allow_changed_inputs=args.allow_changed_inputs)
    except NonFiniteLossError as exn:
        return fail(PROG, exn, 3)
    except RunExistsError as exn:
        return fail(PROG, exn, 4)
    except FolderLockedError as exn:
        return fail(PROG, exn, 5)
    except OutputWriteError as exn:  # the disk filled up or became read-only mid-run
        return fail(PROG, exn)
    except (FileNotFoundError, ValueError) as exn:
        return fail(PROG, exn)
    finally:
        cleanup_distributed()
    if os.environ.get("RANK", "0") == "0":
        _print_summary(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
