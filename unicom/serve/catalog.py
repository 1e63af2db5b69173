"""The indexed items as the service shows them: key, shard, caption and a JPEG thumbnail.

Only rows of the index are ever served: an item is named by its row id, and its image is read
from where the index records it (its file, or its member in a tar shard). No request names a
path."""
from __future__ import annotations

import io
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any, Dict, Optional

from ..data.images import sidecar_text


class ThumbCache:
    """JPEG thumbnails by key, the ``size`` most recent kept (an LRU, thread-safe)."""

    def __init__(self, size: int = 512):
        self.size, self._data, self._lock = size, OrderedDict(), threading.Lock()  # type: ignore[var-annotated]

    def get(self, key) -> Optional[bytes]:
        with self._lock:
            if key in self._data:
                self._data.move_to_end(key)
                return self._data[key]
        return None

    def put(self, key, value: bytes) -> None:
        with self._lock:
            self._data[key] = value
            self._data.move_to_end(key)
            while len(self._data) > self.size:
                self._data.popitem(last=False)


def jpeg_thumbnail(img, side: int) -> bytes:
    """``img`` (RGB, decoded under the policy) shrunk to fit ``side`` × ``side`` (aspect kept), as JPEG bytes."""
    img = img.copy()
    img.thumbnail((side, side))
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=85)
    return buf.getvalue()


class Catalog:
    """Captions and thumbnails of the rows of an ``IndexDir``; captions of a shard are read once,
    on first use (a sample's ``.txt`` in a tar, or the ``NAME.txt`` beside an image file)."""

    def __init__(self, index, thumb_side: int = 256):
        self.index, self.thumb_side = index, thumb_side
        self.thumbs = ThumbCache()
        self._captions: Dict[str, Dict[str, str]] = {}
        self._lock = threading.Lock()

    def caption(self, i: int) -> Optional[str]:
        """Row ``i``'s caption, or None where its source has none."""
        e = self.index.entry(i)
        if e.kind == "files" and e.source:
            try:
                return sidecar_text(Path(e.source) / e.key)
            except OSError:
                return None
        if e.kind == "tar" and e.source:
            with self._lock:
                caps = self._captions.get(e.source)
                if caps is None:
                    from ..embed.clip_retrieval import shard_captions

                    try:
                        caps = shard_captions(e.source)
                    except (OSError, ValueError):
                        caps = {}
                    self._captions[e.source] = caps
            return caps.get(e.key)
        return None

    def describe(self, i: int) -> Dict[str, Any]:
        """``{id, key, shard, caption, image_url}`` of row ``i``."""
        e = self.index.entry(i)
        return {"id": int(i), "key": e.key, "shard": e.shard, "caption": self.caption(i),
                "image_url": f"/items/{int(i)}/image"}

    def thumbnail(self, i: int) -> Optional[bytes]:
        """Row ``i``'s image as a JPEG thumbnail, or None when its source is unknown or unreadable."""
        cached = self.thumbs.get(i)
        if cached is not None:
            return cached
        try:
            img = self.index.open_image(int(i))
        except Exception:  # noqa: BLE001 (a moved or damaged file is "no image", not a server error)
            img = None
        if img is None:
            return None
        data = jpeg_thumbnail(img, self.thumb_side)
        self.thumbs.put(i, data)
        return data
