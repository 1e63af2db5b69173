"""Distractors: the metrics with them equal those of a brute-force search over database +
distractors (float64, Python sorting, written independently), and the cache is keyed by encoder
and source."""
from __future__ import annotations

import numpy as np
import pytest

import retrieval_eval
from retrieval_eval.pipeline import labels_benchmark
from retrieval_eval.scoring import score

from . import fake_trees as fake
from .conftest import tie_embeddings
from .reference import revisitop_ap_official_style, unit

FAST = dict(device="cpu", workers=0, progress=False)


def brute_force_labelled(q, ql, db, dl, self_excluded, ks, max_r=None):
    """Recall@K, MAP@R, RP of queries ``q`` against database ``db`` (labels ``dl``; distractors
    carry labels no query has), every candidate ranked by (-cosine, index)."""
    scores = unit(q) @ unit(db).T
    r_all = [sum(1 for lab in dl if lab == ql[i]) - (1 if self_excluded else 0) for i in range(len(q))]
    hits = {k: 0 for k in ks}
    aps, rps = [], []
    for i in range(len(q)):
        order = sorted((j for j in range(len(db)) if not (self_excluded and j == i)), key=lambda j: (-scores[i, j], j))
        rel = [dl[j] == ql[i] for j in order]
        for k in ks:
            hits[k] += any(rel[:k])
        r = r_all[i] if max_r is None else min(r_all[i], max_r)
        if r <= 0:
            continue
        found, ap = 0, 0.0
        for pos in range(r):
            if rel[pos]:
                found += 1
                ap += found / (pos + 1)
        aps.append(ap / r)
        rps.append(found / r)
    out = {f"R@{k}": hits[k] / len(q) for k in ks}
    out["MAP@R"], out["RP"] = float(np.mean(aps)), float(np.mean(rps))
    return out


def _close(ours, ref):
    for key, value in ref.items():
        assert ours[key] == pytest.approx(value, abs=1e-12), key


def test_all_vs_all_distractors_match_brute_force(tie_data, tmp_path):
    x, labels = tie_data
    d = tie_embeddings(120, seed=7)
    np.save(tmp_path / "d.npy", d)
    res = retrieval_eval.evaluate(benchmark=None, embeddings=x, labels=labels, distractors=str(tmp_path / "d.npy"),
                                  ks=[1, 2, 4, 8], **FAST)
    dl = np.concatenate([labels, np.full(len(d), -10**6)])
    _close(res["metrics_with_distractors"], brute_force_labelled(x, labels, np.concatenate([x, d]), dl, True,
                                                                 [1, 2, 4, 8]))
    _close(res["metrics"], brute_force_labelled(x, labels, x, labels, True, [1, 2, 4, 8]))
    assert res["distractors"]["count"] == 120
    assert res["metrics_with_distractors"]["R@1"] <= res["metrics"]["R@1"]


def test_query_to_gallery_distractors_match_brute_force():
    rng = np.random.default_rng(3)
    q, g, d = tie_embeddings(60, seed=2), tie_embeddings(150, seed=4), tie_embeddings(90, seed=5)
    ql, gl = rng.integers(0, 12, 60), rng.integers(0, 12, 150)
    bench = labels_benchmark(ql, gl)
    ours = score(bench, q, g, ks=[1, 5], max_r=None, device="cpu", distractors=d).metrics
    ref = brute_force_labelled(q, ql, np.concatenate([g, d]), np.concatenate([gl, np.full(90, -1)]), False, [1, 5])
    _close(ours, ref)


