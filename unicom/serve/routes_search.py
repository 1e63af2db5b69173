"""The search API: ``POST /search``, the items, search from an item or a recent query, and
clip-retrieval's ``/knn-service``, ``/metadata`` and ``/indices-list``."""
from __future__ import annotations

import json
from typing import Any, Dict, List, Optional

import numpy as np
from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from .errors import ApiError, bad_request, not_found
from .service import Service
from .uploads import decode_base64, decode_upload, item_id_from_url

router = APIRouter()
K = Query(None, description="results per query (default --top-k, at most --max-k)")


def _svc(request: Request) -> Service:
    return request.app.state.service


async def _decode(svc: Service, data: bytes, name: str):
    with svc.metrics.timed("decode"):
        return await run_in_threadpool(decode_upload, data, svc.config.max_image_pixels, name)


async def _search(svc: Service, q: np.ndarray, k: int) -> List[List[Dict[str, Any]]]:
    return await run_in_threadpool(svc.search, q, k)


async def _read_json(request: Request) -> Any:
    body = await request.body()
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError) as exn:
        raise bad_request("bad_json", f"the body is not valid JSON ({exn})") from None


async def _multipart_images(svc: Service, request: Request) -> List[bytes]:
    from starlette.datastructures import UploadFile
    from starlette.formparsers import MultiPartException

    try:
        form = await request.form(max_files=svc.config.queue_limit, max_fields=64)
    except MultiPartException as exn:
        raise bad_request("bad_multipart", f"the multipart body cannot be read: {exn.message}") from None
    try:
        files = form.getlist("image")
        if not files:
            raise bad_request("no_image", "the multipart body has no 'image' field: send the image file as 'image'")
        if not all(isinstance(f, UploadFile) for f in files):
            raise bad_request("no_image", "'image' must be a file upload, not a text field")
        return [await f.read() for f in files]
    finally:
        await form.close()


@router.post("/search")
async def search(request: Request, k: Optional[int] = K):
    """Top-k neighbours of uploaded images (multipart, field ``image``, repeatable) or of JSON
    ``{"embedding": [...]}`` (or a list of them). One image → ``{"results": [...], "query":
    ID}``; several → lists of each."""
    svc = _svc(request)
    svc.need_index()
    k = svc.check_k(k)
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype == "multipart/form-data":
        blobs = await _multipart_images(svc, request)
        images = [await _decode(svc, b, f"image {j + 1}" if len(blobs) > 1 else "the image")
                  for j, b in enumerate(blobs)]
        q = await svc.queue.encode(images)
        qids = [svc.remember(b, q[j:j + 1]) for j, b in enumerate(blobs)]
        res = await _search(svc, q, k)
        if len(blobs) == 1:
            return {"results": res[0], "query": qids[0]}
        return {"results": res, "query": qids}
    if ctype == "application/json":
        body = await _read_json(request)
        if not isinstance(body, dict) or "embedding" not in body:
            raise bad_request("bad_json", 'send {"embedding": [numbers]} (or a list of such lists)')
        q = svc.check_vectors(body["embedding"])
        res = await _search(svc, q, k)
        many = isinstance(body["embedding"][0], list)
        return {"results": res if many else res[0]}
    raise ApiError(415, "bad_content_type", f"content type {ctype or 'none'!r} is not accepted: send "
                                            "multipart/form-data with an 'image' file, or application/json with "
                                            "'embedding'")


@router.get("/items")
async def items(request: Request, offset: int = Query(0, ge=0), limit: int = Query(24, ge=1, le=200),
                random: bool = False, seed: int = 0):
    """A page of indexed items (``offset``, ``limit``), or ``limit`` random ones (``random=true``,
    ``seed``): what the page offers to pick a query from."""
    svc = _svc(request)
    n = len(svc.need_index().index)
    if random:
        ids = np.random.default_rng(seed).choice(n, size=min(limit, n), replace=False).tolist()
    else:
        ids = list(range(offset, min(n, offset + limit)))
    assert svc.catalog is not None
    return {"total": n, "items": [svc.catalog.describe(i) for i in ids]}


@router.get("/items/{i}")
async def item(request: Request, i: int):
    """``{id, key, shard, caption, image_url}`` of indexed item ``i``."""
    svc = _svc(request)
    svc.check_id(i)
    assert svc.catalog is not None
    return await run_in_threadpool(svc.catalog.describe, i)


@router.get("/items/{i}/image")
async def item_image(request: Request, i: int):
    """A JPEG thumbnail of indexed item ``i`` (read from its file or shard member)."""
    svc = _svc(request)
    svc.check_id(i)
    assert svc.catalog is not None
    data = await run_in_threadpool(svc.catalog.thumbnail, i)
    if data is None:
        raise not_found("no_image", f"the image of item {i} is not available (its file or shard is gone or "
                                    "unreadable)")
    return Response(data, media_type="image/jpeg", headers={"Cache-Control": "public, max-age=3600"})


