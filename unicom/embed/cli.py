"""``unicom-embed``: embed an image folder, a list file or webdataset shards with an encoder,
into ``OUTPUT/features/`` (fp16, L2-normalised, one ``.npy`` + ``.keys`` per shard), then build
a faiss index in ``OUTPUT/index/``.

  unicom-embed --model ViT-B/32 --data photos/ --output runs/photos
  unicom-embed --model runs/b32/export --data 'data/{00000..00099}.tar' --output runs/laion --index-type ivf
  unicom-embed --model ViT-B/32 --data photos/ --output runs/photos --format clip-retrieval
"""
from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

from ..cli.flags import HelpFormatter, add_renamed, fail
from ..data.decode_options import add_decode_arguments
from ..runtime.faiss_utils import EF_CONSTRUCTION, EF_SEARCH, HNSW_M, INDEX_TYPES
from .options import DEFAULT_NAME, DEFAULT_PRECISION, INPUT_TYPES, OUTPUT_FORMATS, PRECISIONS, default_workers

PROG = "unicom-embed"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("--model", required=True,
                   help="a Unicom encoder: a released name (ViT-B/32, ViT-B/16, ViT-L/14, ViT-L/14@336px), an "
                        "official .pt file, an export/ folder or a training run/checkpoint folder")
    add_renamed(p, "--data", "--input", required=True,
                help="an image folder, a list file of images, or shards (brace pattern, folder of .tar, list)")
    add_renamed(p, "--output", "--out", required=True, help="output folder (features/ and index/ are written inside)")
    p.add_argument("--input-type", choices=INPUT_TYPES, default="auto", help="how to read --data (auto: guess)")
    p.add_argument("--name", default=DEFAULT_NAME, help="pseudo-shard name of a folder or list input")
    p.add_argument("--batch-size", type=int, default=64, help="images per forward pass")
    p.add_argument("--workers", type=int, default=default_workers(), help="DataLoader worker processes")
    p.add_argument("--device", default="auto", help="compute device: auto, cpu, cuda or cuda:N")
    p.add_argument("--precision", choices=PRECISIONS, default=DEFAULT_PRECISION,
                   help="autocast precision (auto: bf16 on GPUs and on CPUs with native bf16, fp32 "
                        "on other CPUs); bf16 cannot overflow like fp16")
    p.add_argument("--image-size", type=int, default=None,
                   help="input size (None: the encoder's own); another size interpolates the weights")
    p.add_argument("--heads", type=int, default=None,
                   help="attention heads of a .pt file whose shapes match no known configuration")
    add_renamed(p, "--index-type", "--index", choices=INDEX_TYPES, default="auto",
                help="faiss index to build: auto picks flat (≤100k), hnsw (≤2M) or ivf by size; none skips it")
    p.add_argument("--nlist", type=int, default=None, help="IVF cells (None: about 4·sqrt(n))")
    p.add_argument("--nprobe", type=int, default=None, help="IVF cells searched (None: max(16, nlist/64))")
    p.add_argument("--hnsw-m", type=int, default=HNSW_M, help="HNSW graph degree M")
    p.add_argument("--ef-construction", type=int, default=EF_CONSTRUCTION, help="HNSW build breadth")
    p.add_argument("--ef-search", type=int, default=EF_SEARCH, help="HNSW search breadth")
    p.add_argument("--format", choices=OUTPUT_FORMATS, default="unicom",
                   help="clip-retrieval also writes OUTPUT/img_emb/img_emb_0.npy and "
                        "OUTPUT/metadata/metadata_0.parquet (needs pyarrow: pip install 'unicom[parquet]')")
    add_decode_arguments(p)
    p.add_argument("--overwrite", action="store_true", help="recompute shards that are already done")
    p.add_argument("--no-progress", action="store_true", help="turn the progress bars off")
    p.add_argument("--log-level", default="INFO", help="logging verbosity (DEBUG, INFO, WARNING)")
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    from ..cli.run_lock import run_locked

    args = build_parser().parse_args(argv)
    from ..data.decode import apply_decode_settings

    try:
        apply_decode_settings(args.background, args.max_image_pixels)
    except ValueError as exn:
        return fail(PROG, f"error: {exn}")
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    if args.format == "clip-retrieval":
        try:
            import pyarrow  # noqa: F401  (fail before hours of embedding, not after)
        except ImportError:
            return fail(PROG, "error: --format clip-retrieval needs pyarrow: pip install 'unicom[parquet]'")
    # the lock first, the heavy imports after: a second job into the folder is refused at once
    return run_locked(PROG, args.output, lambda: _main(args))  # one job per output folder


def _main(args: argparse.Namespace) -> int:
    from ..formats.index import INDEX_SUBDIR
    from .embedder import embed_to_features
    from .index import build_index_dir

    t0 = time.time()
    try:
        result = embed_to_features(args.model, args.data, args.output, input_type=args.input_type,
                                   batch_size=args.batch_size, workers=args.workers, device=args.device,
                                   precision=args.precision, image_size=args.image_size, heads=args.heads,
                                   name=args.name, overwrite=args.overwrite, progress=not args.no_progress)
    except (FileNotFoundError, ValueError, ConnectionError, RuntimeError) as exn:
        return fail(PROG, f"error: {exn}")
    enc = result.encoder
    print(f"encoder: {enc.source} ({enc.kind}, {enc.image_size}px → {enc.embed_dim}-d) on "
          f"{enc.device}")
    print(f"embedded {result.total} images into {len(result.written)} shard file(s) in {result.features_dir} "
          f"({time.time() - t0:.1f}s)")
    if result.skipped_shards:
        print(f"already done, skipped: {len(result.skipped_shards)} shard(s)")
    print(result.skips.report())
    try:
        if args.index_type != "none":
            kwargs = {"hnsw_m": args.hnsw_m, "ef_construction": args.ef_construction, "ef_search": args.ef_search,
                      "nlist": args.nlist, "nprobe": args.nprobe}
            out = build_index_dir(result.features_dir, Path(args.output) / INDEX_SUBDIR, args.index_type, **kwargs)
            import json

            meta = json.loads((out / "index.json").read_text())
            print(f"index: {meta['type']} over {meta['n']} vectors {meta['params'] or ''} → {out}")
        if args.format == "clip-retrieval":
            from .clip_retrieval import export_clip_retrieval

            emb, meta_path = export_clip_retrieval(result.features_dir, args.output)
            print(f"clip-retrieval layout: {emb}, {meta_path}")
    except (ValueError, RuntimeError) as exn:
        return fail(PROG, f"error: {exn}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