def test_revisitop_distractors_match_the_official_ap_over_the_full_ranking():
    from retrieval_eval.loaders import REVISITOP, Benchmark, ImageSet

    rng = np.random.default_rng(0)
    q, g, d = tie_embeddings(6, seed=11, duplicates=2), tie_embeddings(80, seed=12), tie_embeddings(200, seed=13)
    gt = []
    for _ in range(len(q)):
        ids = rng.permutation(len(g))
        gt.append({"easy": ids[:4], "hard": ids[4:7], "junk": ids[7:9]})
    bench = Benchmark("fake", REVISITOP, ImageSet([None] * 6), ImageSet([None] * 80), ground_truth=gt)
    ours = score(bench, q, g, device="cpu", distractors=d).metrics
    db = np.concatenate([g, d])
    s = unit(q) @ unit(db).T
    for tag, pos_keys, junk_keys in (("E", ["easy"], ["junk", "hard"]), ("M", ["easy", "hard"], ["junk"]),
                                     ("H", ["hard"], ["junk", "easy"])):
        aps = []
        for i in range(len(q)):
            order = sorted(range(len(db)), key=lambda j: (-s[i, j], j))
            pos = set(np.concatenate([gt[i][k] for k in pos_keys]).tolist())
            junk = set(np.concatenate([gt[i][k] for k in junk_keys]).tolist())
            aps.append(revisitop_ap_official_style(order, pos, junk))
        assert ours[f"mAP_{tag}"] == pytest.approx(np.mean(aps), abs=1e-12)


def _revisitop1m(root):
    jpg = root / "revisitop1m" / "jpg"
    names = []
    for i in range(7):
        rel = f"{i % 2}/{i:02d}/d{i}.jpg"
        fake.jpeg(jpg / rel, 100 + i, size=(40, 30))
        names.append(rel)
    names.append("9/99/missing.jpg")
    (root / "revisitop1m" / "revisitop1m.txt").write_text("\n".join(names) + "\n")
    return root / "revisitop1m"


def test_revisitop1m_images_embedded_once_and_cached_per_encoder(tmp_path, tiny_encoder):
    import torch

    from unicom.models.vit import build_vit

    folder = fake.image_folder(tmp_path / "bench")
    r1m = _revisitop1m(tmp_path)
    kw = dict(distractors=str(r1m), distractor_cache=str(tmp_path / "cache"), **FAST)
    first = retrieval_eval.evaluate(tiny_encoder, "image_folder", folder, **kw)
    d = first["distractors"]
    assert d["kind"] == "revisitop1m" and d["count"] == 7 and d["listed"] == 8
    assert d["skipped"] == {"missing_image": 1} and not d["reused_cache"]
    second = retrieval_eval.evaluate(tiny_encoder, "image_folder", folder, **kw)
    assert second["distractors"]["reused_cache"] and second["distractors"]["cache"] == d["cache"]
    assert second["metrics_with_distractors"] == first["metrics_with_distractors"]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        other = (build_vit("ViT-Tiny/8@32").eval(), tiny_encoder[1])
    third = retrieval_eval.evaluate(other, "image_folder", folder, **kw)
    assert third["distractors"]["cache"] != d["cache"] and not third["distractors"]["reused_cache"]


def test_distractor_features_of_another_encoder_are_refused(tmp_path, tiny_export, tiny_encoder):
    from unicom.embed import embed_to_features

    imgs = tmp_path / "imgs"
    for i in range(3):
        fake.jpeg(imgs / f"{i}.jpg", i)
    embed_to_features(str(tiny_export), str(imgs), tmp_path / "feats", device="cpu", workers=0, progress=False)
    folder = fake.image_folder(tmp_path / "bench")
    ok = retrieval_eval.evaluate(str(tiny_export), "image_folder", folder, distractors=str(tmp_path / "feats"), **FAST)
    assert ok["distractors"]["kind"] == "features" and ok["distractors"]["count"] == 3
    with pytest.raises(ValueError, match="another encoder"):
        retrieval_eval.evaluate(tiny_encoder, "image_folder", folder, distractors=str(tmp_path / "feats"), **FAST)


def test_webdataset_shards_as_distractors(sample_set, tmp_path, tiny_encoder):
    from unicom.data.shards import expand_shards
    from unicom.data.wds_reader import iter_samples

    root, _ = sample_set
    shards = expand_shards(str(root / "shards"))[:1]
    n = sum(1 for item in iter_samples(shards, need_image=True, need_caption=False) if hasattr(item, "image"))
    folder = fake.image_folder(tmp_path / "bench")
    res = retrieval_eval.evaluate(tiny_encoder, "image_folder", folder, distractors=shards[0],
                                  distractor_cache=str(tmp_path / "cache"), **FAST)
    assert res["distractors"]["kind"] == "images" and res["distractors"]["count"] == n > 0