async def item_query(svc: Service, i: int) -> np.ndarray:
    """Item ``i``'s vector: read back from the index, else its image embedded again."""
    v = svc.item_vector(i)
    if v is not None:
        return v
    assert svc.searcher is not None
    img = await run_in_threadpool(svc.searcher.index.open_image, i)
    if img is None:
        raise not_found("no_image", f"item {i} can be neither read back from the index nor re-embedded")
    return await svc.queue.encode([img])


@router.get("/items/{i}/neighbours")
async def item_neighbours(request: Request, i: int, k: Optional[int] = K):
    """Top-k neighbours of indexed item ``i`` (itself first)."""
    svc = _svc(request)
    svc.check_id(i)
    k = svc.check_k(k)
    q = await item_query(svc, i)
    return {"results": (await _search(svc, q, k))[0], "query": {"item": i}}


@router.get("/queries/{qid}/neighbours")
async def query_neighbours(request: Request, qid: str, k: Optional[int] = K):
    """Top-k neighbours of a recent upload's vector (the page's shareable ``#q=query:ID``)."""
    svc = _svc(request)
    svc.need_index()
    k = svc.check_k(k)
    return {"results": (await _search(svc, svc.recall(qid), k))[0], "query": qid}


# ---------------------------------------------------------------- clip-retrieval's back end

def _index_name(svc: Service) -> str:
    return svc.need_index().index.dir.parent.name or "index"


@router.get("/indices-list")
async def indices_list(request: Request):
    """clip-retrieval's list of index names (one here)."""
    return [_index_name(_svc(request))]


@router.post("/knn-service")
async def knn_service(request: Request):
    """clip-retrieval's knn request: ``image`` (base64), ``image_url`` (an ``/items/ID/image`` URL
    of this service) or ``embedding_input``, with ``num_images``. The query is embedded by the
    index's own encoder; ``text`` is refused (an image encoder cannot embed text). Returns a list
    of ``{id, similarity, url, caption, key}``."""
    svc = _svc(request)
    searcher = svc.need_index()
    body = await _read_json(request)
    if not isinstance(body, dict):
        raise bad_request("bad_json", "the knn request must be a JSON object")
    if body.get("text") or body.get("modality") == "text":
        raise bad_request("text_query", f"this index was embedded by an image encoder "
                                        f"({searcher.index.encoder_record().get('model')}), which cannot embed "
                                        "text; send image (base64), image_url or embedding_input")
    k = svc.check_k(_int(body.get("num_images", svc.config.top_k), "num_images"))
    if body.get("image"):
        img = await run_in_threadpool(decode_base64, body["image"], svc.config.max_image_pixels, "image")
        q = await svc.queue.encode([img])
    elif body.get("image_url"):
        i = item_id_from_url(body["image_url"], len(searcher.index))
        if i is None:
            raise bad_request("url_not_allowed", "image_url must be an /items/ID/image URL of this service: it "
                                                 "fetches no other URL; send the image itself as base64 'image'")
        q = await item_query(svc, i)
    elif body.get("embedding_input") is not None:
        q = svc.check_vectors(body["embedding_input"])[:1]
    else:
        raise bad_request("no_query", "send image (base64), image_url or embedding_input")
    base = str(request.base_url).rstrip("/")
    rows = (await _search(svc, q, k))[0]
    return [{"id": r["id"], "similarity": r["score"], "url": base + r["image_url"], "caption": r["caption"],
             "key": r["key"]} for r in rows]


def _int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise bad_request("bad_parameter", f"{name} must be an integer")
    return value


@router.post("/metadata")
async def metadata(request: Request):
    """clip-retrieval's metadata request ``{"ids": [...]}`` → ``[{id, metadata: {url, caption, key}}]``."""
    svc = _svc(request)
    body = await _read_json(request)
    ids = body.get("ids") if isinstance(body, dict) else None
    if not isinstance(ids, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
        raise bad_request("bad_json", 'send {"ids": [integers]}')
    if len(ids) > svc.config.max_k:
        raise bad_request("bad_parameter", f"at most {svc.config.max_k} ids per request (--max-k)")
    base = str(request.base_url).rstrip("/")
    assert svc.catalog is not None
    out = []
    for i in ids:
        svc.check_id(i)
        d = svc.catalog.describe(i)
        out.append({"id": i, "metadata": {"url": base + d["image_url"], "caption": d["caption"], "key": d["key"]}})
    return out
