"""Revisited Oxford and Paris (Radenović et al. 2018); the +1M distractors come from
``unicom-eval --distractors`` (``retrieval_eval.distractors``).

The query images (``qimlist``) are cropped to their bounding box ``bbx`` and search the
database (``imlist``); mAP and mP@1/5/10 under the Easy, Medium and Hard protocols.

Official layout (the revisitop download scripts)::

    <data-root>/roxford5k/gnd_roxford5k.pkl     (or gnd_roxford5k.mat)
    <data-root>/roxford5k/jpg/<name>.jpg        images of oxbuild_images.tgz
    <data-root>/rparis6k/gnd_rparis6k.pkl       (or gnd_rparis6k.mat)
    <data-root>/rparis6k/jpg/<name>.jpg         images of paris_1.tgz and paris_2.tgz, flattened

``gnd_*.pkl`` holds ``imlist``, ``qimlist`` and ``gnd`` (per query: ``bbx``, ``easy``, ``hard``,
``junk``, 0-based indices into ``imlist``). It is a pickle, so it is read with the restricted
unpickler in ``retrieval_eval.safe_pickle``; the ``.mat`` variant (1-based) is read with scipy.
"""
from __future__ import annotations

import pickle
from pathlib import Path
from typing import Dict, List

import numpy as np

from unicom.datasets.registry import dataset_spec

from .. import safe_pickle
from .base import REVISITOP, Benchmark, ImageSet, find_dataset_dir


class GroundTruthError(ValueError):
    """A ground-truth file was refused or cannot be read; the message names the file."""

DATASETS = ("roxford5k", "rparis6k")
SOURCES = {
    "roxford5k": ("Revisited Oxford: ground truth gnd_roxford5k.pkl from http://cmp.felk.cvut.cz/revisitop/ "
                  "(data/datasets/roxford5k/), images oxbuild_images.tgz from "
                  "https://www.robots.ox.ac.uk/~vgg/data/oxbuildings/ unpacked into roxford5k/jpg/"),
    "rparis6k": ("Revisited Paris: ground truth gnd_rparis6k.pkl from http://cmp.felk.cvut.cz/revisitop/ "
                 "(data/datasets/rparis6k/), images paris_1.tgz and paris_2.tgz from "
                 "https://www.robots.ox.ac.uk/~vgg/data/parisbuildings/ flattened into rparis6k/jpg/"),
}


def _ids(x, offset: int = 0) -> np.ndarray:
    return np.atleast_1d(np.asarray(x if x is not None else [], dtype=np.int64)).ravel() - offset


def read_ground_truth(path: Path) -> Dict:
    """{'imlist', 'qimlist', 'gnd': [{'bbx', 'easy', 'hard', 'junk'}]} with 0-based indices."""
    try:
        if path.suffix == ".pkl":
            cfg = safe_pickle.load(path)
            offset = 0
        else:
            from scipy.io import loadmat

            cfg = loadmat(str(path), squeeze_me=True, simplify_cells=True)
            offset = 1
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, OSError, AttributeError, ImportError,
            IndexError, KeyError, NotImplementedError) as exc:  # every way a corrupt or hostile file fails
        kind = "refused" if isinstance(exc, safe_pickle.UnsafePickleError) else "unreadable"
        raise GroundTruthError(f"{path}: {kind} ground-truth file ({type(exc).__name__}: {exc})") from exc
    if not isinstance(cfg, dict):
        raise GroundTruthError(f"{path}: holds a {type(cfg).__name__}, not the revisitop ground-truth dict")
    for key in ("imlist", "qimlist", "gnd"):
        if key not in cfg:
            raise GroundTruthError(f"{path} lacks {key!r}; is it a revisitop ground-truth file?")
    gnd: List[Dict] = []
    raw = cfg["gnd"]
    try:
        for g in ([raw] if isinstance(raw, dict) else list(raw)):
            entry = {k: _ids(g.get(k), offset) for k in ("easy", "hard", "junk")}
            bbx = g.get("bbx")
            entry["bbx"] = (None if bbx is None or len(np.atleast_1d(bbx)) != 4
                            else tuple(float(v) for v in np.ravel(bbx)))
            gnd.append(entry)
    except (AttributeError, TypeError, ValueError) as exc:
        raise GroundTruthError(f"{path}: malformed 'gnd' entry {len(gnd)} ({type(exc).__name__}: {exc})") from exc
    names = lambda xs: [str(x) for x in np.atleast_1d(xs)]  # noqa: E731
    return {"imlist": names(cfg["imlist"]), "qimlist": names(cfg["qimlist"]), "gnd": gnd}


def load(data_root, name: str = "roxford5k", **_) -> Benchmark:
    if name not in DATASETS:
        raise ValueError(f"unknown revisitop dataset {name!r}; use one of {DATASETS}")
    source = SOURCES[name]
    root, marker = find_dataset_dir(data_root, [f"gnd_{name}.pkl", f"gnd_{name}.mat"],
                                    [name, f"datasets/{name}", f"data/datasets/{name}"], name, source)
    cfg = read_ground_truth(root / marker)
    if len(cfg["gnd"]) != len(cfg["qimlist"]):
        raise ValueError(f"{root / marker}: {len(cfg['qimlist'])} queries but {len(cfg['gnd'])} ground-truth entries")
    jpg = root / "jpg"
    queries = ImageSet([str(jpg / f"{q}.jpg") for q in cfg["qimlist"]], boxes=[g["bbx"] for g in cfg["gnd"]])
    gallery = ImageSet([str(jpg / f"{x}.jpg") for x in cfg["imlist"]])
    gt = [{k: g[k] for k in ("easy", "hard", "junk")} for g in cfg["gnd"]]
    return Benchmark(name, REVISITOP, queries, gallery, ks=dataset_spec(name).ks, ground_truth=gt, source=source,
                     info={"ground_truth_file": str(root / marker), "root": str(root)})
