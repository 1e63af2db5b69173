"""``--dims D``: which compact head to bake in, and the PCA it needs.

``--dims D`` alone keeps the first D coordinates; with ``--pca-fit SET`` a PCA is fitted on
the normalised full embeddings of SET and its first D components are baked in. SET is either
a ``unicom-embed`` output (its ``features/`` are used as they are, after checking that the
same encoder wrote them) or anything ``unicom-embed --data`` reads (an image folder, a list
file, shards), embedded here with the encoder being exported.
"""
from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Optional

import numpy as np

from ..formats import features as ff


@dataclass
class CompactHead:
    """The compact head of an export: ``method`` "first" or "pca", ``dims`` (D) out of ``full_dim``;
    for PCA ``mean`` [full_dim] and ``components`` [D, full_dim] and the ``record`` of the fit."""

    method: str
    dims: int
    full_dim: int
    mean: Optional[np.ndarray] = None
    components: Optional[np.ndarray] = None
    record: Dict[str, Any] = field(default_factory=dict)

    def describe(self) -> Dict[str, Any]:
        """The ``dims`` entry of ``deploy.json``."""
        return {"method": self.method, "dims": self.dims, "full_dim": self.full_dim, **self.record}


def check_dims(dims: Optional[int], full_dim: int, source: str) -> None:
    """Refuse a ``--dims`` outside 1..full_dim before any work (ValueError naming the sizes)."""
    if dims is None:
        return
    if int(dims) < 1 or (full_dim and int(dims) > full_dim):
        raise ValueError(f"--dims {dims} is not possible: {source} embeds into {full_dim} dimensions; "
                         f"pick --dims between 1 and {full_dim}, or leave it out for the full embedding")


def first_dims_head(dims: int, full_dim: int) -> CompactHead:
    """The first-D cut."""
    return CompactHead("first", int(dims), int(full_dim))


def fit_pca(features: np.ndarray, dims: int) -> "tuple[np.ndarray, np.ndarray, float]":
    """Fit a PCA of ``dims`` components on ``features`` [n, full] (rows L2-normalised here):
    returns (mean [full], components [dims, full], fraction of the variance kept)."""
    from sklearn.decomposition import PCA

    x = np.asarray(features, np.float64)
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    pca = PCA(n_components=int(dims), svd_solver="full").fit(x)
    return (pca.mean_.astype(np.float32), pca.components_.astype(np.float32),
            float(pca.explained_variance_ratio_.sum()))


def pca_head(encoder, dims: int, data: str, batch_size: int = 64, workers: int = 0,
             progress: bool = True) -> CompactHead:
    """Fit the PCA head of ``encoder`` (a ``LoadedEncoder``) on the set ``data``."""
    feats, origin = pca_features(encoder, data, batch_size, workers, progress)
    n, full = feats.shape
    if n < int(dims):
        raise ValueError(f"--pca-fit {data} holds {n} usable image(s); a {dims}-dimensional PCA needs at least "
                         f"{dims}: name a larger set or a smaller --dims")
    mean, comps, kept = fit_pca(feats, dims)
    return CompactHead("pca", int(dims), int(full), mean, comps,
                       {"data": origin, "n": int(n), "variance_kept": round(kept, 6)})


def pca_features(encoder, data: str, batch_size: int, workers: int, progress: bool) -> "tuple[np.ndarray, str]":
    """The finite full embeddings [n, D] of the set ``data`` and how they were found."""
    fdir = ff.resolve_features_dir(data)
    if Path(data).is_dir() and (fdir / ff.META_FILE).is_file():
        check_features_encoder(ff.read_meta(fdir), encoder, fdir)
        origin = str(Path(fdir).resolve())
    else:
        from ..embed.embedder import embed_to_features

        with tempfile.TemporaryDirectory(prefix="unicom-pca-") as tmp:
            res = embed_to_features(encoder, data, tmp, batch_size=batch_size, workers=workers, precision="fp32",
                                    progress=progress)
            return _stack(res.features_dir, data), os.path.abspath(data)
    return _stack(fdir, data), origin


def _stack(fdir: Path, data: str) -> np.ndarray:
    rows = [np.asarray(f, np.float32) for _, f, _ in ff.iter_shards(fdir)]
    feats = np.concatenate(rows) if rows else np.zeros((0, 0), np.float32)
    feats = feats[np.isfinite(feats).all(axis=1)] if len(feats) else feats
    if not len(feats):
        raise ValueError(f"--pca-fit {data} gave no embeddings; name an image folder, a list file, shards or a "
                         "unicom-embed output folder")
    return feats


def check_features_encoder(meta: Dict[str, Any], encoder, fdir: Path) -> None:
    """Refuse features that another encoder wrote: a PCA of another space would scramble the
    embeddings (ValueError naming both encoders)."""
    from ..embed.embedder import portable_source

    mine = dict(encoder.describe(), model=portable_source(encoder.source))
    diff = [f"{k} {meta.get(k)!r} vs {mine.get(k)!r}" for k in ("model", "image_size", "embed_dim")
            if meta.get(k) is not None and meta.get(k) != mine.get(k)]
    if diff:
        raise ValueError(f"--pca-fit {fdir} holds the embeddings of another encoder ({'; '.join(diff)}): embed "
                         f"the set with this one (unicom-embed --model {encoder.source}) or name the images instead")
