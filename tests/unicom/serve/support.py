"""Plain helpers of the unicom-serve tests."""
from __future__ import annotations

import tarfile


def item_bytes(service, i: int) -> bytes:
    """The original image bytes of indexed item ``i``, read from its tar shard."""
    e = service.searcher.index.entry(i)
    with tarfile.open(e.source) as tf:
        for m in tf:
            base, _, ext = m.name.rpartition(".")
            if base == e.key and ext.lower() in ("jpg", "jpeg", "png", "webp"):
                return tf.extractfile(m).read()
    raise KeyError(e.key)


def assert_one_line_error(r, status: int, kind: str) -> dict:
    """The response is ``status`` with ``{"error": one line, "kind": kind}``."""
    assert r.status_code == status, (r.status_code, r.text)
    body = r.json()
    assert body["kind"] == kind, body
    assert body["error"] and "\n" not in body["error"]
    return body
