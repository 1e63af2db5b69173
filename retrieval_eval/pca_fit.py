"""The set a PCA is fitted on (``unicom-eval --pca-fit SOURCE``): never the test set.

SOURCE is one of
* a dataset name with a train split (``cub``, ``cars``, ``sop``, ``inshop``, ``inaturalist``,
  ``gldv2``, ``image_folder``, ``csv``): its **train split**, read from ``--data-root`` (the
  benchmark's own root, e.g. CUB's classes 1-100 when CUB's test classes 101-200 are
  evaluated), or from ``ROOT`` in ``NAME:ROOT``; ``sample`` means the sample set's training
  shards (``DATA_ROOT/shards``), whose images are not the held-out test concepts;
* an image folder, a list file of image paths or webdataset shards, embedded with the
  evaluated encoder (cached, as ``--distractors`` are);
* precomputed features: a ``unicom-embed`` output folder or a ``.npy`` array [m, D].

Refused before any work: a folder that contains one of the benchmark's test images, a list
that names one, and a source whose vectors turn out to be the test set's own (at least half of
them equal to test embeddings). At most ``--pca-fit-samples`` vectors are used, evenly spaced.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Set

import numpy as np

from unicom.formats.atomic_io import write_text

DEFAULT_SAMPLES = 20000
SAMPLE_SHARDS = "shards"


@dataclass
class FitSource:
    """A resolved ``--pca-fit``: ``spec`` as given, ``kind`` (``train_split``, ``images``,
    ``features``), what to load (``load``: a path or pattern for ``distractors.load_distractors``,
    or the image ``paths`` of a train split) and a description for the report."""

    spec: str
    kind: str
    load: Optional[str] = None
    paths: Optional[List[str]] = None
    description: str = ""


def _test_paths(bench) -> Set[str]:
    keys = list(bench.queries.keys) + ([] if bench.gallery is None else list(bench.gallery.keys))
    return {os.path.realpath(k) for k in keys if not k.startswith("#")}


def _refuse_overlap(spec: str, fit_paths: List[str], test: Set[str], bench_name: str) -> None:
    shared = [p for p in fit_paths if os.path.realpath(p) in test]
    if shared:
        raise ValueError(f"--pca-fit {spec}: {len(shared)} of its images are {bench_name}'s test images (e.g. "
                         f"{shared[0]}); fit the PCA on a training split or another collection, never the test set")


def _dataset_name(spec: str) -> Optional[tuple]:
    from unicom.datasets.registry import canonical_name, training_datasets

    name, _, root = spec.partition(":")
    key = canonical_name(name)
    if key in training_datasets() or key == "sample":
        return key, (root or None)
    return None


def resolve_fit_source(spec: str, bench, data_root, have_encoder: bool, max_samples: int = DEFAULT_SAMPLES
                       ) -> FitSource:
    """Check ``spec`` against the benchmark before any work (see the module docstring)."""
    test = _test_paths(bench)
    named = _dataset_name(spec) if not Path(spec).expanduser().exists() else None
    if named is not None:
        return _named_source(spec, named[0], named[1] or data_root, bench, test, have_encoder, max_samples)
    p = Path(spec).expanduser()
    if spec.endswith(".npy"):
        if not p.is_file():
            raise ValueError(f"--pca-fit {spec}: file not found")
        return FitSource(spec, "features", load=str(p), description=f"features {p}")
    from .distractors import features_folder, revisitop1m_list

    if p.is_dir() and features_folder(spec) is not None:
        return FitSource(spec, "features", load=spec, description=f"unicom-embed features {features_folder(spec)}")
    if not p.exists() and "{" not in spec and "://" not in spec:
        from unicom.datasets.registry import training_datasets

        raise ValueError(f"--pca-fit {spec}: neither a dataset with a train split ({', '.join(training_datasets())}, "
                         "sample) nor an existing folder, list file, shard pattern, unicom-embed folder or .npy")
    if not have_encoder:
        raise ValueError(f"--pca-fit {spec}: images need an encoder (--model or --clip-model); with --embeddings "
                         "pass precomputed fit features (a unicom-embed folder or a .npy)")
    if p.is_dir() and revisitop1m_list(spec) is None:
        root = os.path.realpath(p)
        inside = sorted(t for t in test if t.startswith(root + os.sep))
        if inside:
            raise ValueError(f"--pca-fit {spec}: the folder holds {len(inside)} of {bench.name}'s test images (e.g. "
                             f"{inside[0]}); fit the PCA on a training split or another collection, never the "
                             "test set")
    elif p.is_file() and p.suffix.lower() in (".txt", ".list", ".lst"):
        lines = [x.strip() for x in p.read_text(encoding="utf-8").splitlines() if x.strip()]
        _refuse_overlap(spec, [str((p.parent / x) if not os.path.isabs(x) else x) for x in lines], test, bench.name)
    return FitSource(spec, "images", load=spec, description=f"images {spec}")


def _named_source(spec: str, key: str, root, bench, test: Set[str], have_encoder: bool, max_samples: int
                  ) -> FitSource:
    """A dataset's train split (``sample``: the sample set's training shards)."""
    from unicom.datasets import read_train_split

    if root is None:
        raise ValueError(f"--pca-fit {spec}: name the dataset's root as {spec}:ROOT (or pass --data-root)")
    if not have_encoder:
        raise ValueError(f"--pca-fit {spec}: images need an encoder (--model or --clip-model); with --embeddings "
                         "pass precomputed fit features (a unicom-embed folder or a .npy)")
    if key == "sample":
        shards = Path(root).expanduser() / SAMPLE_SHARDS
        if not shards.is_dir():
            raise ValueError(f"--pca-fit sample: no training shards at {shards} (make sample writes them)")
        return FitSource(spec, "images", load=str(shards), description=f"sample training shards {shards}")
    rows = read_train_split(key, root)
    paths = [str(p) for p in rows.paths]
    if not paths:
        raise ValueError(f"--pca-fit {spec}: the train split of {key} under {root} is empty")
    if len(paths) > max_samples:
        paths = [paths[i] for i in np.linspace(0, len(paths) - 1, max_samples).round().astype(int)]
    _refuse_overlap(spec, paths, test, bench.name)
    return FitSource(spec, "train_split", paths=paths,
                     description=f"{key} train split under {root} ({len(rows.paths)} images)")


def _list_file(paths: List[str], cache_root) -> str:
    from .distractors import default_cache_root

    digest = hashlib.sha256("\n".join(paths).encode()).hexdigest()[:20]
    target = Path(cache_root or default_cache_root()).expanduser() / "pca_fit" / f"{digest}.txt"
    if not target.is_file():
        write_text(target, "".join(p + "\n" for p in paths))
    return str(target)


def load_fit_embeddings(src: FitSource, encoder, test_emb: np.ndarray, *, precision: str, cache_root,
                        batch_size: int, workers: int, progress: bool, max_samples: int = DEFAULT_SAMPLES
                        ) -> np.ndarray:
    """The fit set's L2-normalised embeddings [m, D] (embedded with ``encoder`` and cached, or
    read), at most ``max_samples`` rows, evenly spaced. Refuses a set whose rows are mostly
    the test set's own (``test_emb``, every test embedding)."""
    from . import knn
    from .distractors import load_distractors

    spec = _list_file(src.paths, cache_root) if src.kind == "train_split" else str(src.load)
    fit = load_distractors(spec, encoder, precision=precision, cache_root=cache_root, batch_size=batch_size,
                           workers=workers, progress=progress).features
    if len(fit) > max_samples:
        fit = fit[np.linspace(0, len(fit) - 1, max_samples).round().astype(int)]
    if len(fit) and test_emb.shape[1] != fit.shape[1]:
        raise ValueError(f"--pca-fit {src.spec}: its vectors are {fit.shape[1]}-dimensional but the benchmark's "
                         f"embeddings are {test_emb.shape[1]}-dimensional: they come from another encoder")
    test_rows = {r.tobytes() for r in knn.l2_normalize(test_emb[np.isfinite(test_emb).all(axis=1)])}
    same = sum(r.tobytes() in test_rows for r in fit)
    if len(fit) and same * 2 >= len(fit):
        raise ValueError(f"--pca-fit {src.spec}: {same} of its {len(fit)} vectors are the test set's own "
                         "embeddings; fit the PCA on a training split or another collection, never the test set")
    return fit


def describe(src: FitSource, rows: int) -> Dict[str, Any]:
    """The report's record of the fit set."""
    return {"source": src.spec, "kind": src.kind, "description": src.description, "rows": int(rows)}
