"""The settings of ``unicom-cluster``, one dataclass per stage; each default is written once.

``clustering.cli`` generates its flags from these dataclasses (``unicom.cli_flags.
add_dataclass_flags``): a field's metadata gives its flag name, deprecated aliases and help.
This module imports nothing heavy, so that ``unicom-cluster --help`` stays fast.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

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


def _f(default, flag: Optional[str] = None, old=(), help: str = "", **more):
    md = dict(help=help, old=tuple(old), **more)
    if flag:
        md["flag"] = flag
    return field(default=default, metadata=md)


@dataclass
class ExtractConfig:
    """Stage 1: which open_clip model embeds the samples and how image and caption are fused."""

    model: str = _f("ViT-L-14", "--clip-model", ["--model"],
                    "open_clip model name (ViT-L-14, …, TinyCLIP-demo), an hf-hub:ORG/NAME, or local-dir:/path")
    # The paper clusters with OpenAI's CLIP ViT-L/14, which open_clip calls ViT-L-14 / openai.
    pretrained: str = _f("openai", "--clip-pretrained", ["--pretrained"],
                         "open_clip weights: a pretrained tag (openai, laion2b_s32b_b82k, …; downloaded once into "
                         "the Hugging Face cache, read offline from it with HF_HUB_OFFLINE=1), a local file "
                         "(.bin/.pt/.safetensors), or 'none' for a seeded random model (demo/tests)")
    modality: str = _f("both", help="embed image and caption, or one (inputs without captions use the image alone)",
                       choices=MODALITIES)
    image_weight: float = _f(1.0, help="fusion weight of the image embedding")
    text_weight: float = _f(1.0, help="fusion weight of the caption embedding")
    batch_size: int = _f(256, help="samples per forward pass, per process")
    workers: int = _f(4, help="DataLoader worker processes per process (decode, transform, tokenise)")
    precision: str = _f("bf16", help="autocast precision on CUDA (the CPU always runs fp32)",
                        choices=("bf16", "fp16", "fp32"))
    truth_field: Optional[str] = _f("concept", help="json field carried as ground truth for purity/NMI "
                                    "('none' to ignore)")
    progress: bool = _f(True, cli=False)          # tqdm bar over samples (--no-progress turns it off)
    log_every_s: float = _f(30.0, cli=False)      # a progress log line at most this often without a bar


@dataclass
class ClusterConfig:
    """Stages 2 and 3: k-means into K pseudo classes and the assignment of every sample."""

    k: int = _f(1_000_000, "--num-clusters", ["--k"], "number of pseudo classes K (Unicom: 1M for LAION-400M)")
    method: str = _f("flat", help="flat k-means; two-level (coarse then fine, for large K); hierarchical (each "
                     "rank clusters its part into K, the union is clustered again into K)", choices=METHODS)
    niter: int = _f(DEFAULT_NITER, "--iters", help="k-means iterations (per level)")
    max_points_per_centroid: int = _f(DEFAULT_MAX_POINTS_PER_CENTROID,
                                      help="training sample cap: at most K times this many points are used")
    seed: int = _f(DEFAULT_SEED, help="seed of the training sample and the initial centroids")
    init: str = _f(DEFAULT_INIT, help="centroid seeding: auto (afk-mc2 up to K=10,000, random above), afk-mc2 "
                   "(fast k-means++ approximation, cost ~K^2), kmeans++ or random (faiss' default)",
                   choices=INIT_METHODS)
    coarse_k: Optional[int] = _f(None, help="two-level: number of coarse clusters (None: ⌈√K⌉)")
    parts: int = _f(0, help="hierarchical: parts per rank (0: 1 per rank under torchrun, 4 in a single process)")
    local_method: str = _f("flat", help="hierarchical: how each part and the union are clustered",
                           choices=("flat", "two-level"))
    gpus: str = _f("auto", help="faiss GPUs: auto (all faiss sees; under torchrun the rank's own), none, "
                   "or a list like 0,1")
    approx_assign: bool = _f(False, help="nearest centroid by an HNSW graph over the centroids (CPU, large K)")
    hnsw_m: int = _f(32, help="HNSW graph degree for --approx-assign")
    ef_search: int = _f(128, help="HNSW search breadth for --approx-assign")
    assign_chunk: int = _f(65536, help="features per search call")
    redo_kmeans: bool = _f(False, help="recompute the centroids even if they match")
    checkpoint_every_s: float = _f(300.0, "--checkpoint-every",
                                   help="flat k-means: save the centroids at most every this many seconds; a "
                                        "killed run resumes there")
    faiss_verbose: bool = _f(False, help="let faiss print its own progress")
    tiny: int = _f(DEFAULT_TINY, help="clusters with fewer samples count as tiny in the report")
    grid_classes: int = _f(12, help="pseudo classes drawn in the report's picture (class_grid.png; 0: none)")
    grid_images: int = _f(8, help="images per pseudo class in class_grid.png")
    progress: bool = _f(True, cli=False)           # tqdm bars over iterations and rows
    report_json: Optional[str] = _f(None, cli=False)  # the deprecated --report-json (default OUT/report.json)
