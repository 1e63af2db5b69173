"""``unicom-search``: top-k search of query images in an index built by ``unicom-embed``.

Prints each query's results (rank, cosine score, path or key) and writes them to the output
folder: ``results.json`` and ``results.png`` (one row per query: the query, then its top-k).

  unicom-search --index runs/photos query.jpg more_queries/ --top-k 5 --output runs/photos/search
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional, Sequence

from ..cli.dataclass_args import add_dataclass_arguments
from ..cli.flags import HelpFormatter, fail
from .config import SearchConfig

PROG = "unicom-search"
RESULTS_JSON = "results.json"
RESULTS_PNG = "results.png"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("queries", nargs="+", help="query images, folders of images or list files")
    add_dataclass_arguments(p, SearchConfig)
    return p


def _warn_deprecated(args: argparse.Namespace) -> None:
    for flag in ("png", "json"):
        if getattr(args, flag):
            print(f"{PROG}: warning: --{flag} is deprecated, use --output (a folder)", file=sys.stderr)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    _warn_deprecated(args)
    from ..cli.log_setup import setup_logging
    from ..formats.atomic_io import write_json
    from ..models.inference import NoReadableImagesError
    from .dataset import query_paths
    from .search import Searcher

    setup_logging(PROG, "INFO")
    try:
        queries = query_paths(args.queries)
        searcher = Searcher(args.index, model=args.model, device=args.device, nprobe=args.nprobe,
                            ef_search=args.ef_search, batch_size=args.batch_size, precision=args.precision,
                            progress=not args.no_progress, background=args.background,
                            max_pixels=args.max_image_pixels)
        results = searcher.search_images(queries, k=args.top_k)
    except NoReadableImagesError as exn:  # every query failed to decode: nothing to search with
        first = f"{queries[0]}{f' and {len(queries) - 1} more' if len(queries) > 1 else ''}"
        return fail(PROG, f"error: no query image could be read ({first}): {exn}")
    except (FileNotFoundError, ValueError, ConnectionError) as exn:
        return fail(PROG, f"error: {exn}")
    for q, hits in zip(queries, results):
        print(f"query: {q}")
        for h in hits:
            print(f"  {h.rank:>3}  {h.score:.4f}  {h.path or h.key}")
    out = Path(args.output)
    js = Path(args.json) if args.json else out / RESULTS_JSON
    write_json(js, [{"query": str(q), "hits": [h.to_dict() for h in hits]} for q, hits in zip(queries, results)])
    print(f"results: {js}")
    if not args.no_png:
        png = searcher.render(queries, results, Path(args.png) if args.png else out / RESULTS_PNG)
        print(f"picture: {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
