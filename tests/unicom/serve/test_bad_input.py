"""Every bad request gets a 4xx with a one-line JSON error, and the server keeps serving;
past the queue limit a request gets 503 with Retry-After."""
from __future__ import annotations

import asyncio
import io
import threading

import pytest

from tests.unicom.serve.support import assert_one_line_error, item_bytes


def _bomb_png() -> bytes:
    """A 9000 x 9000 one-bit PNG: a few KB on disk, 81 million pixels decoded."""
    from PIL import Image

    buf = io.BytesIO()
    Image.new("1", (9000, 9000)).save(buf, format="PNG")
    return buf.getvalue()


def _upload(data: bytes, name="q.jpg", ctype="image/jpeg"):
    return {"files": {"image": (name, data, ctype)}}


BAD = [
    ("non-image upload", lambda s: ("post", "/search", _upload(b"%PDF-1.4 not an image at all" * 10)), 400,
     "not_an_image"),
    ("truncated image", lambda s: ("post", "/search", _upload(item_bytes(s, 4)[:300])), 400, "bad_image"),
    ("empty upload", lambda s: ("post", "/search", _upload(b"")), 400, "empty_image"),
    ("decompression bomb", lambda s: ("post", "/search", _upload(_bomb_png(), "b.png", "image/png")), 413,
     "decompression_bomb"),
    ("upload over --max-upload-mb", lambda s: ("post", "/search", _upload(b"\xff" * (1024 * 1024 + 10))), 413,
     "too_large"),
    ("wrong content type", lambda s: ("post", "/search", {"content": b"hello", "headers": {
        "content-type": "text/plain"}}), 415, "bad_content_type"),
    ("multipart without an image", lambda s: ("post", "/search", {"files": {"other": ("x", b"1")}}), 400,
     "no_image"),
    ("malformed JSON", lambda s: ("post", "/search", {"content": b'{"embedding": [1, 2', "headers": {
        "content-type": "application/json"}}), 400, "bad_json"),
    ("JSON without embedding", lambda s: ("post", "/search", {"json": {"vector": [1]}}), 400, "bad_json"),
    ("embedding of the wrong length", lambda s: ("post", "/search", {"json": {"embedding": [0.1] * 31}}), 400,
     "bad_embedding"),
    ("embedding with NaN", lambda s: ("post", "/search", {"content": ('{"embedding": [NaN' + ", 0.1" * 31 + "]}")
                                                          .encode(), "headers": {"content-type": "application/json"}}),
     400, "bad_embedding"),
    ("embedding of strings", lambda s: ("post", "/search", {"json": {"embedding": ["a"] * 32}}), 400,
     "bad_embedding"),
    ("all-zero embedding", lambda s: ("post", "/search", {"json": {"embedding": [0] * 32}}), 400, "bad_embedding"),
    ("k = 0", lambda s: ("post", "/search?k=0", {"json": {"embedding": [0.1] * 32}}), 400, "bad_k"),
    ("k over --max-k", lambda s: ("get", "/items/3/neighbours?k=101", {}), 400, "bad_k"),
    ("k not a number", lambda s: ("get", "/items/3/neighbours?k=ten", {}), 400, "bad_parameter"),
    ("unknown id", lambda s: ("get", "/items/100000", {}), 404, "unknown_id"),
    ("negative id", lambda s: ("get", "/items/-1/image", {}), 404, "unknown_id"),
    ("id not a number", lambda s: ("get", "/items/abc", {}), 400, "bad_parameter"),
    ("a path instead of an id", lambda s: ("get", "/items/..%2F..%2Fetc%2Fpasswd/image", {}), 404, "not_found"),
    ("unknown route", lambda s: ("get", "/nope", {}), 404, "not_found"),
    ("unknown query", lambda s: ("get", "/queries/feedbeef/neighbours", {}), 404, "unknown_query"),
    ("unknown class", lambda s: ("get", "/clusters/99", {}), 404, "unknown_class"),
    ("bad sort", lambda s: ("get", "/clusters?sort=colour", {}), 400, "bad_parameter"),
    ("knn: bad base64", lambda s: ("post", "/knn-service", {"json": {"image": "!!!not base64"}}), 400, "bad_base64"),
    ("knn: nothing to search", lambda s: ("post", "/knn-service", {"json": {"num_images": 3}}), 400, "no_query"),
    ("knn: num_images a string", lambda s: ("post", "/knn-service", {"json": {
        "embedding_input": [0.1] * 32, "num_images": "5"}}), 400, "bad_parameter"),
]


