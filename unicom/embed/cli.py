"""``unicom-embed``: embed an image folder, a list file or webdataset shards with an encoder,
into ``OUT/features/`` (fp16, L2-normalised, one ``.npy`` + ``.keys`` per shard), then build a
faiss index in ``OUT/index/``.

  unicom-embed --model ViT-B/32 --input photos/ --out runs/photos
  unicom-embed --model runs/b32/export --input 'data/{00000..00099}.tar' --out runs/laion --index ivf
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

from .dataset import DEFAULT_NAME, INPUT_TYPES, default_workers
from .embedder import PRECISIONS, embed_to_features
from .index import EF_CONSTRUCTION, EF_SEARCH, HNSW_M, INDEX_TYPES, build_index_dir


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="unicom-embed", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True,
                   help="a released name (ViT-B/32, ViT-B/16, ViT-L/14, ViT-L/14@336px), an official .pt file, "
                        "an export/ directory or a training run/checkpoint directory")
    p.add_argument("--input", "--data", dest="input", required=True,
                   help="an image folder, a list file of images, or shards (brace pattern, directory of .tar, list)")
    p.add_argument("--out", required=True, help="output directory (features/ and index/ are written inside)")
    p.add_argument("--input-type", choices=INPUT_TYPES, default="auto", help="how to read --input (default: guess)")
    p.add_argument("--name", default=DEFAULT_NAME,
                   help="pseudo-shard name of a folder or list input (default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--workers", type=int, default=default_workers(), help="DataLoader workers (default: %(default)s)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: auto)")
    p.add_argument("--precision", choices=PRECISIONS, default="fp16", help="autocast dtype on CUDA (CPU: fp32)")
    p.add_argument("--image-size", type=int, default=None,
                   help="input size; other than the encoder's own, the weights are interpolated")
    p.add_argument("--heads", type=int, default=None,
                   help="attention heads of a .pt file whose shapes match no known configuration")
    p.add_argument("--index", choices=INDEX_TYPES, default="auto",
                   help="faiss index to build: auto picks flat (≤100k), hnsw (≤2M) or ivf by size; none skips it")
    p.add_argument("--nlist", type=int, default=None, help="IVF cells (default: about 4·sqrt(n))")
    p.add_argument("--nprobe", type=int, default=None, help="IVF cells searched (default: max(16, nlist/64))")
    p.add_argument("--hnsw-m", type=int, default=HNSW_M)
    p.add_argument("--ef-construction", type=int, default=EF_CONSTRUCTION)
    p.add_argument("--ef-search", type=int, default=EF_SEARCH)
    p.add_argument("--overwrite", action="store_true", help="recompute shards that are already done")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    from ..run_lock import run_locked

    args = build_parser().parse_args(argv)
    return run_locked("unicom-embed", args.out, lambda: _main(args))  # one job per output folder


def _main(args: argparse.Namespace) -> int:
    t0 = time.time()
    try:
        result = embed_to_features(args.model, args.input, args.out, input_type=args.input_type,
                                   batch_size=args.batch_size, workers=args.workers, device=args.device,
                                   precision=args.precision, image_size=args.image_size, heads=args.heads,
                                   name=args.name, overwrite=args.overwrite, progress=not args.no_progress)
    except (FileNotFoundError, ValueError, ConnectionError, RuntimeError) as exn:
        print(f"unicom-embed: error: {exn}", file=sys.stderr)
        return 2
    enc = result.encoder
    print(f"encoder: {enc.source} ({enc.kind}, {enc.image_size}px → {enc.embed_dim}-d) on "
          f"{next(enc.model.parameters()).device}")
    print(f"embedded {result.total} images into {len(result.written)} shard file(s) in {result.features_dir} "
          f"({time.time() - t0:.1f}s)")
    if result.skipped_shards:
        print(f"already done, skipped: {len(result.skipped_shards)} shard(s)")
    print(result.skips.report())
    if args.index != "none":
        kwargs = {"hnsw_m": args.hnsw_m, "ef_construction": args.ef_construction, "ef_search": args.ef_search}
        if args.nlist is not None:
            kwargs["nlist"] = args.nlist
        if args.nprobe is not None:
            kwargs["nprobe"] = args.nprobe
        try:
            out = build_index_dir(result.features_dir, Path(args.out) / "index", args.index, **kwargs)
        except ValueError as exn:
            print(f"unicom-embed: error: {exn}", file=sys.stderr)
            return 2
        import json

        meta = json.loads((out / "index.json").read_text())
        print(f"index: {meta['type']} over {meta['n']} vectors {meta['params'] or ''} → {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
