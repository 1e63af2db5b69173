"""The pseudo-class API: the classes (sorted, paged), a class's members, a member's image, and a
search from a member (embedded by the index's encoder)."""
from __future__ import annotations

import math
from typing import Optional

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from .catalog import jpeg_thumbnail
from .errors import ApiError, bad_request, not_found
from .service import Service

router = APIRouter()
SORTS = ("size", "purity", "id")


def _clusters(request: Request):
    svc: Service = request.app.state.service
    if svc.clusters is None:
        raise ApiError(409, "no_clusters", "this service has no pseudo classes: start unicom-serve with --clusters")
    return svc, svc.clusters


def _sort_key(sort: str):
    if sort == "size":
        return lambda c: (-c["size"], c["id"])
    if sort == "purity":  # the least pure first: the clusters to look at; no ground truth sorts last
        return lambda c: (math.inf if c["purity"] is None else c["purity"], -c["size"], c["id"])
    return lambda c: c["id"]


@router.get("/clusters")
async def classes(request: Request, sort: str = "size", offset: int = Query(0, ge=0),
                  limit: int = Query(100, ge=1, le=1000)):
    """``{total, ground_truth, classes: [{id, size, members, words, purity, truth}]}``, sorted by
    ``size`` (largest first), ``purity`` (least pure first) or ``id``."""
    _, pc = _clusters(request)
    if sort not in SORTS:
        raise bad_request("bad_parameter", f"sort={sort!r}: use one of {', '.join(SORTS)}")
    rows = sorted(pc.classes, key=_sort_key(sort))
    return {"total": len(rows), "ground_truth": pc.has_truth, "samples": len(pc),
            "classes": rows[offset:offset + limit]}


def _check_class(pc, c: int) -> None:
    if not 0 <= c < len(pc.sizes):
        raise not_found("unknown_class", f"no pseudo class {c}: classes run from 0 to {len(pc.sizes) - 1}")


def _check_member(pc, m: int) -> None:
    if not 0 <= m < len(pc):
        raise not_found("unknown_member", f"no member {m}: members run from 0 to {len(pc) - 1}")


@router.get("/clusters/{c}")
async def one_class(request: Request, c: int, offset: int = Query(0, ge=0), limit: int = Query(48, ge=1, le=500)):
    """Class ``c``'s summary and a page of its members."""
    _, pc = _clusters(request)
    _check_class(pc, c)
    members = await run_in_threadpool(lambda: [pc.describe(m) for m in pc.members(c, offset, limit)])
    return {"class": pc.classes[c], "total": pc.member_count(c), "members": members}


@router.get("/clusters/members/{m}/image")
async def member_image(request: Request, m: int):
    """A JPEG thumbnail of member ``m`` (from its shard or file)."""
    svc, pc = _clusters(request)
    _check_member(pc, m)
    img = await run_in_threadpool(_open_member, pc, m)
    data = await run_in_threadpool(jpeg_thumbnail, img, svc.config.thumb_size)
    return Response(data, media_type="image/jpeg", headers={"Cache-Control": "public, max-age=3600"})


def _open_member(pc, m: int):
    try:
        img = pc.open_image(m)
    except Exception:  # noqa: BLE001 (a moved or damaged file: "no image", not a server error)
        img = None
    if img is None:
        raise not_found("no_image", f"the image of member {m} is not available (its input is unknown or gone)")
    return img


@router.get("/clusters/members/{m}/neighbours")
async def member_neighbours(request: Request, m: int, k: Optional[int] = Query(None)):
    """Top-k of the index for member ``m``'s image, embedded by the index's encoder."""
    svc, pc = _clusters(request)
    svc.need_index()
    _check_member(pc, m)
    k = svc.check_k(k)
    img = await run_in_threadpool(_open_member, pc, m)
    q = await svc.queue.encode([img])
    res = await run_in_threadpool(svc.search, q, k)
    return {"results": res[0], "query": {"member": m, **pc.describe(m)}}
