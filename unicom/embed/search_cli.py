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

from ..cli.flags import HelpFormatter, add_renamed, fail
from .options import DEFAULT_PRECISION, PRECISIONS

PROG = "unicom-search"
RESULTS_JSON = "results.json"
RESULTS_PNG = "results.png"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("queries", nargs="+", help="query images, folders of images or list files")
    p.add_argument("--index", required=True, help="the index folder (OUTPUT/index) or unicom-embed's OUTPUT")
    add_renamed(p, "--top-k", "--k", type=int, default=5, help="results returned per query")
    p.add_argument("--model", default=None,
                   help="Unicom encoder for the queries (None: the one recorded in the index; another one is refused)")
    p.add_argument("--output", default="search_results",
                   help=f"folder for {RESULTS_JSON} and {RESULTS_PNG}")
    p.add_argument("--device", default="auto", help="compute device: auto, cpu, cuda or cuda:N")
    p.add_argument("--precision", choices=PRECISIONS, default=DEFAULT_PRECISION,
                   help="autocast precision (auto: bf16 on GPUs and on CPUs with native bf16, fp32 "
                        "on other CPUs); bf16 cannot overflow like fp16")
    p.add_argument("--batch-size", type=int, default=64, help="query images per forward pass")
    p.add_argument("--nprobe", type=int, default=None, help="IVF cells to search (None: the index's own)")
    p.add_argument("--ef-search", type=int, default=None, help="HNSW search breadth (None: the index's own)")
    p.add_argument("--background", default=None, help="colour transparent query images are composited onto "
                   "(None: the one the index records, which is the only one accepted; docs/images.md)")
    p.add_argument("--max-image-pixels", type=int, default=None, help="query images with more pixels are refused "
                   "(None: the default limit, 178956970; 0 = no limit)")
    p.add_argument("--no-png", action="store_true", help="do not draw the picture")
    p.add_argument("--png", default=None, help="deprecated: the picture's path (use --output)")
    p.add_argument("--json", default=None, help="deprecated: the JSON's path (use --output)")
    p.add_argument("--no-progress", action="store_true", help="turn the progress bars off")
    return p


def _warn_deprecated(args: argparse.Namespace) -> None:
    for flag in ("png", "json"):
        if getattr(args, flag):
            print(f"{PROG}: warning: --{flag} is deprecated, use --output (a folder)", file=sys.stderr)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    _warn_deprecated(args)
    from ..formats.atomic_io import write_json
    from ..models.inference import NoReadableImagesError
    from .dataset import query_paths
    from .search import Searcher

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
