"""The search API through the ASGI test client: results, items, clip-retrieval's knn service,
health and metrics."""
from __future__ import annotations

import base64

import numpy as np

from tests.unicom.serve.support import assert_one_line_error, item_bytes
from unicom.formats import features as ff


def test_healthz_names_the_index_and_the_classes(client, service):
    r = client.get("/healthz")
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "ok" and body["index"]["items"] == len(service.searcher.index) > 400
    assert body["index"]["dim"] == 32 and body["clusters"]["classes"] == 8 and body["clusters"]["ground_truth"]


def test_uploading_an_indexed_image_finds_it_first_with_its_caption(client, service):
    i = 17
    r = client.post("/search?k=5", files={"image": ("q.jpg", item_bytes(service, i), "image/jpeg")})
    assert r.status_code == 200, r.text
    body = r.json()
    res = body["results"]
    assert len(res) == 5 and res[0]["id"] == i and res[0]["score"] > 0.999
    assert [x["score"] for x in res] == sorted((x["score"] for x in res), reverse=True)
    e = service.searcher.index.entry(i)
    assert res[0]["key"] == e.key and res[0]["image_url"] == f"/items/{i}/image"
    assert res[0]["caption"] and isinstance(res[0]["caption"], str)
    # the upload's vector is kept: the shareable query gives the same results
    again = client.get(f"/queries/{body['query']}/neighbours?k=5").json()["results"]
    assert [x["id"] for x in again] == [x["id"] for x in res]


def test_several_images_give_a_list_per_image(client, service):
    files = [("image", (f"{i}.jpg", item_bytes(service, i), "image/jpeg")) for i in (3, 250)]
    r = client.post("/search?k=3", files=files)
    assert r.status_code == 200, r.text
    res = r.json()["results"]
    assert len(res) == 2 and [rows[0]["id"] for rows in res] == [3, 250] and all(len(x) == 3 for x in res)


def test_search_by_embedding_matches_brute_force(client, service, serve_index):
    fdir = ff.features_dir(serve_index)
    x = np.concatenate([np.asarray(ff.read_features(fdir, n), np.float32) for n in ff.shard_names(fdir)])
    q = x[42] + 0.3 * x[7]
    r = client.post("/search?k=4", json={"embedding": q.tolist()})
    assert r.status_code == 200, r.text
    got = [(h["id"], h["score"]) for h in r.json()["results"]]
    qn = q / np.linalg.norm(q)
    ref = np.argsort(-(x.astype(np.float64) @ qn))[:4]  # float64 brute force over the stored features
    assert [g[0] for g in got] == ref.tolist()
    assert np.allclose([g[1] for g in got], (x.astype(np.float64) @ qn)[ref], atol=1e-4)
    many = client.post("/search?k=2", json={"embedding": [x[1].tolist(), x[2].tolist()]}).json()["results"]
    assert [rows[0]["id"] for rows in many] == [1, 2]


def test_items_their_images_and_neighbours(client, service):
    n = len(service.searcher.index)
    it = client.get("/items/9").json()
    assert it["id"] == 9 and it["key"] == service.searcher.index.entry(9).key and it["caption"]
    img = client.get("/items/9/image")
    assert img.status_code == 200 and img.headers["content-type"] == "image/jpeg" and img.content[:2] == b"\xff\xd8"
    nb = client.get("/items/9/neighbours?k=3").json()
    assert nb["results"][0]["id"] == 9 and nb["results"][0]["score"] > 0.999 and len(nb["results"]) == 3
    page = client.get("/items?offset=5&limit=4").json()
    assert page["total"] == n and [x["id"] for x in page["items"]] == [5, 6, 7, 8]
    rnd = client.get("/items?random=true&limit=6&seed=1").json()["items"]
    assert len({x["id"] for x in rnd}) == 6


def test_knn_service_speaks_clip_retrievals_protocol(client, service):
    b64 = base64.b64encode(item_bytes(service, 30)).decode()
    r = client.post("/knn-service", json={"image": b64, "modality": "image", "num_images": 6,
                                          "indice_name": "serve_index", "text": None})
    assert r.status_code == 200, r.text
    rows = r.json()
    assert len(rows) == 6 and rows[0]["id"] == 30 and rows[0]["similarity"] > 0.999
    assert rows[0]["url"].endswith("/items/30/image") and rows[0]["url"].startswith("http")
    by_url = client.post("/knn-service", json={"image_url": rows[1]["url"], "num_images": 2}).json()
    assert by_url[0]["id"] == rows[1]["id"]
    by_vec = client.post("/knn-service", json={"embedding_input": [0.1] * 32, "num_images": 3}).json()
    assert len(by_vec) == 3
    meta = client.post("/metadata", json={"ids": [30, 31], "indice_name": "x"}).json()
    assert [m["id"] for m in meta] == [30, 31] and meta[0]["metadata"]["caption"]
    assert client.get("/indices-list").json() == [service.searcher.index.dir.parent.name]


def test_knn_service_refuses_text_saying_why(client):
    r = client.post("/knn-service", json={"text": "a red car", "num_images": 5})
    body = assert_one_line_error(r, 400, "text_query")
    assert "cannot embed text" in body["error"]
    r = client.post("/knn-service", json={"image_url": "http://example.com/cat.jpg"})
    assert_one_line_error(r, 400, "url_not_allowed")


def test_metrics_count_requests_errors_and_stage_latencies(client, service):
    client.post("/search?k=2", files={"image": ("q.jpg", item_bytes(service, 1), "image/jpeg")})
    client.get("/items/999999")
    text = client.get("/metrics").text
    for stage in ("decode", "encode", "search"):
        prefix = f'unicom_serve_stage_seconds_count{{stage="{stage}"'
        line = next(ln for ln in text.splitlines() if ln.startswith(prefix))
        assert float(line.split()[-1]) >= 1
    assert 'unicom_serve_errors_total{kind="unknown_id",route="/items/{i}"}' in text
    assert 'unicom_serve_requests_total{method="POST",route="/search",status="200"}' in text
    assert "unicom_serve_request_seconds_bucket" in text


def test_the_page_and_its_files_are_served(client):
    r = client.get("/")
    assert r.status_code == 200 and "text/html" in r.headers["content-type"]
    assert "/static/app.js" in r.text and "/static/style.css" in r.text
    for f in ("app.js", "style.css"):
        assert client.get(f"/static/{f}").status_code == 200


def test_an_index_without_stored_vectors_re_embeds_the_item(service, serve_index, tmp_path):
    """IVF gives no vector back without a direct map: a search from an item embeds its image."""
    from fastapi.testclient import TestClient

    from unicom.embed import build_index_dir
    from unicom.serve.app import create_app
    from unicom.serve.config import ServeConfig
    from unicom.serve.service import Service

    ivf = build_index_dir(serve_index, tmp_path / "ivf", "ivf", nlist=4, nprobe=4)
    svc = Service.load(ServeConfig(index=str(ivf), device="cpu", no_progress=True))
    assert svc.item_vector(12) is None
    with TestClient(create_app(service=svc)) as c:
        res = c.get("/items/12/neighbours?k=3").json()["results"]
    assert res[0]["id"] == 12 and res[0]["score"] > 0.999
    assert service.item_vector(12) is not None  # the flat index gives it back
