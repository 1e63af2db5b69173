"""What one running service holds: the index and its encoder (loaded once), the encode queue,
the captions and thumbnails, the pseudo classes, the metrics, and the recent query vectors
that make a search from an uploaded image shareable as ``#q=query:ID``."""
from __future__ import annotations

import hashlib
import logging
import math
import threading
from collections import OrderedDict
from typing import Any, Dict, List, Optional

import numpy as np

from .config import ServeConfig
from .errors import ApiError, bad_request, not_found
from .metrics import Metrics

log = logging.getLogger(__name__)
RECENT_QUERIES = 1024   # query vectors kept for shared links (a few KB each)


class Service:
    """The loaded index (``searcher``, None with ``--clusters`` alone), ``clusters`` (None without
    ``--clusters``) and the machinery around them."""

    def __init__(self, config: ServeConfig, searcher=None, clusters=None):
        from .catalog import Catalog
        from .encode_queue import EncodeQueue

        self.config, self.searcher, self.clusters = config, searcher, clusters
        self.metrics = Metrics()
        self.catalog = Catalog(searcher.index, config.thumb_size) if searcher is not None else None
        self.queue = EncodeQueue(self._encode, config.batch_size, config.queue_limit, self.metrics)
        self._recent: "OrderedDict[str, np.ndarray]" = OrderedDict()
        self._recent_lock = threading.Lock()

    @classmethod
    def load(cls, config: ServeConfig) -> "Service":
        """Load what ``config`` names: the index and its encoder (now, not on the first query) and
        the pseudo classes. Raises ``FileNotFoundError`` / ``ValueError`` naming what is wrong."""
        config.check()
        searcher = clusters = None
        if config.index:
            from ..embed.search import Searcher
            from ..runtime.device import resolve_device

            device = str(resolve_device(config.device))
            searcher = Searcher(config.index, model=config.model, device=device, nprobe=config.nprobe,
                                ef_search=config.ef_search, batch_size=config.batch_size,
                                precision=config.precision, progress=not config.no_progress)
            enc = searcher.encoder  # loaded and checked against the index's record here, once
            log.info("index %s: %d items, %d-d; encoder %s on %s", searcher.index.dir, len(searcher.index),
                     searcher.index.dim, enc.source, enc.device)
        if config.clusters:
            from .clusters import PseudoClasses

            clusters = PseudoClasses(config.clusters, progress=not config.no_progress)
            log.info("pseudo classes %s: %d classes over %d samples", config.clusters, len(clusters.sizes),
                     len(clusters))
        return cls(config, searcher, clusters)

    # ----------------------------------------------------------------- encoding and search

    def _encode(self, images: List[Any]) -> np.ndarray:
        assert self.searcher is not None
        return self.searcher.embed(images)

    def need_index(self):
        if self.searcher is None:
            raise ApiError(409, "no_index", "this service has no index to search: start unicom-serve with --index")
        return self.searcher

    def check_k(self, k: Optional[int]) -> int:
        """``k`` (or ``--top-k``) within 1..``--max-k``."""
        k = self.config.top_k if k is None else k
        if not 1 <= k <= self.config.max_k:
            raise bad_request("bad_k", f"k={k} is out of range: ask for 1 to {self.config.max_k} results (--max-k)")
        return k

    def check_id(self, i: int) -> int:
        n = len(self.need_index().index)
        if not 0 <= i < n:
            raise not_found("unknown_id", f"no item {i}: ids run from 0 to {n - 1}")
        return i

    def check_vectors(self, value: Any) -> np.ndarray:
        """A JSON embedding (one list of numbers, or a list of them) → float32 [m, D], normalised."""
        dim = self.need_index().index.dim
        if not isinstance(value, list) or not value:
            raise bad_request("bad_embedding", f"embedding must be a non-empty list of {dim} numbers")
        rows = value if isinstance(value[0], list) else [value]
        for r in rows:
            if not isinstance(r, list) or not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in r):
                raise bad_request("bad_embedding", "embedding must hold numbers only")
            if len(r) != dim:
                raise bad_request("bad_embedding", f"embedding has {len(r)} values; this index holds {dim}-d vectors")
            if not all(math.isfinite(x) for x in r):
                raise bad_request("bad_embedding", "embedding holds NaN or infinite values")
        q = np.asarray(rows, dtype=np.float64)
        norms = np.linalg.norm(q, axis=1, keepdims=True)
        if not (norms > 0).all():
            raise bad_request("bad_embedding", "embedding is all zeros: it has no direction to search")
        return (q / norms).astype(np.float32)

    def search(self, q: np.ndarray, k: int) -> List[List[Dict[str, Any]]]:
        """Top-k of each row of ``q`` as result dicts (``id, key, score, caption, image_url``)."""
        searcher = self.need_index()
        assert self.catalog is not None
        with self.metrics.timed("search"):
            out = []
            for hits in searcher.search_vectors(q, k):
                rows = []
                for h in hits:
                    d = self.catalog.describe(h.id)
                    rows.append({"id": h.id, "key": h.key, "score": round(float(h.score), 6), "rank": h.rank,
                                 "caption": d["caption"], "shard": h.shard, "image_url": d["image_url"]})
                out.append(rows)
        return out

    def item_vector(self, i: int) -> Optional[np.ndarray]:
        """The stored vector of row ``i`` [1, D] where the index can give it back exactly, else None."""
        index = self.need_index().index.index
        try:
            v = index.reconstruct(int(i))
        except RuntimeError:  # an index without a direct map (IVF) or with lossy codes
            return None
        v = np.asarray(v, dtype=np.float32)[None]
        n = np.linalg.norm(v)
        return v / n if n > 0 else None

    # ----------------------------------------------------------------- shared query vectors

    def remember(self, image_bytes: bytes, vector: np.ndarray) -> str:
        """Keep ``vector`` under an id made from the image's bytes; returns the id."""
        qid = hashlib.sha1(image_bytes).hexdigest()[:16]
        with self._recent_lock:
            self._recent[qid] = vector
            self._recent.move_to_end(qid)
            while len(self._recent) > RECENT_QUERIES:
                self._recent.popitem(last=False)
        return qid

    def recall(self, qid: str) -> np.ndarray:
        with self._recent_lock:
            v = self._recent.get(qid)
        if v is None:
            raise not_found("unknown_query", f"no recent query {qid!r}: this server has restarted or forgotten it; "
                                             "upload the image again")
        return v

    def close(self) -> None:
        self.queue.close()
