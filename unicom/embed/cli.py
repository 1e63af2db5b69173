"""``unicom-embed``: embed an image folder, a list file or webdataset shards with an encoder,
into ``OUTPUT/features/`` (fp16 by default, L2-normalised, one ``.npy`` + ``.keys`` per shard),
then build a faiss index in ``OUTPUT/index/``, tuned to a target recall, with its report.

  unicom-embed --model ViT-B/32 --data photos/ --output runs/photos
  unicom-embed --model runs/b32/export --data 'data/{00000..00099}.tar' --output runs/laion \\
               --index-type auto --max-index-memory 4GB
  unicom-embed --model ViT-B/32 --data photos/ --output runs/photos --index-type 'IVF4096,PQ64'
  torchrun --nproc_per_node 8 -m unicom.embed.cli --model ViT-B/32 --data 'data/{00000..00999}.tar' --output runs/big
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

from ..cli.dataclass_args import add_dataclass_arguments, dataclass_from_namespace
from ..cli.flags import HelpFormatter, fail
from .config import EmbedConfig

PROG = "unicom-embed"
# a collection size to validate a factory string with before the real size is known
_SIZE_FOR_SYNTAX = 1_000_000


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__, formatter_class=HelpFormatter)
    add_dataclass_arguments(p, EmbedConfig)
    return p


def _check_flags(cfg: EmbedConfig) -> None:
    """The checks that need no encoder and no data (ValueError, one line)."""
    from ..index.memory import parse_memory

    if cfg.max_index_memory is not None:
        parse_memory(cfg.max_index_memory)
    if not 0 < cfg.target_recall <= 1:
        raise ValueError(f"--target-recall {cfg.target_recall}: give a recall in (0, 1], e.g. 0.95")
    if cfg.tune_queries is not None and not Path(cfg.tune_queries).exists():
        raise FileNotFoundError(f"--tune-queries {cfg.tune_queries}: no such file or folder")


def main(argv: Optional[Sequence[str]] = None) -> int:
    from ..cli.run_lock import run_locked

    cfg = dataclass_from_namespace(EmbedConfig, build_parser().parse_args(argv))
    from ..cli.log_setup import setup_logging
    from ..data.decode import apply_decode_settings

    setup_logging(PROG, cfg.log_level)
    try:
        apply_decode_settings(cfg.background, cfg.max_image_pixels)
    except ValueError as exn:
        return fail(PROG, f"error: {exn}")
    if cfg.format == "clip-retrieval":
        try:
            import pyarrow  # noqa: F401  (fail before hours of embedding, not after)
        except ImportError:
            return fail(PROG, "error: --format clip-retrieval needs pyarrow: pip install 'unicom-toolkit[parquet]'")
    try:
        _check_flags(cfg)
    except (ValueError, FileNotFoundError) as exn:
        return fail(PROG, f"error: {exn}")
    # the lock first, the heavy imports after: a second job into the folder is refused at once
    return run_locked(PROG, cfg.output, lambda: _main(cfg))  # one job per output folder


def index_options(cfg, gpus: Sequence[int] = ()):
    """``unicom.index.build.BuildOptions`` from an ``IndexConfig``."""
    from ..index.build import BuildOptions

    return BuildOptions(nlist=cfg.nlist, hnsw_m=cfg.hnsw_m, ef_construction=cfg.ef_construction,
                        max_index_memory=cfg.max_index_memory, max_query_ms=cfg.max_query_ms, seed=cfg.seed,
                        gpus=tuple(gpus))


def precheck_index(cfg, d: int, n: Optional[int]) -> None:
    """Validate ``--index-type`` and the budget for ``d``-d vectors before any embedding: fully
    when the collection's size ``n`` is known (a folder or list), the spelling alone otherwise."""
    from ..index.build import plan_index

    if cfg.index_type.strip().lower() == "none":
        return
    if n is not None and n > 0:
        plan_index(cfg.index_type, n, d, index_options(cfg))
    else:
        from ..index.factory import check_spec

        if cfg.index_type.strip().lower() != "auto":
            check_spec(cfg.index_type, d, _SIZE_FOR_SYNTAX)


def _main(cfg: EmbedConfig) -> int:
    from ..runtime.distributed import cleanup_distributed, init_distributed

    try:
        ctx = init_distributed(cfg.device)
    except RuntimeError as exn:
        return fail(PROG, f"error: {exn}")
    try:
        return _run(cfg, ctx)
    finally:
        cleanup_distributed()


def _run(cfg: EmbedConfig, ctx) -> int:
    from ..formats.index import INDEX_SUBDIR
    from ..pretrained.load import load_encoder
    from ..runtime.distributed import barrier
    from .dataset import resolve_input
    from .embedder import embed_to_features

    t0 = time.time()
    try:
        enc = load_encoder(cfg.model, device=ctx.device, image_size=cfg.image_size, heads=cfg.heads,
                           progress=not cfg.no_progress and ctx.is_main)
        kind, items = resolve_input(str(cfg.data), cfg.input_type, cfg.name)
        precheck_index(cfg, enc.embed_dim, len(items.keys) if kind == "files" else None)
        result = embed_to_features(enc, cfg.data, cfg.output, input_type=cfg.input_type, batch_size=cfg.batch_size,
                                   workers=cfg.workers, precision=cfg.precision, name=cfg.name,
                                   overwrite=cfg.overwrite, progress=not cfg.no_progress,
                                   piece_size=cfg.piece_size, feature_dtype=cfg.feature_dtype, resolved=(kind, items))
    except (FileNotFoundError, ValueError, ConnectionError, RuntimeError) as exn:
        return fail(PROG, f"error: {exn}")
    barrier()  # every rank's shards are written before rank 0 indexes them
    if not ctx.is_main:
        return 0
    print(f"encoder: {enc.source} ({enc.kind}, {enc.image_size}px → {enc.embed_dim}-d) on {enc.device}"
          + (f", {ctx.world_size} processes" if ctx.is_distributed else ""))
    print(f"embedded {result.total} images into {len(result.written)} shard file(s) in {result.features_dir} "
          f"({time.time() - t0:.1f}s)")
    if result.skipped_shards:
        print(f"already done, skipped: {len(result.skipped_shards)} shard(s)")
    print(result.skips.report())
    try:
        if cfg.index_type.strip().lower() != "none":
            from .index import build_index_dir

            out = build_index_dir(result.features_dir, Path(cfg.output) / INDEX_SUBDIR, cfg.index_type,
                                  nprobe=cfg.nprobe, ef_search=cfg.ef_search, target_recall=cfg.target_recall,
                                  tune_queries=cfg.tune_queries, on_disk=cfg.on_disk, progress=not cfg.no_progress,
                                  nlist=cfg.nlist, hnsw_m=cfg.hnsw_m, ef_construction=cfg.ef_construction,
                                  max_index_memory=cfg.max_index_memory, max_query_ms=cfg.max_query_ms,
                                  seed=cfg.seed)
            print(f"index: {out}")
        if cfg.format == "clip-retrieval":
            from .clip_retrieval import export_clip_retrieval

            emb, meta_path = export_clip_retrieval(result.features_dir, cfg.output)
            print(f"clip-retrieval layout: {emb}, {meta_path}")
    except (ValueError, RuntimeError, FileNotFoundError) as exn:
        return fail(PROG, f"error: {exn}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