@pytest.mark.parametrize("what,make,status,kind", BAD, ids=[b[0] for b in BAD])
def test_bad_input_gets_a_4xx_one_line_error_and_the_server_keeps_serving(client, service, what, make, status,
                                                                         kind):
    method, url, kwargs = make(service)
    r = getattr(client, method)(url, **kwargs)
    assert_one_line_error(r, status, kind)
    assert client.get("/healthz").json()["status"] == "ok"
    ok = client.post("/search?k=1", files={"image": ("q.jpg", item_bytes(service, 2), "image/jpeg")})
    assert ok.status_code == 200 and ok.json()["results"][0]["id"] == 2


def test_bad_inputs_are_counted_by_kind_in_metrics(client):
    client.post("/search", content=b"x", headers={"content-type": "text/plain"})
    text = client.get("/metrics").text
    assert 'kind="bad_content_type"' in text and 'status="415"' in text


def test_a_body_over_the_limit_is_refused_from_its_content_length(client):
    r = client.post("/search", content=b"0" * (1024 * 1024 + 1), headers={"content-type": "application/json"})
    assert_one_line_error(r, 413, "too_large")


def test_past_the_queue_limit_requests_get_503_with_retry_after(service):
    """One request holds the encoder (gated) while the queue is full: the next is refused at once."""
    import httpx

    from unicom.serve.app import create_app
    from unicom.serve.config import ServeConfig
    from unicom.serve.service import Service

    cfg = ServeConfig(index=str(service.searcher.index.dir), device="cpu", queue_limit=1, no_progress=True)
    svc = Service(cfg, service.searcher)
    gate, entered = threading.Event(), threading.Event()
    real = svc.queue.encode_fn

    def gated(images):
        entered.set()
        assert gate.wait(30)
        return real(images)

    svc.queue.encode_fn = gated
    app = create_app(service=svc)
    data = item_bytes(service, 11)

    async def scenario():
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
            first = asyncio.create_task(c.post("/search?k=2", files={"image": ("a.jpg", data, "image/jpeg")}))
            while not entered.is_set():
                await asyncio.sleep(0.01)
            second = await c.post("/search?k=2", files={"image": ("b.jpg", data, "image/jpeg")})
            gate.set()
            return await first, second, await c.get("/metrics")

    try:
        first, second, metrics = asyncio.run(scenario())
    finally:
        gate.set()
        svc.close()
    assert first.status_code == 200 and first.json()["results"][0]["id"] == 11
    assert_one_line_error(second, 503, "overloaded")
    assert int(second.headers["retry-after"]) >= 1
    assert 'kind="overloaded"' in metrics.text


def test_an_image_the_encoder_refuses_fails_alone_not_its_whole_batch(service):
    """Requests queued together share a batch; when the encoder refuses one image (a ValueError,
    as ``Searcher.embed`` raises), the others still get their results and that one a 400."""
    import httpx
    from PIL import Image

    from unicom.serve.app import create_app
    from unicom.serve.config import ServeConfig
    from unicom.serve.service import Service

    cfg = ServeConfig(index=str(service.searcher.index.dir), device="cpu", queue_limit=8, no_progress=True)
    svc = Service(cfg, service.searcher)
    gate, entered, batches = threading.Event(), threading.Event(), []
    real = svc.queue.encode_fn

    def refusing(images):
        batches.append(len(images))
        entered.set()
        assert gate.wait(30)
        if any(im.size == (13, 13) for im in images):
            raise ValueError("cannot embed the query image (13x13: refused here)")
        return real(images)

    svc.queue.encode_fn = refusing
    app = create_app(service=svc)
    good = item_bytes(service, 8)
    buf = io.BytesIO()
    Image.new("RGB", (13, 13), "blue").save(buf, format="PNG")

    async def scenario():
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
            post = lambda data: c.post("/search?k=1", files={"image": ("q", data, "image/png")})
            first = asyncio.create_task(post(good))
            while not entered.is_set():
                await asyncio.sleep(0.01)
            rest = [asyncio.create_task(post(good)), asyncio.create_task(post(buf.getvalue()))]
            while svc.queue.pending < 3:
                await asyncio.sleep(0.01)
            gate.set()
            return await first, await rest[0], await rest[1]

    try:
        first, second, refused = asyncio.run(scenario())
    finally:
        gate.set()
        svc.close()
    assert batches[:2] == [1, 2]  # the two waiting requests were encoded as one batch, then one by one
    assert first.status_code == second.status_code == 200 and second.json()["results"][0]["id"] == 8
    assert "13x13" in assert_one_line_error(refused, 400, "bad_image")["error"]
