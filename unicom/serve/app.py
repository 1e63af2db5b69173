"""``create_app(config)``: the ASGI application of ``unicom-serve`` (FastAPI under uvicorn).

Around the routes: a guard that counts every request in /metrics and refuses bodies over
``--max-upload-mb`` (at once from ``Content-Length``, else while the body streams in), and
error handlers that turn every refusal — ours, FastAPI's validation, an unknown route, even an
unexpected exception — into one line of JSON: ``{"error": "...", "kind": "..."}``.
"""
from __future__ import annotations

import logging
import time
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Optional

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from .config import ServeConfig
from .errors import ApiError, error_body
from .service import Service

log = logging.getLogger(__name__)
STATIC = Path(__file__).resolve().parent / "static"
DRAIN_MIN = 32 * 2**20   # an oversized body up to max(4 x the limit, 32 MB) is read and dropped before the 413


def route_name(scope) -> str:
    """The route template of a request (``/items/{i}``), so that /metrics has one series per
    route and not one per id."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    if path:
        return path
    return "/static" if scope.get("path", "").startswith("/static/") else "other"


class Guard:
    """Pure ASGI middleware: request metrics, and the body-size limit."""

    def __init__(self, app, service: Service):
        self.app, self.service = app, service

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        metrics, limit = self.service.metrics, self.service.config.max_upload_bytes
        t0, status = time.perf_counter(), [500]

        async def send_counted(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        seen = [0]

        async def drain() -> None:
            # read the rest of an oversized body and drop it (up to a bound), so that the client,
            # still sending, reads the 413 instead of a reset connection
            more = True
            while more and seen[0] <= drain_cap:
                message = await receive()
                if message["type"] != "http.request":
                    return
                seen[0] += len(message.get("body", b""))
                more = message.get("more_body", False)

        async def receive_limited():
            message = await receive()
            if message["type"] == "http.request":
                seen[0] += len(message.get("body", b""))
                if seen[0] > limit:
                    if message.get("more_body", False):
                        await drain()
                    raise _too_large(limit)
            return message

        drain_cap = max(4 * limit, DRAIN_MIN)
        try:
            length = dict(scope.get("headers") or []).get(b"content-length")
            if length is not None and length.isdigit() and int(length) > limit:
                exn = _too_large(limit)
                metrics.errors.labels(route="other", kind=exn.kind).inc()
                drained = int(length) <= drain_cap
                if drained:
                    await drain()
                await JSONResponse(error_body(exn.kind, exn.message), status_code=exn.status,
                                   headers=None if drained else {"Connection": "close"})(scope, receive, send_counted)
                return
            await self.app(scope, receive_limited, send_counted)
        finally:
            route = route_name(scope)
            metrics.requests.labels(route=route, method=scope.get("method", "?"), status=str(status[0])).inc()
            metrics.latency.labels(route=route).observe(time.perf_counter() - t0)


def _too_large(limit: int) -> ApiError:
    return ApiError(413, "too_large", f"the request body is over {limit / 2**20:g} MB (--max-upload-mb); "
                                      "send a smaller image")


def _error(request: Request, status: int, kind: str, message: str, headers=None) -> JSONResponse:
    svc: Service = request.app.state.service
    svc.metrics.errors.labels(route=route_name(request.scope), kind=kind).inc()
    return JSONResponse(error_body(kind, message), status_code=status, headers=headers)


def create_app(config: Optional[ServeConfig] = None, service: Optional[Service] = None) -> FastAPI:
    """The application serving ``service`` (or one loaded from ``config``)."""
    svc = service if service is not None else Service.load(config or ServeConfig())

    @asynccontextmanager
    async def lifespan(_app):
        yield
        svc.close()  # the encoder thread ends with the server

    app = FastAPI(title="unicom-serve", docs_url="/docs", redoc_url=None, lifespan=lifespan)
    app.state.service = svc

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exn: ApiError):
        return _error(request, exn.status, exn.kind, exn.message, exn.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exn: RequestValidationError):
        errs = exn.errors()
        first = errs[0] if errs else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p not in ("query", "path", "body"))
        return _error(request, 400, "bad_parameter", f"{where or 'request'}: {first.get('msg', 'invalid')}")

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exn: StarletteHTTPException):
        kind = {404: "not_found", 405: "method_not_allowed"}.get(exn.status_code, "http_error")
        msg = f"no such route: {request.method} {request.url.path}" if exn.status_code in (404, 405) \
            else str(exn.detail)
        return _error(request, exn.status_code, kind, msg, getattr(exn, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exn: Exception):  # a bug: logged in full, one line to the client
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return _error(request, 500, "internal", f"internal error ({type(exn).__name__}); see the server log")

    from . import routes_clusters, routes_search

    app.include_router(routes_search.router)
    app.include_router(routes_clusters.router)

    @app.get("/", include_in_schema=False)
    async def page():
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    @app.get("/healthz")
    async def healthz():
        """``{"status": "ok", ...}`` while the service answers."""
        return service_status(svc)

    @app.get("/metrics", include_in_schema=False)
    async def metrics():
        return Response(svc.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    app.mount("/static", StaticFiles(directory=str(STATIC)), name="static")
    app.add_middleware(Guard, service=svc)
    return app


def service_status(svc: Service) -> dict:
    """The body of /healthz: what is loaded and how busy the encoder is."""
    out = {"status": "ok", "queue": svc.queue.pending, "queue_limit": svc.queue.limit}
    if svc.searcher is not None:
        idx = svc.searcher.index
        out["index"] = {"items": len(idx), "dim": idx.dim, "type": idx.kind,
                        "model": idx.encoder_record().get("model")}
    if svc.clusters is not None:
        out["clusters"] = {"classes": len(svc.clusters.sizes), "samples": len(svc.clusters),
                           "ground_truth": svc.clusters.has_truth}
    return out
