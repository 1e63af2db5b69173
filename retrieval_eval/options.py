"""Every ``unicom-eval`` setting, declared once: the dataclasses below are both the defaults of
``retrieval_eval.evaluate(**options)`` and the source of the command-line flags
(``unicom.cli.dataclass_args``). Flag names follow ``docs/cli.md``.

Import-light (no numpy, torch or faiss) so that ``unicom-eval --help`` is fast.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import List, Optional

from unicom.cli.dataclass_args import option
from unicom.data.decode_options import BACKGROUND_HELP, DEFAULT_BACKGROUND, DEFAULT_MAX_PIXELS, MAX_PIXELS_HELP
from unicom.runtime.precision import DEFAULT_PRECISION, PRECISIONS

DEFAULT_MAX_R = 1000
DEFAULT_WORKERS = min(8, os.cpu_count() or 1)
INPUTS = "benchmark and encoder (give one of --model, --clip-model, --embeddings)"
SEARCH = "metrics and search"
OUTPUTS = "outputs"
RUNTIME = "runtime"
COMPACT = "through an index, compact embeddings, published figures (docs/evaluation.md)"
DEFAULT_PCA_FIT_SAMPLES = 20000


class BadRequestError(ValueError):
    """A flag's value that cannot work with this benchmark or encoder (``--dims`` above the
    embedding size, an unknown ``--index-type``, ``--pca-fit`` on the test set …), found before
    any work; ``unicom-eval`` exits 2 with its one-line message."""


def int_list(text: str) -> List[int]:
    """``"1,2 4"`` → [1, 2, 4] (commas or spaces)."""
    return [int(x) for x in text.replace(",", " ").split()]


def int_or_none(text: str) -> Optional[int]:
    """An int, or None for ``none`` (no cap)."""
    return None if str(text).strip().lower() in ("none", "inf") else int(text)


@dataclass
class EvalInputs:
    """What is evaluated: the benchmark and the encoder (or precomputed embeddings)."""

    benchmark: Optional[List[str]] = option(None, "benchmark name(s) (see docs/evaluation.md for the list and "
                                                  "layouts); several are evaluated one after the other",
                                            type=str, nargs="+", metavar="NAME", group=INPUTS)
    data_root: Optional[List[str]] = option(None, "the benchmark's unpacked root folder (sample: data/sample; csv: "
                                                  "the CSV file; digits: unused); with several benchmarks one "
                                                  "parent folder holding each dataset's archive folder, or one "
                                                  "root per benchmark", type=str, nargs="+", metavar="DIR",
                                            group=INPUTS)
    model: Optional[str] = option(None, "a Unicom encoder: a unicom.load name (ViT-B/32, ...), an export/ folder, "
                                        "a .pt/.safetensors file or a training checkpoint folder", group=INPUTS)
    clip_model: Optional[str] = option(None, "an open_clip model name (or local-dir:PATH), embedded with "
                                             "encode_image", aliases=("--open-clip",), metavar="NAME", group=INPUTS)
    clip_pretrained: Optional[str] = option(None, "with --clip-model: open_clip weights (a pretrained tag, an "
                                                  "hf-hub: name, a local file, or 'none' for a random init)",
                                            aliases=("--pretrained",), group=INPUTS)
    embeddings: Optional[str] = option(None, "precomputed embeddings [n, D]: queries then gallery, in benchmark "
                                             "order (NaN rows = skipped)", metavar="FILE.npy", group=INPUTS)
    labels: Optional[str] = option(None, "with --embeddings and no --benchmark: int labels [n] (all-vs-all)",
                                   metavar="FILE.npy", group=INPUTS)
    distractors: Optional[str] = option(None, "distractor images joining the database as non-relevant items: an "
                                              "image folder, a list file, shards, unicom-embed features, or the "
                                              "revisitop1m folder (revisitop1m.txt + jpg/)", metavar="SOURCE",
                                        group=INPUTS)
    log_level: str = option("WARNING", "logging verbosity", choices=("DEBUG", "INFO", "WARNING", "ERROR"),
                            group=RUNTIME)


@dataclass
class EvalOptions:
    """How it is evaluated and where the results go (``evaluate(**options)`` takes these)."""

    ks: Optional[List[int]] = option(None, "the K list of Recall@K, overriding the benchmark's (e.g. 1 2 4 8 or "
                                           "1,10,100)", flag="--recall-at", aliases=("--k",), type=int_list,
                                     nargs="+", metavar="K", group=SEARCH)
    max_r: Optional[int] = option(DEFAULT_MAX_R, "cap on R for MAP@R and R-precision; 'none' = uncapped, as "
                                                 "pytorch-metric-learning", type=int_or_none, group=SEARCH)
    avg_of_avgs: bool = option(False, "report per-class means (the mean over classes of each class's mean), as "
                                      "pytorch-metric-learning's avg_of_avgs", action="store_true", group=SEARCH)
    chunk_size: Optional[int] = option(None, "queries per search chunk (None: about 256 MiB of results)", type=int,
                                       group=SEARCH)
    search_device: Optional[str] = option(None, "faiss search device if different from --device (auto, cpu, "
                                                "cuda:N)", group=SEARCH)
    output: Optional[str] = option(None, "folder for results.json, per_class.json and retrieval.png (a path "
                                         "ending in .json writes that file and the others beside it)",
                                   group=OUTPUTS)
    visualize: int = option(0, "draw N queries with their top results into a PNG", type=int, metavar="N",
                            group=OUTPUTS)
    visualize_k: int = option(8, "results per query in the picture", type=int, group=OUTPUTS)
    visualize_path: Optional[str] = option(None, "PNG path (default: retrieval.png in --output)",
                                           aliases=("--visualize-out",), group=OUTPUTS)
    save_embeddings: Optional[str] = option(None, "also save the embeddings (queries then gallery) to this .npy",
                                            metavar="FILE.npy", group=OUTPUTS)
    distractor_cache: Optional[str] = option(None, "folder of the distractor feature cache (None: "
                                                   "$UNICOM_CACHE/distractors or ~/.cache/unicom/distractors)",
                                             group=OUTPUTS)
    index_type: Optional[str] = option(None, "also search the database through this faiss index and report every "
                                             "metric through it, with its recall against exact search: flat, "
                                             "hnsw, ivf or a faiss index_factory string (IVF256,PQ32, "
                                             "OPQ32,IVF256,PQ32, IVF256,SQ8, HNSW32 ...), as unicom-embed takes",
                                       metavar="SPEC", group=COMPACT)
    index_params: Optional[str] = option(None, "search parameters of --index-type in faiss ParameterSpace syntax "
                                               "(nprobe=32, efSearch=256); default: unicom-embed's (IVF "
                                               "max(16, nlist/64) cells, HNSW efSearch 128)", metavar="P=V,..",
                                         group=COMPACT)
    dims: Optional[List[int]] = option(None, "also report every metric with the embedding cut to its first d "
                                             "dimensions (and PCA to d with --pca-fit), float32 and float16, with "
                                             "a plot against dimension and bytes per vector", type=int_list,
                                       nargs="+", metavar="D", group=COMPACT)
    pca_fit: Optional[str] = option(None, "with --dims: fit the PCA on this set, never the test set: a dataset "
                                          "name (its train split, from --data-root or NAME:ROOT; 'sample' = the "
                                          "sample set's training shards), an image folder, list file or shards, "
                                          "a unicom-embed folder or a .npy", metavar="SOURCE", group=COMPACT)
    pca_fit_samples: int = option(DEFAULT_PCA_FIT_SAMPLES, "at most this many --pca-fit vectors (evenly spaced)",
                                  type=int, group=COMPACT)
    compare: Optional[str] = option(None, "'official': add the published R@1 of the released encoder (zero-shot) "
                                          "or of its make finetune run (supervised) and the difference",
                                    choices=("official",), group=COMPACT)
    batch_size: int = option(128, "images per forward pass", type=int, group=RUNTIME)
    workers: int = option(DEFAULT_WORKERS, "DataLoader worker processes", type=int, group=RUNTIME)
    device: str = option("auto", "auto, cpu, cuda or cuda:N (model and faiss search)", group=RUNTIME)
    precision: str = option(DEFAULT_PRECISION, "autocast precision of the encoder (auto: bf16 on GPUs and "
                            "on CPUs with native bf16, fp32 on other CPUs)",
                            choices=PRECISIONS, group=RUNTIME)
    progress: bool = option(True, "progress bars (--no-progress turns them off)", flag="--no-progress",
                            action="store_false", group=RUNTIME)
    background: str = option(DEFAULT_BACKGROUND, BACKGROUND_HELP, group=RUNTIME)
    max_image_pixels: int = option(DEFAULT_MAX_PIXELS, MAX_PIXELS_HELP, type=int, group=RUNTIME)

    def __post_init__(self):
        if self.ks is not None:  # --recall-at 1,2 4 arrives as [[1, 2], [4]]
            flat = [k for x in self.ks for k in (x if isinstance(x, (list, tuple)) else [x])]
            self.ks = sorted({int(k) for k in flat})
            if not self.ks or self.ks[0] < 1:
                raise ValueError(f"--recall-at needs positive integers, got {self.ks}")
        self.decode_policy()  # a bad --background / --max-image-pixels is refused before any work
        if self.dims is not None:
            flat_dims = [d for x in self.dims for d in (x if isinstance(x, (list, tuple)) else [x])]
            self.dims = sorted({int(d) for d in flat_dims})
            if not self.dims or self.dims[0] < 1:
                raise ValueError(f"--dims needs positive integers, got {self.dims}")
        if self.pca_fit is not None and not self.dims:
            raise ValueError("--pca-fit is for --dims (it fits the PCA that reduces to each d)")
        if int(self.pca_fit_samples) < 1:
            raise ValueError(f"--pca-fit-samples must be positive, got {self.pca_fit_samples}")
        if self.max_r is not None and int(self.max_r) < 1:
            raise ValueError(f"--max-r must be a positive integer or 'none', got {self.max_r}")

    def decode_policy(self):
        """The image decode policy of ``background`` / ``max_image_pixels`` (``unicom.data.decode``)."""
        from unicom.data.decode import DecodePolicy

        try:
            return DecodePolicy.from_settings(self.background, self.max_image_pixels)
        except ValueError as exn:
            raise ValueError(f"--background / --max-image-pixels: {exn}") from None
