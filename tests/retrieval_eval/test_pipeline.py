"""The Python API: skipped images excluded consistently, the revisitop and GLDv2 protocols end to
end on fake trees (queries cropped), and the picture."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

import retrieval_eval
from retrieval_eval.loaders import load_benchmark
from unicom.data.images import open_image

from . import fake_trees as fake

FAST = dict(device="cpu", workers=0, progress=False)


def test_unreadable_images_are_skipped_counted_and_dropped_from_queries_and_gallery(tmp_path, tiny_encoder):
    for i in range(6):
        fake.jpeg(tmp_path / f"img{i}.jpg", i)
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    rows = ["img0.jpg,a,query", "img1.jpg,b,query", "broken.jpg,a,query",
            "img2.jpg,a,gallery", "img3.jpg,b,gallery", "img4.jpg,b,gallery", "broken.jpg,a,gallery",
            "gone.jpg,a,gallery", "img5.jpg,c,gallery"]
    (tmp_path / "list.csv").write_text("\n".join(rows) + "\n")
    res = retrieval_eval.evaluate(tiny_encoder, "csv", tmp_path / "list.csv", **FAST)
    sk = res["skipped"]
    assert sk["queries"] == {"bad_image": 1}
    assert sk["gallery"] == {"bad_image": 1, "missing_image": 1}
    assert sk["total"] == 2 and sk["queries_dropped"] == 1 and sk["gallery_dropped"] == 2
    assert res["sizes"]["queries"] == 2 and res["sizes"]["gallery"] == 4
    assert res["sizes"]["queries_listed"] == 3 and res["sizes"]["gallery_listed"] == 6


def test_a_file_failing_in_one_set_leaves_the_other(tmp_path):
    # the same file listed as query and as gallery item: embedded twice, excluded from both
    from retrieval_eval.pipeline import _exclude

    for i in range(3):
        fake.jpeg(tmp_path / f"img{i}.jpg", i)
    (tmp_path / "list.csv").write_text("img0.jpg,a,query\nimg1.jpg,a,query\nimg0.jpg,a,gallery\nimg2.jpg,a,gallery\n")
    bench = load_benchmark("csv", tmp_path / "list.csv")
    sub, q_keep, g_keep, report = _exclude(bench, {}, {0: "bad_image"})  # gallery copy of img0 failed
    assert q_keep.tolist() == [False, True] and g_keep.tolist() == [False, True]
    assert report["total"] == 1 and len(sub.queries) == 1 and len(sub.gallery) == 1


def test_all_vs_all_skip(tmp_path, tiny_encoder):
    fake.image_folder(tmp_path)
    Image.new("RGB", (4, 4)).save(tmp_path / "dog" / "truncated.jpg")
    data = (tmp_path / "dog" / "truncated.jpg").read_bytes()
    (tmp_path / "dog" / "truncated.jpg").write_bytes(data[: len(data) // 2])
    res = retrieval_eval.evaluate(tiny_encoder, "image_folder", tmp_path, **FAST)
    assert res["skipped"]["queries"] == {"bad_image": 1} and res["sizes"]["queries"] == 6


def test_query_crop_uses_the_bounding_box(tmp_path):
    path = fake.jpeg(tmp_path / "q.jpg", 0, size=(40, 30))
    assert open_image(str(path), (2.0, 3.0, 20.4, 18.0)).size == (18, 15)


@pytest.mark.parametrize("name", ["roxford5k", "rparis6k"])
def test_revisitop_end_to_end(tmp_path, tiny_encoder, name):
    fake.revisitop(tmp_path, name)
    res = retrieval_eval.evaluate(tiny_encoder, name, tmp_path, visualize=2, visualize_k=4,
                                  visualize_path=tmp_path / "pic.png", output=tmp_path / "r.json", **FAST)
    m = res["metrics"]
    for tag in "EMH":
        assert 0.0 <= m[f"mAP_{tag}"] <= 1.0
    assert m["queries_E"] == 2 and m["queries_M"] == 2 and m["queries_H"] == 1  # query 2 has no hard positive
    assert res["settings"]["search_k"] == 6  # the whole gallery is ranked
    assert (tmp_path / "pic.png").is_file() and (tmp_path / "r.json").is_file()


def test_gldv2_end_to_end(tmp_path, tiny_encoder):
    fake.gldv2(tmp_path)
    res = retrieval_eval.evaluate(tiny_encoder, "gldv2", tmp_path, **FAST)
    m = res["metrics"]
    assert m["queries_private"] == 1 and m["queries_public"] == 1
    assert 0.0 < m["mAP@100"] <= 1.0 and 0.0 < m["mAP@100_public"] <= 1.0
    # a gallery of 4 ranks everything: with 2 relevant, AP@100 ≥ (1/3 + 2/4)/2 at worst
    assert m["mAP@100"] >= (1 / 3 + 2 / 4) / 2 - 1e-9


def test_evaluate_on_an_official_layout_with_an_export(tmp_path, tiny_export):
    fake.cub(tmp_path)
    res = retrieval_eval.evaluate(str(tiny_export), "cub", tmp_path, **FAST)
    assert res["sizes"]["queries"] == 9 and res["sizes"]["classes"] == 3
    assert res["settings"]["search_k"] == 8  # max(max K = 8, max R = 2), capped by the 8 candidates


def test_images_not_unpacked_is_a_clear_error(tmp_path, tiny_encoder):
    fake.sop(tmp_path)
    import shutil

    for d in (tmp_path / "Stanford_Online_Products").iterdir():
        if d.is_dir():
            shutil.rmtree(d)
    with pytest.raises(retrieval_eval.DatasetNotFoundError, match="lifted_struct"):
        retrieval_eval.evaluate(tiny_encoder, "sop", tmp_path, **FAST)


def test_evaluate_embeddings_query_gallery():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(5, 16))
    gl = np.repeat(np.arange(5), 10)
    g = centres[gl] + 0.01 * rng.normal(size=(50, 16))
    q = centres + 0.01 * rng.normal(size=(5, 16))
    m = retrieval_eval.evaluate_embeddings(q, np.arange(5), g, gl, ks=(1, 10), device="cpu")
    assert m["R@1"] == 1.0 and m["MAP@R"] == 1.0 and m["RP"] == 1.0
