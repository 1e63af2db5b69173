"""Every dataset and benchmark the toolkit knows, declared once: its name, aliases, what its
evaluation reads (the split), its Recall@K list (``ks``), its headline metric and whether it has
a train split for ``unicom-train --dataset``.

``unicom-train --dataset NAME`` reads the train split through ``read_train_split``
(``unicom.datasets``); ``unicom-eval --benchmark NAME`` reads the evaluation split through
``retrieval_eval.loaders``, which takes the ks, split and aliases from here. Import-light (no
numpy): the command-line parsers list the names.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple


@dataclass(frozen=True)
class DatasetSpec:
    """One dataset or benchmark.

    * ``name``: the canonical name; ``aliases``: other spellings that mean it (lower case).
    * ``protocol``: how the evaluation scores it: ``labelled`` (Recall@K, MAP@R), ``revisitop``
      (mAP Easy/Medium/Hard) or ``gldv2`` (mAP@100).
    * ``ks``: the K of Recall@K (labelled), of mP@k (revisitop) or of mAP@K (gldv2), as the papers
      on that benchmark report them.
    * ``eval_split``: what the evaluation reads, in words (``Benchmark.info["split"]``); None where
      the loader records it from the files.
    * ``query_gallery``: the evaluation reads a ``query`` and a ``gallery`` split of the
      ``unicom.datasets`` reader; otherwise its ``test`` split, every image a query against all
      the others.
    * ``trains``: ``unicom-train --dataset`` reads its train split (``unicom.datasets``).
    * ``headline``: the metric that picks the best encoder while training (``--eval-every``).
    """

    name: str
    protocol: str = "labelled"
    ks: Tuple[int, ...] = (1, 2, 4, 8)
    aliases: Tuple[str, ...] = ()
    eval_split: Optional[str] = None
    query_gallery: bool = False
    trains: bool = True
    headline: str = "R@1"


# In the order ``unicom-eval`` lists them.
SPECS: Tuple[DatasetSpec, ...] = (
    DatasetSpec("cub", aliases=("cub200",), eval_split="test classes 101-200"),
    DatasetSpec("cars", aliases=("cars196",), eval_split="test classes 99-196"),
    DatasetSpec("sop", ks=(1, 10, 100, 1000), aliases=("stanford_online_products",)),
    DatasetSpec("inshop", ks=(1, 10, 20, 30), aliases=("in-shop",), query_gallery=True,
                eval_split="list_eval_partition.txt query/gallery"),
    # Recall@1/4/16/32: the Ks every paper on the Smooth-AP iNaturalist split reports
    DatasetSpec("inaturalist", ks=(1, 4, 16, 32), aliases=("inat", "inat2018")),
    DatasetSpec("roxford5k", "revisitop", ks=(1, 5, 10), aliases=("roxford",), trains=False, headline="mAP_medium"),
    DatasetSpec("rparis6k", "revisitop", ks=(1, 5, 10), aliases=("rparis",), trains=False, headline="mAP_medium"),
    DatasetSpec("gldv2", "gldv2", ks=(100,), headline="mAP@100"),
    DatasetSpec("image_folder", aliases=("folder", "image-folder")),
    DatasetSpec("csv", aliases=("csv_list",)),
    DatasetSpec("sample", trains=False),   # the held-out concepts of `make sample`
    DatasetSpec("digits", trains=False),   # scikit-learn's bundled digits
)
DATASETS: Dict[str, DatasetSpec] = {s.name: s for s in SPECS}
_ALIASES: Dict[str, str] = {a: s.name for s in SPECS for a in s.aliases}


def canonical_name(name: str) -> str:
    """``name`` with aliases resolved (``cub200`` → ``cub``, ``roxford`` → ``roxford5k``); an
    unknown name is returned as given, lower-cased."""
    key = name.strip().lower()
    return _ALIASES.get(key, key)


def dataset_spec(name: str) -> Optional[DatasetSpec]:
    """The spec of ``name`` (or of the name it is an alias of); None when unknown."""
    return DATASETS.get(canonical_name(name))


def benchmark_names() -> List[str]:
    """Every name ``unicom-eval --benchmark`` accepts (aliases aside)."""
    return [s.name for s in SPECS]


def training_datasets() -> List[str]:
    """The names ``unicom-train --dataset`` reads a train split of (aliases aside; ``shards`` too)."""
    return [s.name for s in SPECS if s.trains]
