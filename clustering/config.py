"""The settings of ``unicom-cluster``, one dataclass per stage; each default is written once.

``clustering.cli`` generates its flags from these dataclasses (``unicom.cli.dataclass_args``): a
field declared with ``option()`` is a flag with its name, deprecated aliases and help.
This module imports nothing heavy, so that ``unicom-cluster --help`` stays fast.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from unicom.cli.dataclass_args import option
from unicom.data.decode_options import BACKGROUND_HELP, DEFAULT_BACKGROUND, DEFAULT_MAX_PIXELS, MAX_PIXELS_HELP
from unicom.runtime.precision import DEFAULT_PRECISION, PRECISIONS

MODALITIES = ("both", "image", "text")
METHODS = ("flat", "two-level", "hierarchical")
STAGES = ("all", "extract", "kmeans", "assign")
# Seeding: faiss' default is K random points, which often puts two centroids in one natural
# group and none in another (Lloyd cannot undo that). AFK-MC² approximates k-means++; its cost
# grows as K² (about 1 s at K = 1,000 on two CPU cores), so "auto" uses it up to
# AUTO_AFKMC2_MAX_K centroids and random seeding above (K = 1M would take days).
INIT_METHODS = ("auto", "afk-mc2", "kmeans++", "random")
DEFAULT_INIT = "auto"
AUTO_AFKMC2_MAX_K = 10_000
# faiss' own defaults; the Unicom paper gives only K and the fused image + caption features
DEFAULT_NITER = 20
DEFAULT_MAX_POINTS_PER_CENTROID = 256
DEFAULT_SEED = 1234
DEFAULT_TINY = 5


@dataclass
class ExtractConfig:
    """Stage 1: which open_clip model embeds the samples and how image and caption are fused."""

    model: str = option("ViT-L-14", "open_clip model name (ViT-L-14, …, TinyCLIP-demo), an hf-hub:ORG/NAME, or "
                        "local-dir:/path", flag="--clip-model", aliases=("--model",))
    # The paper clusters with OpenAI's CLIP ViT-L/14, which open_clip calls ViT-L-14 / openai.
    pretrained: str = option("openai", "open_clip weights: a pretrained tag (openai, laion2b_s32b_b82k, …; "
                             "downloaded once into the Hugging Face cache, read offline from it with "
                             "HF_HUB_OFFLINE=1), a local file (.bin/.pt/.safetensors), or 'none' for a seeded "
                             "random model (demo/tests)", flag="--clip-pretrained", aliases=("--pretrained",))
    modality: str = option("both", "embed image and caption, or one (inputs without captions use the image alone)",
                           choices=MODALITIES)
    image_weight: float = option(1.0, "fusion weight of the image embedding")
    text_weight: float = option(1.0, "fusion weight of the caption embedding")
    batch_size: int = option(256, "samples per forward pass, per process")
    workers: int = option(4, "DataLoader worker processes per process (decode, transform, tokenise)")
    precision: str = option(DEFAULT_PRECISION, "autocast precision of the CLIP towers (auto: bf16 on GPUs and on "
                            "CPUs with native bf16, fp32 on other CPUs)",
                            choices=PRECISIONS)
    truth_field: Optional[str] = option("concept", "json field carried as ground truth for purity/NMI "
                                        "('none' to ignore)")
    background: str = option(DEFAULT_BACKGROUND, BACKGROUND_HELP)
    max_image_pixels: int = option(DEFAULT_MAX_PIXELS, MAX_PIXELS_HELP)
    progress: bool = True          # tqdm bar over samples (--no-progress turns it off)
    log_every_s: float = 30.0      # a progress log line at most this often without a bar


@dataclass
class ClusterConfig:
    """Stages 2 and 3: k-means into K pseudo classes and the assignment of every sample."""

    k: int = option(1_000_000, "number of pseudo classes K (Unicom: 1M for LAION-400M)", flag="--num-clusters",
                    aliases=("--k",))
    method: str = option("flat", "flat k-means; two-level (coarse then fine, for large K); hierarchical (each "
                         "rank clusters its part into K, the union is clustered again into K)", choices=METHODS)
    niter: int = option(DEFAULT_NITER, "k-means iterations (per level)", flag="--iters")
    max_points_per_centroid: int = option(DEFAULT_MAX_POINTS_PER_CENTROID,
                                          "training sample cap: at most K times this many points are used")
    seed: int = option(DEFAULT_SEED, "seed of the training sample and the initial centroids")
    init: str = option(DEFAULT_INIT, "centroid seeding: auto (afk-mc2 up to K=10,000, random above), afk-mc2 "
                       "(fast k-means++ approximation, cost ~K^2), kmeans++ or random (faiss' default)",
                       choices=INIT_METHODS)
    coarse_k: Optional[int] = option(None, "two-level: number of coarse clusters (None: ⌈√K⌉)")
    parts: int = option(0, "hierarchical: parts per rank (0: 1 per rank under torchrun, 4 in a single process)")
    local_method: str = option("flat", "hierarchical: how each part and the union are clustered",
                               choices=("flat", "two-level"))
    gpus: str = option("auto", "faiss GPUs: auto (all faiss sees; under torchrun the rank's own), none, "
                       "or a list like 0,1")
    approx_assign: bool = option(False, "nearest centroid by an HNSW graph over the centroids (CPU, large K)")
    hnsw_m: int = option(32, "HNSW graph degree for --approx-assign")
    ef_search: int = option(128, "HNSW search breadth for --approx-assign")
    assign_chunk: int = option(65536, "features per search call")
    redo_kmeans: bool = option(False, "recompute the centroids even if they match")
    checkpoint_every_s: float = option(300.0, "flat k-means: save the centroids at most every this many seconds; "
                                       "a killed run resumes there", flag="--checkpoint-every")
    faiss_verbose: bool = option(False, "let faiss print its own progress")
    tiny: int = option(DEFAULT_TINY, "clusters with fewer samples count as tiny in the report")
    grid_classes: int = option(12, "pseudo classes drawn in the report's picture (class_grid.png; 0: none)")
    grid_images: int = option(8, "images per pseudo class in class_grid.png")
    progress: bool = True                # tqdm bars over iterations and rows
    precision: str = DEFAULT_PRECISION   # --precision (the extraction's flag): CPU GEMMs of k-means and assignment
    report_json: Optional[str] = None    # the deprecated --report-json (default OUT/report.json)
