"""``unicom-index``: build an index folder from features, or add new shards to one.

  unicom-index build --features runs/laion/features --output runs/laion/index --index-type auto --max-index-memory 4GB
  unicom-index add --index runs/laion/index                      # the shards embedded since the build
  unicom-index add --index runs/laion/index --features runs/new/features

``add`` keeps the trained index (an IVF's quantiser is not retrained): the new vectors go into
the cells they fall in, exactly as if they had been there at the build. Features of another
encoder or dimension are refused before any work. The tuned search parameters are kept; run
``build`` again when the collection has grown several-fold, so that the cells fit it again.
"""
from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence

from ..cli.dataclass_args import add_dataclass_arguments, dataclass_from_namespace
from ..cli.flags import HelpFormatter, fail

PROG = "unicom-index"


def build_parser() -> argparse.ArgumentParser:
    from ..embed.config import IndexConfig

    p = argparse.ArgumentParser(prog=PROG, description=__doc__, formatter_class=HelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="build an index folder from a features folder", formatter_class=HelpFormatter)
    b.add_argument("--features", required=True, help="the features folder (OUTPUT or OUTPUT/features)")
    b.add_argument("--output", required=True, help="the index folder to write")
    add_dataclass_arguments(b, IndexConfig)
    b.add_argument("--no-progress", action="store_true", help="turn the progress bars off")
    a = sub.add_parser("add", help="add new feature shards to a built index, without retraining",
                       formatter_class=HelpFormatter)
    a.add_argument("--index", required=True, help="the index folder (OUTPUT/index) or unicom-embed's OUTPUT")
    a.add_argument("--features", default=None,
                   help="the features folder holding the new shards (None: the one the index was built from)")
    a.add_argument("--shards", nargs="+", default=None,
                   help="add only these shards (None: every shard the index does not hold yet)")
    a.add_argument("--no-progress", action="store_true", help="turn the progress bars off")
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    from ..cli.run_lock import run_locked

    args = build_parser().parse_args(argv)
    folder = args.output if args.command == "build" else args.index
    return run_locked(PROG, folder, lambda: _run(args))


def _run(args: argparse.Namespace) -> int:
    try:
        if args.command == "build":
            from ..embed.cli import _check_flags
            from ..embed.config import IndexConfig
            from ..embed.index import build_index_dir

            cfg = dataclass_from_namespace(IndexConfig, args)
            _check_flags(cfg)
            out = build_index_dir(args.features, args.output, cfg.index_type, nprobe=cfg.nprobe,
                                  ef_search=cfg.ef_search, target_recall=cfg.target_recall,
                                  tune_queries=cfg.tune_queries, on_disk=cfg.on_disk, progress=not args.no_progress,
                                  nlist=cfg.nlist, hnsw_m=cfg.hnsw_m, ef_construction=cfg.ef_construction,
                                  max_index_memory=cfg.max_index_memory, max_query_ms=cfg.max_query_ms, seed=cfg.seed)
            print(f"index: {out}")
            return 0
        from .folder import append_to_index_folder

        res = append_to_index_folder(args.index, args.features, args.shards, progress=not args.no_progress)
    except (FileNotFoundError, ValueError, RuntimeError) as exn:
        return fail(PROG, f"error: {exn}")
    if not res["added"]:
        print("nothing to add: the index holds every shard of the features folder")
    else:
        names = ", ".join(res["shards"][:5]) + (", …" if len(res["shards"]) > 5 else "")
        print(f"added {res['added']:,} vectors from {len(res['shards'])} shard(s) ({names}); "
              f"the index holds {res['n']:,}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
