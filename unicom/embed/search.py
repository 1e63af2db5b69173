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

from ..data.decode import using_policy
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
    Query images are decoded under the decode policy the index records (``background``, when
    given, must be the index's colour; ``max_pixels``: the size limit, None the default).
    """

    def __init__(self, index_dir, model=None, device: Optional[str] = None, nprobe: Optional[int] = None,
                 ef_search: Optional[int] = None, batch_size: int = 64, precision: str = DEFAULT_PRECISION,
                 progress: bool = True, background: Optional[str] = None, max_pixels: Optional[int] = None):
        self.index = IndexDir(index_dir)
        self.policy = query_policy(self.index, background, max_pixels)
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
            check_same_weights(self.index, self._encoder)
            if self._encoder.embed_dim != self.index.dim:
                raise ValueError(f"the encoder embeds into {self._encoder.embed_dim} dimensions but the index holds "
                                 f"{self.index.dim}-dimensional vectors")
        return self._encoder

    def embed(self, images: Sequence[Union[str, os.PathLike, "object"]]) -> np.ndarray:
        """Embed image paths or PIL images (float32 [n, D], normalised)."""
        enc = self.encoder
        with using_policy(self.policy):
            res = embed_images(enc, list(images), batch_size=self.batch_size, precision=self.precision,
                               normalize=True)
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

        qimgs = [open_image(q, policy=self.policy) for q in queries]
        names = [os.path.basename(str(q)) if isinstance(q, (str, os.PathLike)) else f"#{i}"
                 for i, q in enumerate(queries)]
        rows = [[(_safe_open(self, h), h.score, h.key) for h in hs] for hs in hits]
        return render_results(qimgs, rows, out_png, names)


def query_policy(index: IndexDir, background: Optional[str] = None, max_pixels: Optional[int] = None):
    """The decode policy for queries into ``index``: the background recorded in the index (the
    process's policy when it records none). A ``background`` other than the recorded one is
    refused: the queries would be decoded unlike the collection."""
    from ..data.decode import DecodePolicy, current_policy

    recorded = (index.meta.get("decode") or {}).get("background")
    limit = current_policy().max_pixels if max_pixels is None else max_pixels
    if background is None:
        return DecodePolicy.from_settings(recorded or current_policy().background, limit)
    policy = DecodePolicy.from_settings(background, limit)
    if recorded and policy.record()["background"] != recorded:
        raise ValueError(f"the index at {index.dir} was decoded with background {recorded}, not {background!r}: "
                         "leave --background out to decode the queries like the collection")
    return policy


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


def check_same_weights(index: IndexDir, encoder) -> None:
    """Refuse an encoder whose weights file differs in content (SHA-256) from the one that
    embedded the index, e.g. an ``export/`` rewritten by more training at the same path: the
    queries would be embedded in another space than the collection."""
    from ..formats.fingerprint import short, weights_sha256

    theirs = index.meta.get("weights_sha256")
    mine = weights_sha256(encoder.weights) if theirs else None
    if theirs and mine and mine != theirs:
        raise ValueError(f"the encoder's weights {encoder.weights} changed since the index at {index.dir} was built "
                         f"(sha256 {short(theirs)} → {short(mine)}); searching would compare vectors of two different "
                         f"encoders. Rebuild the index: unicom-embed --model {encoder.source} --data DATA "
                         f"--output {index.dir.parent if index.dir.name == 'index' else index.dir}")


def _safe_open(searcher: Searcher, hit: Hit):
    try:
        return searcher.open_image(hit)
    except Exception:  # a moved or unreadable file is drawn as a grey tile, not an error
        return None


def search(index_dir, images: Sequence[Union[str, os.PathLike, "object"]], k: int = 5, **kwargs) -> List[List[Hit]]:
    """One-shot ``Searcher(index_dir, **kwargs).search_images(images, k)``."""
    return Searcher(index_dir, **kwargs).search_images(images, k)
