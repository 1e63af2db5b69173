"""The settings of ``unicom-embed`` and ``unicom-search``; each default is written once, here.

``unicom.embed.cli`` and ``unicom.embed.search_cli`` generate their flags from these dataclasses
(``unicom.cli.dataclass_args``): a field declared with ``option()`` is a flag with its name,
deprecated aliases and help. Import-light (stdlib and ``unicom.runtime``'s constants only), so
that ``--help`` stays fast.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from ..cli.dataclass_args import option
from ..cli.log_setup import LEVELS
from ..data.decode_options import BACKGROUND_HELP, DEFAULT_BACKGROUND, DEFAULT_MAX_PIXELS, MAX_PIXELS_HELP
from ..runtime.faiss_utils import EF_CONSTRUCTION, HNSW_M
from .options import DEFAULT_NAME, DEFAULT_PRECISION, INPUT_TYPES, OUTPUT_FORMATS, PRECISIONS, default_workers

FEATURE_DTYPES = ("float16", "float32")
DEFAULT_PIECE_SIZE = 50_000   # images per piece of a folder or list input (one unit of work and resume)
DEFAULT_TARGET_RECALL = 0.95  # recall@10 against exact search that tuning aims for (autofaiss' usual target)

INDEX_HELP = ("faiss index to build: a short name (flat, hnsw, ivf), auto (by size; under --max-index-memory the "
              "most accurate index that fits), none (no index), or any faiss index_factory string over inner "
              "product: HNSW32, IVF4096,Flat, IVF4096,PQ64, OPQ64,IVF4096,PQ64, IVF4096,SQ8, "
              "IVF16384_HNSW32,PQ32x8, …")


@dataclass
class IndexConfig:
    """How the index over the features is built, tuned and searched (``unicom-embed``,
    ``unicom-index``)."""

    index_type: str = option("auto", INDEX_HELP, aliases=("--index",), group="index")
    max_index_memory: Optional[str] = option(None, "memory budget of the index (256MB, 4GB; 1 GB = 2^30 bytes): "
                                             "auto picks the most accurate index that fits; another index type "
                                             "is checked against it", group="index")
    max_query_ms: Optional[float] = option(None, "auto: leave out indexes estimated slower than this per query",
                                           group="index")
    target_recall: float = option(DEFAULT_TARGET_RECALL, "tune nprobe / efSearch to the smallest value whose "
                                  "recall@10 against exact search reaches this", group="index")
    tune_queries: Optional[str] = option(None, "query vectors for tuning (.npy [m, d] or a features folder; "
                                         "None: 1,000 rows held out from the collection)", group="index")
    nlist: Optional[int] = option(None, "cells of the short name ivf (None: about 4·sqrt(n))", group="index")
    nprobe: Optional[int] = option(None, "IVF cells searched (None: tuned to --target-recall)", group="index")
    hnsw_m: int = option(HNSW_M, "graph degree M of the short name hnsw", group="index")
    ef_construction: int = option(EF_CONSTRUCTION, "HNSW build breadth", group="index")
    ef_search: Optional[int] = option(None, "HNSW search breadth (None: tuned to --target-recall)", group="index")
    on_disk: bool = option(False, "IVF only: keep the inverted lists in OUTPUT/index/index.ivfdata, memory-mapped "
                           "at search time (for indexes larger than RAM)", group="index")
    seed: int = option(0, "seed of the training sample and the k-means", group="index")


@dataclass
class EmbedConfig(IndexConfig):
    """``unicom-embed``: images → features (``OUTPUT/features``) → index (``OUTPUT/index``)."""

    model: str = option(None, "a Unicom encoder: a released name (ViT-B/32, ViT-B/16, ViT-L/14, ViT-L/14@336px), an "
                        "official .pt file, an export/ folder or a training run/checkpoint folder", required=True)
    data: str = option(None, "an image folder, a list file of images, or shards (brace pattern, folder of .tar, "
                       "list)", aliases=("--input",), required=True)
    output: str = option(None, "output folder (features/ and index/ are written inside)", aliases=("--out",),
                         required=True)
    input_type: str = option("auto", "how to read --data (auto: guess)", choices=INPUT_TYPES)
    name: str = option(DEFAULT_NAME, "pseudo-shard name of a folder or list input")
    piece_size: int = option(DEFAULT_PIECE_SIZE, "a folder or list input larger than this is embedded in pieces "
                             "of this many images (NAME-00000, …): the unit shared over torchrun ranks and resumed")
    batch_size: int = option(64, "images per forward pass (per process)")
    workers: int = option(default_workers(), "DataLoader worker processes (per process)")
    device: str = option("auto", "compute device: auto, cpu, cuda or cuda:N (under torchrun: the rank's own GPU)")
    precision: str = option(DEFAULT_PRECISION, "autocast precision (auto: bf16 on GPUs and on CPUs with native "
                            "bf16, fp32 on other CPUs); bf16 cannot overflow like fp16", choices=PRECISIONS)
    image_size: Optional[int] = option(None, "input size (None: the encoder's own); another size interpolates the "
                                       "weights")
    heads: Optional[int] = option(None, "attention heads of a .pt file whose shapes match no known configuration")
    feature_dtype: str = option("float16", "how features are stored on disk: float16 (half the bytes) or float32",
                                choices=FEATURE_DTYPES)
    format: str = option("unicom", "clip-retrieval also writes OUTPUT/img_emb/img_emb_0.npy and "
                         "OUTPUT/metadata/metadata_0.parquet (needs pyarrow: pip install 'unicom-toolkit[parquet]')",
                         choices=OUTPUT_FORMATS)
    background: str = option(DEFAULT_BACKGROUND, BACKGROUND_HELP)
    max_image_pixels: int = option(DEFAULT_MAX_PIXELS, MAX_PIXELS_HELP)
    overwrite: bool = option(False, "recompute shards that are already done")
    no_progress: bool = option(False, "turn the progress bars off")
    log_level: str = option("INFO", "logging verbosity", choices=LEVELS, type=str.upper)


@dataclass
class SearchConfig:
    """``unicom-search``: query images → top-k in an index built by ``unicom-embed``."""

    index: str = option(None, "the index folder (OUTPUT/index) or unicom-embed's OUTPUT", required=True)
    top_k: int = option(5, "results returned per query", aliases=("--k",))
    model: Optional[str] = option(None, "Unicom encoder for the queries (None: the one recorded in the index; another "
                                  "one is refused)")
    output: str = option("search_results", "folder for results.json and results.png")
    device: str = option("auto", "compute device: auto, cpu, cuda or cuda:N")
    precision: str = option(DEFAULT_PRECISION, "autocast precision (auto: bf16 on GPUs and on CPUs with native "
                            "bf16, fp32 on other CPUs); bf16 cannot overflow like fp16", choices=PRECISIONS)
    batch_size: int = option(64, "query images per forward pass")
    nprobe: Optional[int] = option(None, "IVF cells to search (None: the index's tuned value)")
    ef_search: Optional[int] = option(None, "HNSW search breadth (None: the index's tuned value)")
    background: Optional[str] = option(None, "colour transparent query images are composited onto (None: the one "
                                       "the index records, which is the only one accepted; docs/images.md)")
    max_image_pixels: Optional[int] = option(None, "query images with more pixels are refused (None: the default "
                                             "limit, 178956970; 0 = no limit)")
    no_png: bool = option(False, "do not draw the picture")
    png: Optional[str] = option(None, "deprecated: the picture's path (use --output)")
    json: Optional[str] = option(None, "deprecated: the JSON's path (use --output)")
    no_progress: bool = option(False, "turn the progress bars off")
