"""Similarity search in Python: ``Searcher(index_dir).search_images(paths, k)``.

The searcher loads the index directory written by ``unicom-embed`` and, on the first image
query, the encoder recorded in it (or the one given), with the same input size.
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import List, Optional, Sequence, Union

import numpy as np

from ..formats.index import IndexDir
from ..index.tune import apply_search_params
from ..models.inference import embed_images
from ..runtime.precision import DEFAULT_PRECISION
from .render import render_results


@dataclass
class Hit:
    """One result: rank (1-based), score (cosine), row id, shard, key and image path if known."""

    rank: int
    score: float
    id: int
    shard: str
    key: str
    path: Optional[str]

    def to_dict(self) -> dict:
        return asdict(self)


class Searcher:
    """Top-k search of images or vectors in an index built by ``unicom-embed``.

    The queries are embedded by the encoder recorded in the index. ``model`` (a name, a path or
    a ``LoadedEncoder``) may name that same encoder; another one is refused
    (``check_same_encoder``). ``nprobe`` (IVF) and ``ef_search`` (HNSW) trade speed for recall;
    left None, the values tuned when the index was built (``search_params`` in index.json) apply.
    """

    def __init__(self, index_dir, model=None, device: Optional[str] = None, nprobe: Optional[int] = None,
                 ef_search: Optional[int] = None, batch_size: int = 64, precision: str = DEFAULT_PRECISION,
                 progress: bool = True):
        self.index = IndexDir(index_dir)
        tuned = dict(self.index.meta.get("search_params") or self.index.meta.get("params") or {})
        tuned.update({k: v for k, v in (("nprobe", nprobe), ("efSearch", ef_search)) if v is not None})
        apply_search_params(self.index.index, tuned)
        self._model_spec = model
        self.device, self.batch_size, self.precision, self.progress = device, batch_size, precision, progress
        self._encoder = None

    @property
    def encoder(self):
        """The ``LoadedEncoder`` used for image queries (loaded on first use)."""
        if self._encoder is None:
            from ..pretrained.load import LoadedEncoder, load_encoder

            spec = self._model_spec if self._model_spec is not None else self.index.meta.get("model")
            if spec is None:
                raise ValueError(f"the index at {self.index.dir} records no encoder; pass model=...")
            if isinstance(spec, LoadedEncoder):
                self._encoder = spec
            else:
                # The recorded encoder is reloaded exactly as it embedded the collection.
                recorded = self._model_spec is None
                self._encoder = load_encoder(spec, device=self.device,
                                             image_size=self.index.meta.get("image_size") if recorded else None,
                                             heads=self.index.meta.get("heads") if recorded else None,
                                             progress=self.progress)
            if self._model_spec is not None:
                check_same_encoder(self.index, self._encoder)
            if self._encoder.embed_dim != self.index.dim:
                raise ValueError(f"the encoder embeds into {self._encoder.embed_dim} dimensions but the index holds "
                                 f"{self.index.dim}-dimensional vectors")
        return self._encoder

    def embed(self, images: Sequence[Union[str, os.PathLike, "object"]]) -> np.ndarray:
        """Embed image paths or PIL images (float32 [n, D], normalised)."""
        enc = self.encoder
        res = embed_images(enc, list(images), batch_size=self.batch_size, precision=self.precision, normalize=True)
        if res.skipped:
            row, reason = next(iter(res.skipped.items()))
            raise ValueError(f"cannot embed the query image {images[row]} ({reason})")
        return res.embeddings

    def search_vectors(self, queries: np.ndarray, k: int = 5) -> List[List[Hit]]:
        """Top-k hits for each row of ``queries`` [m, D] (normalised)."""
        scores, ids = self.index.search(np.atleast_2d(queries), k)
        out: List[List[Hit]] = []
        for srow, irow in zip(scores, ids):
            hits = []
            for rank, (s, i) in enumerate(((s, i) for s, i in zip(srow, irow) if i >= 0), start=1):
                e = self.index.entry(int(i))
                hits.append(Hit(rank, float(s), int(i), e.shard, e.key, e.path))
            out.append(hits)
        return out

    def search_images(self, images: Sequence[Union[str, os.PathLike, "object"]], k: int = 5) -> List[List[Hit]]:
        """Top-k hits for each query image (paths or PIL images)."""
        return self.search_vectors(self.embed(images), k)

    def open_image(self, hit: Union[Hit, int]):
        """The image of a hit (or row id), or None when its source is unknown or gone."""
        return self.index.open_image(hit.id if isinstance(hit, Hit) else int(hit))

    def render(self, queries: Sequence[Union[str, os.PathLike]], hits: Sequence[Sequence[Hit]], out_png) -> Path:
        """Write a PNG: each query beside its hits, with their scores."""
        from ..data.images import open_image

        qimgs = [open_image(q) for q in queries]
        names = [os.path.basename(str(q)) if isinstance(q, (str, os.PathLike)) else f"#{i}"
                 for i, q in enumerate(queries)]
        rows = [[(_safe_open(self, h), h.score, h.key) for h in hs] for hs in hits]
        return render_results(qimgs, rows, out_png, names)


def check_same_encoder(index: IndexDir, encoder) -> None:
    """Refuse an encoder other than the one recorded in the index: its vectors live in another
    space, so the results would look confident and be wrong. Compares the model (a released
    name or an absolute path), the input size and the embedding size, where the index records
    them."""
    from .embedder import portable_source

    rec = index.encoder_record()
    mine = dict(encoder.describe(), model=portable_source(encoder.source))
    diff = [f"{f} {rec[f]!r} vs {mine.get(f)!r}" for f in ("model", "image_size", "embed_dim")
            if rec.get(f) is not None and rec[f] != mine.get(f)]
    if diff:
        raise ValueError(f"the index at {index.dir} was built with another encoder ({'; '.join(diff)}): "
                         f"leave --model out to use the index's own encoder, or rebuild the index with "
                         f"unicom-embed --model {encoder.source}")


def _safe_open(searcher: Searcher, hit: Hit):
    try:
        return searcher.open_image(hit)
    except Exception:  # a moved or unreadable file is drawn as a grey tile, not an error
        return None


def search(index_dir, images: Sequence[Union[str, os.PathLike, "object"]], k: int = 5, **kwargs) -> List[List[Hit]]:
    """One-shot ``Searcher(index_dir, **kwargs).search_images(images, k)``."""
    return Searcher(index_dir, **kwargs).search_images(images, k)
