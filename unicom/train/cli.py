"""``unicom-train``: train a Unicom encoder on clustered shards.

    python -m unicom.train.cli --config configs/demo.yaml --data 'data/{00000..00005}.tar' \
        --labels runs/cluster/labels --output runs/train [--resume] [section.key=value ...]

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

from ..cli_flags import fail

PROG = "unicom-train"


def build_parser() -> argparse.ArgumentParser:
    from .config import describe_defaults

    p = argparse.ArgumentParser(prog=PROG, description="Train a Unicom encoder (dual partial selection "
                                "margin softmax over pseudo classes) on LAION-style shards.",
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="Overrides: section.key=value, e.g. optim.lr=5e-4 data.batch_size=256 "
                                "train.precision=fp16.\nEvery key and its built-in default (a --config preset "
                                "replaces some of them; see docs/training.md):\n" + describe_defaults() +
                                "\n\nExit codes: 0 done, 2 bad arguments or inputs, 3 non-finite loss or weights, "
                                "4 the output dir already holds a run (use --resume), 5 another job is using "
                                "the output dir.")
    p.add_argument("--config", help="YAML preset (configs/*.yaml); defaults apply where it is silent")
    p.add_argument("--data", required=True, help="shards: brace pattern 'data/{00000..00099}.tar', a directory or a "
                   "list file")
    p.add_argument("--labels", required=True, help="labels dir from `make cluster` (OUT/labels; its sibling "
                   "OUT/features holds the keys)")
    p.add_argument("--output", required=True, help="run dir (config.yaml, log.csv, checkpoints/, export/)")
    p.add_argument("--resume", action="store_true", help="continue from RUN/checkpoints/latest (starts fresh when "
                   "there is none; a damaged latest falls back to the previous complete checkpoint)")
    p.add_argument("--allow-changed-inputs", action="store_true", help="with --resume: continue although the "
                   "shards or labels differ from those the run started with (default: refuse)")
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
    from ..wds_reader import SkipCounter

    print(SkipCounter(summary["skipped"]).report("skipped sample reads (all ranks)"), flush=True)
    if summary.get("finished"):
        print(f"done: step {summary['step']}, loss {summary['first_loss']} -> {summary['last_loss']}, "
              f"{summary['images_per_s']:.0f} images/s; encoder in {summary.get('export')}", flush=True)
    else:
        print(f"stopped at step {summary['step']} of {summary['total_steps']}; continue with --resume", flush=True)


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    from .config import load_config

    try:
        _setup_logging(args.log_level)
        cfg = load_config(args.config, list(args.sets) + list(args.overrides))
    except (ValueError, FileNotFoundError) as exn:
        return fail(PROG, exn)
    from tqdm.contrib.logging import logging_redirect_tqdm

    from ..distributed import cleanup_distributed
    from ..run_lock import FolderLockedError
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
    except (FileNotFoundError, ValueError) as exn:
        return fail(PROG, exn)
    finally:
        cleanup_distributed()
    if os.environ.get("RANK", "0") == "0":
        _print_summary(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
